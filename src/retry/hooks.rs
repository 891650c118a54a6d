use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::Error;
use crate::classify::ErrorClass;

/// What a retry hook is told before the retrier sleeps.
#[derive(Debug)]
#[non_exhaustive]
pub struct RetryEvent<'a> {
    /// The try that just failed (1 = the first).
    pub attempt: u32,
    /// How long the retrier sleeps before the next try.
    pub delay: Duration,
    /// Time since the first try began.
    pub elapsed: Duration,
    /// Always transient (permanent errors are not retried).
    pub class: ErrorClass,
    /// The error of the failed try.
    pub error: &'a (dyn StdError + Send + Sync + 'static),
}

/// What a success hook is told.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct SuccessEvent {
    /// Tries made, the successful one included.
    pub attempts: u32,
    /// Time since the first try began.
    pub elapsed: Duration,
}

type Hook<T> = Arc<dyn Fn(&T) + Send + Sync>;
type RetryHook = Arc<dyn Fn(&RetryEvent<'_>) + Send + Sync>;

#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) on_retry: Option<RetryHook>,
    pub(crate) on_give_up: Option<Hook<Error>>,
    pub(crate) on_success: Option<Hook<SuccessEvent>>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("on_retry", &self.on_retry.is_some())
            .field("on_give_up", &self.on_give_up.is_some())
            .field("on_success", &self.on_success.is_some())
            .finish()
    }
}

//! What [`Retrier::run`](crate::Retrier::run) and the transaction helpers fail with: the
//! operation's own error, by value, beside this crate's [`Error`] saying how the retrier got
//! there.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::classify::{Classify, ErrorClass, Phase};
use crate::error::{Error, ErrorKind};

/// The error of a retried operation: *your* error when the last try returned one, and always
/// the retrier's account of the run ([`Error`]: why it stopped, after how many attempts and
/// how long, with the last cause and its SQLSTATE or SQLite code).
///
/// `?` converts it into [`dbretry::Error`](Error), into `Box<dyn Error + Send + Sync>`, into
/// `anyhow::Error`, or into your own type once it has `From<RetryError<YourError>>`
/// (write it with [`into_inner`](RetryError::into_inner) when `YourError: From<dbretry::Error>`):
///
/// ```
/// use dbretry::{Classify, ErrorClass, Phase, RetryError};
///
/// #[derive(Debug, thiserror::Error)]
/// enum AppError {
///     #[error("database: {0}")]
///     Db(#[from] rusqlite::Error),
///     #[error("gave up: {0}")]
///     Retry(#[from] dbretry::Error),
///     #[error("no such account")]
///     NoSuchAccount,
/// }
///
/// impl Classify for AppError {
///     fn classify(&self, phase: Phase) -> ErrorClass {
///         match self {
///             Self::Db(e) => e.classify(phase),
///             Self::Retry(e) => e.classify(phase),
///             Self::NoSuchAccount => ErrorClass::Permanent,
///         }
///     }
/// }
///
/// impl From<RetryError<AppError>> for AppError {
///     fn from(error: RetryError<AppError>) -> Self {
///         error.into_inner()
///     }
/// }
/// ```
///
/// Your error comes back by value ([`into_operation_error`](RetryError::into_operation_error))
/// unless a give-up hook kept a clone of the [`Error`] it was shown (they share it); it is
/// then still there by reference ([`operation_error`](RetryError::operation_error)) and in the
/// [`Error`]'s cause chain ([`Error::find_cause`]).
pub struct RetryError<E> {
    error: Error,
    own: Option<Arc<E>>,
}

impl<E> RetryError<E> {
    pub(crate) fn new(error: Error, own: Option<Arc<E>>) -> Self {
        Self { error, own }
    }

    /// Why the retrier stopped: [`ErrorKind::Query`] for a permanent error of your operation,
    /// [`ErrorKind::RetryExhausted`], [`ErrorKind::Timeout`], [`ErrorKind::BudgetExhausted`],
    /// [`ErrorKind::CommitOutcomeUnknown`], …
    pub fn kind(&self) -> ErrorKind {
        self.error.kind()
    }

    /// Tries made, the first included.
    pub fn attempts(&self) -> u32 {
        self.error.attempts()
    }

    /// Time from the first try to giving up.
    pub fn elapsed(&self) -> Duration {
        self.error.elapsed()
    }

    /// The retrier's account of the run, your error (if any) as its last cause.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// Your operation's error, when the last try ended with one (not when a try was cut by
    /// the attempt timeout or deadline, a checkout failed, or a commit's outcome is unknown).
    pub fn operation_error(&self) -> Option<&E> {
        self.own.as_deref()
    }

    /// Your operation's error by value, or — when the last try did not end with one — this
    /// crate's [`Error`].
    ///
    /// # Errors
    /// The [`Error`] when there is no error of yours to give back (or a give-up hook still
    /// holds it).
    pub fn into_operation_error(self) -> Result<E, Error> {
        let Self { error, own } = self;
        let Some(own) = own else { return Err(error) };
        // The error's last failure is the only other holder of `own`, unless a hook cloned it.
        let held_elsewhere = Arc::strong_count(&own) != 2
            || error
                .last_failure()
                .is_none_or(|failure| Arc::strong_count(failure.shared_cause()) > 1);
        if held_elsewhere {
            return Err(error);
        }
        let (kind, attempts, elapsed) = (error.kind(), error.attempts(), error.elapsed());
        drop(error);
        // Nothing else holds `own` now; the fallback only keeps this free of panics.
        Arc::into_inner(own).ok_or_else(|| Error::new(kind, attempts, elapsed, None))
    }

    /// Your operation's error, or this crate's [`Error`] converted into your type: what a
    /// `From<RetryError<E>> for E` impl returns.
    pub fn into_inner(self) -> E
    where
        E: From<Error>,
    {
        self.into_operation_error().unwrap_or_else(E::from)
    }
}

impl<E> std::ops::Deref for RetryError<E> {
    type Target = Error;

    /// The retrier's account: `error.sqlstate()`, `error.find_cause::<T>()`, … read it.
    fn deref(&self) -> &Error {
        &self.error
    }
}

impl<E> From<RetryError<E>> for Error {
    /// The retrier's account, your error inside it as the cause.
    fn from(error: RetryError<E>) -> Self {
        error.error
    }
}

impl<E> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<E> fmt::Debug for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryError")
            .field("error", &self.error)
            .field("own", &self.own.is_some())
            .finish()
    }
}

impl<E> StdError for RetryError<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.error.source()
    }
}

impl<E> Classify for RetryError<E> {
    fn classify(&self, phase: Phase) -> ErrorClass {
        self.error.classify(phase)
    }

    fn breaks_connection(&self) -> bool {
        self.error.breaks_connection()
    }
}

/// The operation's error lent to a [`Failure`](crate::Failure) for the give-up hook and log,
/// so that it can still be handed back by value: it reads as the error itself (same message,
/// the error as its source, so `find_cause` and the SQLSTATE lookup see it).
pub(crate) struct Lent<E>(pub(crate) Arc<E>);

impl<E: fmt::Display> fmt::Display for Lent<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl<E: fmt::Debug> fmt::Debug for Lent<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl<E: StdError + 'static> StdError for Lent<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.0)
    }
}

impl<E: Classify> Classify for Lent<E> {
    fn classify(&self, phase: Phase) -> ErrorClass {
        self.0.classify(phase)
    }

    fn breaks_connection(&self) -> bool {
        self.0.breaks_connection()
    }
}

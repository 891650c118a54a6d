//! Running an operation under a [`RetryPolicy`]: the Rust form of a `@with_db_retry()`
//! decorator.

mod hooks;
mod run;

use std::future::Future;
use std::sync::Arc;

pub use self::hooks::{RetryEvent, SuccessEvent};
pub(crate) use self::run::{Attempt, Run};

use self::hooks::Hooks;
use crate::classify::{OperationError, Phase};
use crate::{Error, RetryPolicy};

/// Runs async operations under a [`RetryPolicy`], retrying only what the operation's error
/// [classifies](crate::Classify) as transient, with hooks on retry, give-up and success and a
/// `tracing` event for each retry (attempt, delay, error class — never a password).
///
/// ```no_run
/// # async fn demo(pool: deadpool_postgres::Pool) -> Result<(), Box<dyn std::error::Error>> {
/// use dbretry::{Retrier, RetryPolicy};
///
/// let retrier = Retrier::new(RetryPolicy::default())
///     .on_retry(|event| eprintln!("retry {} in {:?}: {}", event.attempt, event.delay, event.error));
/// // Re-runs the whole transaction on a serialization failure, deadlock or lost connection.
/// let total: i64 = retrier
///     .run(|| async {
///         let mut client = pool.get().await?;
///         let tx = client.transaction().await?;
///         let row = tx.query_one("SELECT count(*) FROM accounts", &[]).await?;
///         tx.commit().await?;
///         Ok::<_, Box<dyn std::error::Error + Send + Sync>>(row.get(0))
///     })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Retrier {
    policy: RetryPolicy,
    phase: Phase,
    hooks: Hooks,
    /// Registers this retrier's operation series at zero on its first run.
    registered: Arc<std::sync::Once>,
    name: Arc<str>,
}

impl Retrier {
    /// A retrier for operations ([`Phase::Operation`]) under `policy`, without hooks.
    pub fn new(policy: RetryPolicy) -> Self {
        crate::metrics::describe_once();
        Self {
            policy,
            registered: Arc::new(std::sync::Once::new()),
            phase: Phase::Operation,
            hooks: Hooks::default(),
            name: Arc::from("default"),
        }
    }

    /// Names what this retrier serves (a pool, a job): the `pool` label of its metrics and a
    /// field of its log events. Default `default`. Use a fixed, low-cardinality name.
    #[must_use]
    pub fn name(mut self, name: impl AsRef<str>) -> Self {
        self.name = Arc::from(name.as_ref());
        self.registered = Arc::new(std::sync::Once::new());
        self
    }

    /// The name given by [`Retrier::name`].
    pub fn label(&self) -> &str {
        &self.name
    }

    /// Classifies errors as happening in `phase` (the pool managers use [`Phase::Connect`]).
    #[must_use]
    pub fn phase(mut self, phase: Phase) -> Self {
        self.phase = phase;
        self
    }

    /// Calls `hook` before each sleep between tries.
    #[must_use]
    pub fn on_retry(mut self, hook: impl Fn(&RetryEvent<'_>) + Send + Sync + 'static) -> Self {
        self.hooks.on_retry = Some(Arc::new(hook));
        self
    }

    /// Calls `hook` with the final error when giving up (permanent error, attempts exhausted,
    /// deadline passed).
    #[must_use]
    pub fn on_give_up(mut self, hook: impl Fn(&Error) + Send + Sync + 'static) -> Self {
        self.hooks.on_give_up = Some(Arc::new(hook));
        self
    }

    /// Calls `hook` when a try succeeds.
    #[must_use]
    pub fn on_success(mut self, hook: impl Fn(&SuccessEvent) + Send + Sync + 'static) -> Self {
        self.hooks.on_success = Some(Arc::new(hook));
        self
    }

    pub(crate) fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The policy this retrier follows.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Runs `op` until it succeeds, fails with a permanent error, runs out of attempts or the
    /// deadline passes. Each try is bounded by `attempt_timeout` and by what is left of
    /// `max_elapsed`; sleeps use tokio's clock, so `tokio::time::pause` drives them.
    ///
    /// # Errors
    /// An [`Error`] whose [`kind`](Error::kind) says why it stopped, with the attempt count,
    /// the elapsed time and the last real cause.
    pub async fn run<T, E, F, Fut>(&self, mut op: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: OperationError,
    {
        self.registered
            .call_once(|| crate::metrics::register_operations(&self.name));
        let mut run = Run::start(self);
        let mut schedule = self.policy.schedule();
        loop {
            match run.attempt(op()).await {
                Attempt::Succeeded(value) => return Ok(value),
                Attempt::Failed(failure) => run.settle(failure, schedule.next_delay()).await?,
            }
        }
    }
}

/// Runs `op` under `policy`, retrying transient failures: shorthand for
/// `Retrier::new(policy.clone()).run(op)`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), dbretry::Error> {
/// use dbretry::{RetryPolicy, execute_with_retry};
///
/// let count = execute_with_retry(&RetryPolicy::default(), || async {
///     let conn = rusqlite::Connection::open_in_memory()?;
///     conn.query_row("SELECT 40 + 2", [], |row| row.get::<_, i64>(0))
/// })
/// .await?;
/// assert_eq!(count, 42);
/// # Ok(()) }
/// ```
///
/// # Errors
/// As [`Retrier::run`].
pub async fn execute_with_retry<T, E, F, Fut>(policy: &RetryPolicy, op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: OperationError,
{
    Retrier::new(policy.clone()).run(op).await
}

#[cfg(test)]
mod tests;

//! Running an operation under a [`RetryPolicy`]: the Rust form of a `@with_db_retry()`
//! decorator.

mod budget;
mod drive;
mod hooks;
mod lock_conflicts;
mod retry_error;
mod run;

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use tracing::Instrument;

pub use self::budget::RetryBudget;
pub(crate) use self::drive::{Driver, Tried};
pub use self::hooks::{RetryEvent, SuccessEvent};
pub use self::retry_error::RetryError;
#[cfg(all(feature = "sqlite", pools))]
pub(crate) use self::run::chain;
pub(crate) use self::run::{Attempt, Run};

use self::hooks::Hooks;
use crate::classify::{Classify, OperationError, Phase};
use crate::{Error, RetryPolicy};

/// Runs async operations under a [`RetryPolicy`], retrying only what the operation's error
/// [classifies](crate::Classify) as transient, with hooks on retry, give-up and success, an
/// optional [`RetryBudget`] shared by all its callers, and a `tracing` event for each retry
/// (attempt, delay, error class — never a password).
///
/// [`Retrier::run`] hands your own error back ([`RetryError`]); for a whole transaction on a
/// pool, [`Retrier::transaction`] also takes a fresh connection for each try and never re-runs
/// a transaction whose `COMMIT` may have been applied.
///
/// ```no_run
/// # async fn demo(pool: dbretry::deadpool_postgres::Pool) -> Result<(), Box<dyn std::error::Error>> {
/// use dbretry::{Retrier, RetryPolicy};
///
/// let retrier = Retrier::new(RetryPolicy::default())
///     .on_retry(|event| eprintln!("retry {} in {:?}: {}", event.attempt, event.delay, event.error));
/// // Re-runs the whole transaction on a serialization failure, deadlock or lost connection.
/// let total: i64 = retrier
///     .transaction(&pool)
///     .run(async |tx| {
///         let row = tx.query_one("SELECT count(*) FROM accounts", &[]).await?;
///         Ok::<_, tokio_postgres::Error>(row.get(0))
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
    budget: Option<RetryBudget>,
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
            budget: None,
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

    /// Caps the retries of every operation run through this retrier (and its clones) at
    /// `budget`; a refused retry gives up with
    /// [`ErrorKind::BudgetExhausted`](crate::ErrorKind::BudgetExhausted). First attempts are
    /// never refused. Default: no budget. Applies to operations and transactions; a pool's
    /// connects are already paced by its shared reconnect (one probe at a time).
    #[must_use]
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The budget given by [`Retrier::budget`], if any.
    pub fn retry_budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }

    /// Registers this retrier's operation series at zero, on its first run.
    pub(crate) fn register_operations(&self) {
        self.registered
            .call_once(|| crate::metrics::register_operations(&self.name));
    }

    pub(crate) fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The policy this retrier follows.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Runs `op` until it succeeds, fails with a permanent error, runs out of attempts, the
    /// deadline passes or the budget refuses a retry. Each try is bounded by `attempt_timeout`
    /// and by what is left of `max_elapsed` (a try cut short is dropped: work it handed to
    /// another thread keeps running, so for SQLite through deadpool use
    /// [`Retrier::transaction`], which waits for it); sleeps use tokio's clock, so
    /// `tokio::time::pause` drives them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), dbretry::Error> {
    /// use dbretry::{ErrorKind, Retrier, RetryPolicy};
    ///
    /// let retrier = Retrier::new(RetryPolicy::default());
    /// let error = retrier
    ///     .run(|| async { rusqlite::Connection::open_in_memory()?.execute("NOT SQL", []) })
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(error.kind(), ErrorKind::Query); // permanent: one attempt
    /// let own: rusqlite::Error = error.into_operation_error()?; // your error, by value
    /// assert!(own.to_string().contains("syntax error"));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// A [`RetryError`]: your error by value when the last try returned one, and the
    /// [`Error`] saying why the retrier stopped, after how many attempts and how long. `?`
    /// turns it into a [`dbretry::Error`](Error) or a boxed error.
    pub async fn run<T, E, F, Fut>(&self, mut op: F) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + StdError + Send + Sync + 'static,
    {
        let mut driver = Driver::start(self);
        loop {
            let bound = driver.begin();
            let tried = match bounded(bound, op()).instrument(driver.span()).await {
                Ok(Ok(value)) => Tried::Succeeded(value),
                Ok(Err(error)) => Tried::Failed(error),
                Err(bound) => Tried::TimedOut(bound),
            };
            if let Some(result) = driver.settle(tried).await {
                return result;
            }
        }
    }

    /// Like [`Retrier::run`] for an operation whose error has no type of its own to give back
    /// (`Box<dyn Error + Send + Sync>`, a `String`, …): it comes back inside this crate's
    /// [`Error`], as the cause.
    ///
    /// # Errors
    /// As [`Retrier::run`], as an [`Error`].
    pub async fn run_boxed<T, E, F, Fut>(&self, mut op: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: OperationError,
    {
        let mut driver = Driver::start(self);
        loop {
            let bound = driver.begin();
            let tried = match bounded(bound, op()).instrument(driver.span()).await {
                Ok(Ok(value)) => Tried::<T, Never>::Succeeded(value),
                Ok(Err(error)) => Tried::Broke(crate::Failure::new(error, self.phase)),
                Err(bound) => Tried::TimedOut(bound),
            };
            if let Some(result) = driver.settle(tried).await {
                return result.map_err(Error::from);
            }
        }
    }
}

/// One try of `attempt`, cut at `bound` (`Err(bound)`).
async fn bounded<R>(
    bound: Option<std::time::Duration>,
    attempt: impl Future<Output = R>,
) -> Result<R, std::time::Duration> {
    match bound {
        None => Ok(attempt.await),
        Some(bound) => tokio::time::timeout(bound, attempt)
            .await
            .map_err(|_| bound),
    }
}

/// The operation error of a run whose errors are all recorded as failures.
#[derive(Debug, thiserror::Error)]
#[error("unreachable")]
enum Never {}

impl Classify for Never {
    fn classify(&self, _phase: Phase) -> crate::ErrorClass {
        match *self {}
    }
}

/// Runs `op` under `policy`, retrying transient failures: shorthand for
/// `Retrier::new(policy.clone()).run_boxed(op)`, for any error the operation returns (the
/// error comes back inside [`Error`]; use [`Retrier::run`] to have it back by value).
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
/// As [`Retrier::run_boxed`].
pub async fn execute_with_retry<T, E, F, Fut>(policy: &RetryPolicy, op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: OperationError,
{
    Retrier::new(policy.clone()).run_boxed(op).await
}

#[cfg(test)]
mod tests;

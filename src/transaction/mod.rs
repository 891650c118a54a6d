//! Transactions re-run safely: [`Retrier::transaction`] runs a closure in a transaction on a
//! pool and re-runs it, on a fresh connection, when a conflict or a lost connection rolled it
//! back — never when it may have been applied.
//!
//! | the try ended with | what happens |
//! |---|---|
//! | success, `COMMIT` acknowledged | the closure's value is returned |
//! | a transient error of the closure or of `COMMIT` (PostgreSQL 40001 serialization failure, 40P01 deadlock; SQLite `BUSY`, `BUSY_SNAPSHOT`) | rolled back, re-run under the policy |
//! | the connection lost before `COMMIT` was sent | the connection is evicted, re-run on another |
//! | the connection lost while `COMMIT` was in flight, or the try's bound passed then | [`ErrorKind::CommitOutcomeUnknown`](crate::ErrorKind::CommitOutcomeUnknown), not re-run |
//! | a permanent error of the closure | rolled back; your error back, by value ([`RetryError`](crate::RetryError)) |
//! | the try's bound (`attempt_timeout`, deadline) passed before `COMMIT` | rolled back (SQLite: interrupted and awaited), re-run |
//!
//! An abandoned try never runs on beside its retry: on PostgreSQL a try is only committed by
//! the helper, after the closure returned within its bound; on SQLite the blocking call is
//! interrupted and awaited before the next try starts, and it checks before `COMMIT` that it
//! was not abandoned. (If the caller drops the future, nothing is re-run either.)

#[cfg(all(feature = "postgres", any(feature = "deadpool", feature = "bb8")))]
mod postgres;

#[cfg(all(feature = "sqlite", any(feature = "deadpool", feature = "bb8")))]
mod sqlite;
#[cfg(all(feature = "sqlite", any(feature = "deadpool", feature = "bb8")))]
mod turns;

#[cfg(all(feature = "postgres", any(feature = "deadpool", feature = "bb8")))]
pub use self::postgres::{PostgresPool, PostgresTransaction};
#[cfg(all(feature = "sqlite", any(feature = "deadpool", feature = "bb8")))]
pub use self::sqlite::{AttemptInterrupted, SqlitePool, SqliteTransaction};

use crate::Retrier;

/// A pool [`Retrier::transaction`] runs transactions on: `deadpool_postgres::Pool`,
/// `dbretry::bb8::Pool` of a `PostgresConnectionManager`, `deadpool_sqlite::Pool`,
/// `dbretry::bb8::Pool` of a `SqliteConnectionManager`. Sealed.
pub trait TransactionPool: sealed::Sealed {
    /// What [`Retrier::transaction`] returns for this pool: a builder whose `run` takes the
    /// closure.
    type Transaction<'a>
    where
        Self: 'a;

    #[doc(hidden)]
    fn transaction<'a>(retrier: &'a Retrier, pool: &'a Self) -> Self::Transaction<'a>;
}

impl Retrier {
    /// A transaction on `pool` under this retrier's policy, budget and hooks: set options on
    /// the returned builder, then `run` a closure in it. See the [module docs](crate::transaction).
    ///
    /// ```no_run
    /// # async fn demo(pool: dbretry::deadpool_postgres::Pool) -> Result<(), dbretry::Error> {
    /// use dbretry::{Retrier, RetryPolicy};
    /// use tokio_postgres::IsolationLevel;
    ///
    /// let retrier = Retrier::new(RetryPolicy::LOCK_CONFLICTS).name("transfers");
    /// retrier
    ///     .transaction(&pool)
    ///     .isolation_level(IsolationLevel::Serializable)
    ///     .run(async |tx| {
    ///         tx.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1", &[]).await?;
    ///         tx.execute("UPDATE accounts SET balance = balance + 10 WHERE id = 2", &[]).await?;
    ///         Ok::<_, tokio_postgres::Error>(())
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn transaction<'a, P: TransactionPool>(&'a self, pool: &'a P) -> P::Transaction<'a> {
        P::transaction(self, pool)
    }
}

/// A boxed future: the pools' trait methods return these because an `impl Future` that
/// borrows would make the helper's future lose `Send` in spawned tasks
/// (rust-lang/rust#100013). One allocation per step, beside a round trip to the database.
type Boxed<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// `deadline` reached (`None`) or `future`'s output.
async fn within<F: Future>(deadline: Option<tokio::time::Instant>, future: F) -> Option<F::Output> {
    match deadline {
        None => Some(future.await),
        Some(deadline) => tokio::time::timeout_at(deadline, future).await.ok(),
    }
}

pub(crate) mod sealed {
    /// Only this crate's pools run transactions.
    pub trait Sealed {}
}

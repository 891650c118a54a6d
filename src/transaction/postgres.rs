//! The transaction helper on PostgreSQL pools: deadpool's and bb8's.

use std::error::Error as StdError;
use std::time::Duration;
use tracing::Instrument;

use tokio::time::Instant;
use tokio_postgres::error::Severity;
use tokio_postgres::{Client, IsolationLevel};

use super::{Boxed, TransactionPool, sealed, within};
use crate::classify::{AttemptTimedOut, Classify, Phase};
use crate::error::{Error, ErrorKind};
use crate::failure::Failure;
use crate::retry::{Driver, Retrier, RetryError, Tried};

/// A PostgreSQL pool the transaction helper runs on: `dbretry::deadpool_postgres::Pool` (the
/// closure gets a `deadpool_postgres::Transaction`, with `prepare_cached`) or a
/// `dbretry::bb8::Pool<PostgresConnectionManager<_>>` (a `tokio_postgres::Transaction`).
/// Sealed.
pub trait PostgresPool: Sync + private::Ops {}

/// A transaction to run on a PostgreSQL pool; made by [`Retrier::transaction`], finished by
/// [`run`](PostgresTransaction::run).
///
/// # Default
///
/// The server's defaults: `BEGIN` with no isolation level, read-write, not deferrable.
#[must_use = "call `run` with the transaction's closure"]
#[derive(Debug)]
pub struct PostgresTransaction<'a, P> {
    retrier: &'a Retrier,
    pool: &'a P,
    begin: private::Begin,
}

impl<'a, P: PostgresPool> PostgresTransaction<'a, P> {
    fn new(retrier: &'a Retrier, pool: &'a P) -> Self {
        Self {
            retrier,
            pool,
            begin: private::Begin::default(),
        }
    }
}

/// Makes `Retrier::transaction` return a [`PostgresTransaction`] for a pool type.
macro_rules! postgres_transactions {
    () => {
        fn transaction<'a>(retrier: &'a Retrier, pool: &'a Self) -> PostgresTransaction<'a, Self> {
            PostgresTransaction::new(retrier, pool)
        }
    };
}

impl<P: PostgresPool> PostgresTransaction<'_, P> {
    /// The isolation level (`SERIALIZABLE` for transactions that must see a serial order;
    /// its 40001 failures are what this helper re-runs).
    pub fn isolation_level(mut self, level: IsolationLevel) -> Self {
        self.begin.isolation_level = Some(level);
        self
    }

    /// `READ ONLY` (true) or `READ WRITE` (false).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.begin.read_only = Some(read_only);
        self
    }

    /// `DEFERRABLE` (with `SERIALIZABLE` and `READ ONLY`: waits for a snapshot that cannot
    /// fail with 40001).
    pub fn deferrable(mut self, deferrable: bool) -> Self {
        self.begin.deferrable = Some(deferrable);
        self
    }

    /// Runs `body` in a transaction and commits it; re-runs it, on a fresh connection when
    /// the old one broke, while it fails with a transient error (serialization failure,
    /// deadlock, a connection lost before `COMMIT` was sent), under the retrier's policy.
    /// Each try — checkout, `BEGIN`, the closure and `COMMIT` — is bounded by
    /// `attempt_timeout` and by what is left of `max_elapsed`.
    ///
    /// # Errors
    /// A [`RetryError`]: your closure's error by value when it ended the run (permanent, or
    /// retries spent); [`ErrorKind::CommitOutcomeUnknown`] when the connection was lost (or
    /// the bound passed) while `COMMIT` was in flight; the pool's own error when no
    /// connection could be had.
    pub async fn run<T, E, F>(self, mut body: F) -> Result<T, RetryError<E>>
    where
        F: AsyncFnMut(&P::Transaction<'_>) -> Result<T, E>,
        E: Classify + StdError + Send + Sync + 'static,
    {
        let Self {
            retrier,
            pool,
            begin,
        } = self;
        let mut driver = Driver::start(retrier);
        loop {
            let bound = driver.begin();
            let tried = try_once(pool, &begin, &mut body, bound)
                .instrument(driver.span())
                .await;
            if let Some(result) = driver.settle(tried).await {
                return result;
            }
        }
    }
}

/// One try: checkout, `BEGIN`, the closure, `COMMIT`, within `bound`.
async fn try_once<P, T, E, F>(
    pool: &P,
    begin: &private::Begin,
    body: &mut F,
    bound: Option<Duration>,
) -> Tried<T, E>
where
    P: PostgresPool,
    F: AsyncFnMut(&P::Transaction<'_>) -> Result<T, E>,
    E: Classify,
{
    let deadline = bound.map(|bound| crate::time::later(Instant::now(), bound));
    let timed_out = || Tried::TimedOut(bound.unwrap_or_default());
    let mut connection = match within(deadline, pool.checkout()).await {
        None => return timed_out(),
        // The pool retried its connects already; retrying here would stack a second loop.
        Some(Err(error)) => return Tried::GiveUp(error),
        Some(Ok(connection)) => connection,
    };
    let begun = within(deadline, P::begin(&mut connection, begin)).await;
    // `{ begun }` moves it into the match: nothing borrowing the connection is left to drop
    // after the arms that evict it.
    #[allow(clippy::blocks_in_conditions)]
    let transaction = match { begun } {
        Some(Ok(transaction)) => transaction,
        failed => {
            // Consumed here, so that nothing borrowing the connection is left.
            let error = failed.and_then(Result::err);
            return match error {
                None => {
                    P::evict(connection);
                    timed_out()
                }
                Some(error) => {
                    if error.breaks_connection() || P::is_closed(&connection) {
                        P::evict(connection);
                    }
                    Tried::Broke(Failure::new(error, Phase::Operation))
                }
            };
        }
    };
    let outcome = within(deadline, body(&transaction)).await;
    #[allow(clippy::blocks_in_conditions)]
    let value = match { outcome } {
        None => {
            // The closure's future is dropped: nothing of it runs on, and the transaction
            // (dropped with the connection) is never committed.
            drop(transaction);
            P::evict(connection);
            return timed_out();
        }
        Some(Err(error)) => {
            let broken = error.breaks_connection() || P::client(&transaction).is_closed();
            // Dropping the transaction queues its ROLLBACK ahead of anything else sent on
            // this connection.
            drop(transaction);
            if broken {
                P::evict(connection);
            }
            return Tried::Failed(error);
        }
        Some(Ok(value)) => value,
    };
    // A closed client sends nothing: COMMIT then certainly did not reach the server.
    let closed_before_commit = P::client(&transaction).is_closed();
    let committed = within(deadline, P::commit(transaction)).await;
    match committed {
        Some(Ok(())) => Tried::Succeeded(value),
        Some(Err(error)) if closed_before_commit => {
            P::evict(connection);
            Tried::Broke(Failure::new(error, Phase::Operation))
        }
        Some(Err(error)) if rejected_by_server(&error) => {
            Tried::Broke(Failure::new(error, Phase::Operation))
        }
        Some(Err(error)) => {
            P::evict(connection);
            Tried::Stop(
                ErrorKind::CommitOutcomeUnknown,
                Failure::new(error, Phase::Operation),
            )
        }
        None => {
            P::evict(connection);
            let timeout = bound.unwrap_or_default();
            Tried::Stop(
                ErrorKind::CommitOutcomeUnknown,
                Failure::new(AttemptTimedOut { timeout }, Phase::Operation),
            )
        }
    }
}

/// The server answered COMMIT with an error and the session lives on (severity `ERROR`: a
/// serialization failure at commit, a deferred constraint): the transaction was rolled back.
/// A `FATAL` (the session terminated) may come after the commit record was written.
fn rejected_by_server(error: &tokio_postgres::Error) -> bool {
    error
        .as_db_error()
        .is_some_and(|db| db.parsed_severity() == Some(Severity::Error))
}

mod private {
    use super::*;

    /// `$builder` (deadpool-postgres's or tokio-postgres's transaction builder: the same
    /// methods, no common trait) with the options of `$begin` that are set.
    macro_rules! begun {
        ($builder:expr, $begin:expr) => {{
            let (mut builder, begin) = ($builder, $begin);
            if let Some(level) = begin.isolation_level {
                builder = builder.isolation_level(level);
            }
            if let Some(read_only) = begin.read_only {
                builder = builder.read_only(read_only);
            }
            if let Some(deferrable) = begin.deferrable {
                builder = builder.deferrable(deferrable);
            }
            builder
        }};
    }
    pub(super) use begun;

    /// How the transaction begins.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Begin {
        pub(super) isolation_level: Option<IsolationLevel>,
        pub(super) read_only: Option<bool>,
        pub(super) deferrable: Option<bool>,
    }

    /// What the helper does with a pool: checkout, begin, commit, evict.
    pub trait Ops: sealed::Sealed {
        /// The transaction the closure is given.
        type Transaction<'c>: Send + Sync;
        /// A checked-out connection.
        type Connection<'p>: Send;

        fn checkout(&self) -> Boxed<'_, Result<Self::Connection<'_>, Error>>;

        fn begin<'c>(
            connection: &'c mut Self::Connection<'_>,
            begin: &Begin,
        ) -> Boxed<'c, Result<Self::Transaction<'c>, tokio_postgres::Error>>;

        fn client<'t>(transaction: &'t Self::Transaction<'_>) -> &'t Client;

        fn commit(
            transaction: Self::Transaction<'_>,
        ) -> Boxed<'_, Result<(), tokio_postgres::Error>>;

        fn is_closed(connection: &Self::Connection<'_>) -> bool;

        /// Takes the connection out of the pool for good (or, where the pool cannot be told,
        /// returns it to be found broken).
        fn evict(connection: Self::Connection<'_>);
    }
}

#[cfg(feature = "deadpool")]
mod on_deadpool {
    use super::private::{Begin, Ops, begun};
    use super::*;
    use crate::deadpool_postgres::{Object, Pool};

    impl sealed::Sealed for Pool {}
    impl PostgresPool for Pool {}

    impl TransactionPool for Pool {
        type Transaction<'a> = PostgresTransaction<'a, Pool>;
        postgres_transactions!();
    }

    impl Ops for Pool {
        type Transaction<'c> = deadpool_postgres::Transaction<'c>;
        type Connection<'p> = Object;

        fn checkout(&self) -> Boxed<'_, Result<Object, Error>> {
            Box::pin(async move {
                self.get().await.map_err(|error| {
                    crate::manager::from_pool_error(error, self.manager().pool_shared())
                })
            })
        }

        fn begin<'c>(
            connection: &'c mut Self::Connection<'_>,
            begin: &Begin,
        ) -> Boxed<'c, Result<deadpool_postgres::Transaction<'c>, tokio_postgres::Error>> {
            Box::pin(begun!(connection.build_transaction(), begin).start())
        }

        fn client<'t>(transaction: &'t deadpool_postgres::Transaction<'_>) -> &'t Client {
            transaction.client()
        }

        fn commit(
            transaction: Self::Transaction<'_>,
        ) -> Boxed<'_, Result<(), tokio_postgres::Error>> {
            Box::pin(transaction.commit())
        }

        fn is_closed(connection: &Object) -> bool {
            connection.is_closed()
        }

        fn evict(connection: Object) {
            drop(Object::take(connection));
        }
    }
}

#[cfg(feature = "bb8")]
mod on_bb8 {
    use super::private::{Begin, Ops, begun};
    use super::*;
    use crate::bb8::{Pool, PooledConnection};
    use crate::bb8_postgres::PostgresConnectionManager;
    use crate::postgres::MakeTls;

    impl<Tls: MakeTls> sealed::Sealed for Pool<PostgresConnectionManager<Tls>> {}
    impl<Tls: MakeTls> PostgresPool for Pool<PostgresConnectionManager<Tls>> {}

    impl<Tls: MakeTls> TransactionPool for Pool<PostgresConnectionManager<Tls>> {
        type Transaction<'a> = PostgresTransaction<'a, Self>;
        postgres_transactions!();
    }

    impl<Tls: MakeTls> Ops for Pool<PostgresConnectionManager<Tls>> {
        type Transaction<'c> = tokio_postgres::Transaction<'c>;
        type Connection<'p> = PooledConnection<'p, PostgresConnectionManager<Tls>>;

        fn checkout(&self) -> Boxed<'_, Result<Self::Connection<'_>, Error>> {
            Box::pin(self.get())
        }

        fn begin<'c>(
            connection: &'c mut Self::Connection<'_>,
            begin: &Begin,
        ) -> Boxed<'c, Result<tokio_postgres::Transaction<'c>, tokio_postgres::Error>> {
            Box::pin(begun!(connection.build_transaction(), begin).start())
        }

        fn client<'t>(transaction: &'t tokio_postgres::Transaction<'_>) -> &'t Client {
            transaction.client()
        }

        fn commit(
            transaction: Self::Transaction<'_>,
        ) -> Boxed<'_, Result<(), tokio_postgres::Error>> {
            Box::pin(transaction.commit())
        }

        fn is_closed(connection: &Self::Connection<'_>) -> bool {
            connection.is_closed()
        }

        /// bb8 cannot be told to drop a connection: it drops the ones its `has_broken`
        /// reports (a closed client), and checks the others when they are next checked out.
        fn evict(connection: Self::Connection<'_>) {
            drop(connection);
        }
    }
}

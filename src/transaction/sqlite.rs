//! The transaction helper on SQLite pools: deadpool's and bb8's.
//!
//! A try first waits for its turn on the database file (see [`turns`](super::turns)), then
//! runs on the blocking pool. Its lock waits happen inside SQLite (`busy_timeout`), bounded by
//! what is left of the try's bound, so they never stack past the deadline. A try the retrier
//! abandons (its bound passed) is interrupted and *awaited*: it checks before `COMMIT` whether
//! it was abandoned and rolls back if so; if it committed anyway, that commit is the run's
//! success. So a try never commits beside its retry.

use std::error::Error as StdError;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tracing::Instrument;

use rusqlite::{Connection, ErrorCode, InterruptHandle, TransactionBehavior};
use tokio::time::Instant;

use super::{Boxed, TransactionPool, sealed, turns, within};
use crate::classify::{Classify, ErrorClass, Phase};
use crate::error::{Error, ErrorKind};
use crate::events::Diagnostics;
use crate::failure::Failure;
use crate::retry::{Driver, Retrier, RetryError, Tried};
use crate::sqlite::InteractError;

/// An SQLite pool the transaction helper runs on: `dbretry::deadpool_sqlite::Pool` or a
/// `dbretry::bb8::Pool<SqliteConnectionManager>`. Sealed.
pub trait SqlitePool: Sync + private::Ops {}

/// A transaction to run on an SQLite pool; made by [`Retrier::transaction`], finished by
/// [`run`](SqliteTransaction::run).
///
/// # Default
///
/// `BEGIN IMMEDIATE`: the write lock is taken up front, waiting for it (within the try's
/// bound) instead of failing later with `SQLITE_BUSY_SNAPSHOT` when a read turns into a write.
/// Use [`TransactionBehavior::Deferred`] for transactions that only read.
#[must_use = "call `run` with the transaction's closure"]
pub struct SqliteTransaction<'a, P> {
    retrier: &'a Retrier,
    pool: &'a P,
    behavior: TransactionBehavior,
}

/// A try cut by its bound (the policy's `attempt_timeout`, or the deadline): it waited for its
/// turn to write, or its SQLite call was interrupted and awaited, and it did not commit.
/// Transient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the transaction did not finish within {bound:?} and was rolled back before the next try (another connection or transaction may hold the lock)"
)]
pub struct AttemptInterrupted {
    /// The try's bound.
    pub bound: Duration,
}

impl Classify for AttemptInterrupted {
    fn classify(&self, _phase: Phase) -> ErrorClass {
        ErrorClass::Transient
    }
}

impl<P> std::fmt::Debug for SqliteTransaction<'_, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let behavior = match self.behavior {
            TransactionBehavior::Deferred => "deferred",
            TransactionBehavior::Immediate => "immediate",
            TransactionBehavior::Exclusive => "exclusive",
            _ => "other",
        };
        f.debug_struct("SqliteTransaction")
            .field("retrier", &self.retrier.label())
            .field("behavior", &behavior)
            .finish_non_exhaustive()
    }
}

impl<'a, P: SqlitePool> SqliteTransaction<'a, P> {
    fn new(retrier: &'a Retrier, pool: &'a P) -> Self {
        Self {
            retrier,
            pool,
            behavior: TransactionBehavior::Immediate,
        }
    }

    /// How the transaction begins: `BEGIN IMMEDIATE` (the default), `DEFERRED` or
    /// `EXCLUSIVE`.
    pub fn behavior(mut self, behavior: TransactionBehavior) -> Self {
        self.behavior = behavior;
        self
    }

    /// Runs `body` in a transaction on the blocking pool and commits it; re-runs it while it
    /// fails with a transient error (`SQLITE_BUSY` and its extended codes, a lost or broken
    /// connection), under the retrier's policy (see [`RetryPolicy::LOCK_CONFLICTS`]). A try
    /// waits for its turn on the database file (writers of this process one at a time, first
    /// come first served; in rollback-journal mode readers too) within `max_elapsed`; then
    /// checkout, `BEGIN`, `body` and `COMMIT` are bounded by `attempt_timeout` and by what is
    /// left of `max_elapsed`, and so is SQLite's own wait for a lock in them (`busy_timeout`,
    /// restored afterwards). A deferred transaction whose first write meets a lock conflict
    /// is re-run as `BEGIN IMMEDIATE`.
    ///
    /// [`RetryPolicy::LOCK_CONFLICTS`]: crate::RetryPolicy::LOCK_CONFLICTS
    ///
    /// # Errors
    /// A [`RetryError`]: your closure's error by value when it ended the run (permanent, or
    /// retries spent); [`ErrorKind::CommitOutcomeUnknown`] when `COMMIT` failed with an I/O or
    /// similar error that may have left it applied; the pool's own error when no connection
    /// could be had.
    pub async fn run<T, E, F>(self, body: F) -> Result<T, RetryError<E>>
    where
        F: FnMut(&rusqlite::Transaction<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Classify + StdError + Send + Sync + 'static,
    {
        let Self {
            retrier,
            pool,
            behavior,
        } = self;
        let body = Arc::new(Mutex::new(body));
        let mut behavior = behavior;
        let mut turns = None;
        let mut driver = Driver::start(retrier);
        loop {
            if turns.is_none() {
                turns = turns_of(pool, driver.deadline()).await;
            }
            let bound = driver.begin();
            let limits = Limits {
                bound,
                run_deadline: driver.deadline(),
                attempt_timeout: retrier.policy().attempt_timeout(),
            };
            let mut wrote = false;
            let tried = try_once(
                pool,
                behavior,
                turns.as_ref(),
                body.clone(),
                limits,
                &mut wrote,
            )
            .instrument(driver.span())
            .await;
            // A deferred transaction that failed to turn into a write transaction (its
            // snapshot went stale, or another writer held the lock) is re-run as a writer:
            // `BEGIN IMMEDIATE`, taking a turn to write, so that it cannot starve.
            if wrote {
                behavior = TransactionBehavior::Immediate;
            }
            if let Some(result) = driver.settle(tried).await {
                return result;
            }
        }
    }
}

/// The turns on `pool`'s database file; the first time, asks a connection which file that
/// is and whether it is in WAL mode (without waiting for a lock). `None` if no connection could be had by `deadline` (the
/// try then meets the same failure, and the next try asks again).
async fn turns_of<P: SqlitePool>(pool: &P, deadline: Option<Instant>) -> Option<turns::Turns> {
    let diagnostics = pool.diagnostics();
    if let Some(turns) = turns::known(&diagnostics) {
        return Some(turns);
    }
    let connection = within(deadline, pool.checkout()).await?.ok()?;
    let asked = P::interact(&connection, |conn| {
        let file = conn
            .path()
            .filter(|path| !path.is_empty())
            .map(str::to_owned);
        (file, journal_mode_is_wal(conn))
    });
    let (file, wal) = within(deadline, asked).await?.ok()?;
    Some(turns::learn(&diagnostics, file, wal))
}

/// Whether the database is in WAL mode; `None` when that cannot be read without waiting (the
/// file is locked by another connection).
fn journal_mode_is_wal(conn: &Connection) -> Option<bool> {
    let configured = busy_timeout(conn)?;
    conn.busy_timeout(Duration::ZERO).ok()?;
    let mode = conn.query_row("PRAGMA journal_mode", [], |row| row.get::<_, String>(0));
    let _ = conn.busy_timeout(configured);
    mode.ok().map(|mode| mode.eq_ignore_ascii_case("wal"))
}

/// How long a try may take.
#[derive(Clone, Copy)]
struct Limits {
    /// The try's bound as the retrier counts it.
    bound: Option<Duration>,
    run_deadline: Option<Instant>,
    attempt_timeout: Option<Duration>,
}

impl Limits {
    /// The bound of a try starting now: `attempt_timeout`, or less near the deadline.
    fn bound_now(&self) -> Option<Duration> {
        let left = self
            .run_deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()));
        match (self.attempt_timeout, left) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// One try: a turn on the file, checkout, then `BEGIN`, `body` and `COMMIT` in one blocking
/// call. The wait for the turn is bounded by the run's deadline only (`attempt_timeout`
/// bounds the work, and a transaction that left the queue at each timeout would never reach
/// its head); the rest by the try's bound from then on. Sets `wrote` when the try failed on
/// its way from reading to writing.
async fn try_once<P, T, E, F>(
    pool: &P,
    behavior: TransactionBehavior,
    turns: Option<&turns::Turns>,
    body: Arc<Mutex<F>>,
    limits: Limits,
    wrote: &mut bool,
) -> Tried<T, E>
where
    P: SqlitePool,
    F: FnMut(&rusqlite::Transaction<'_>) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Classify + StdError + Send + 'static,
{
    let writes = !matches!(behavior, TransactionBehavior::Deferred);
    let turn = match turns {
        None => None,
        Some(turns) => match within(limits.run_deadline, turns.take(writes)).await {
            Some(turn) => Some(turn),
            None => {
                let bound = limits.bound.unwrap_or_default();
                let waited = Failure::new(AttemptInterrupted { bound }, Phase::Operation);
                // Cut by the deadline: an earlier try's error, if any, says more.
                return Tried::Cut(Duration::ZERO, waited);
            }
        },
    };
    let bound = limits.bound_now();
    let deadline = bound.map(|bound| crate::time::later(Instant::now(), bound));
    let bound = bound.unwrap_or_default();
    let interrupted = || {
        Tried::Cut(
            bound,
            Failure::new(AttemptInterrupted { bound }, Phase::Operation),
        )
    };
    let connection = match within(deadline, pool.checkout()).await {
        None => return interrupted(),
        // The pool retried its opens already; retrying here would stack a second loop.
        Some(Err(error)) => return Tried::GiveUp(error),
        Some(Ok(connection)) => connection,
    };
    let control = Arc::new(Control::default());
    let abandon_on_drop = AbandonOnDrop(Some(control.clone()));
    let lock_wait = LockWait {
        within: deadline.map(|deadline| deadline.saturating_duration_since(Instant::now())),
        head_of_queue: turn.as_ref().is_some_and(turns::Turn::writes),
    };
    let called = {
        let blocking = control.clone();
        let mut call = pin!(P::interact(&connection, move |conn| {
            blocking.run(conn, behavior, lock_wait, &body)
        }));
        match within(deadline, call.as_mut()).await {
            Some(called) => called,
            None => {
                // Cut short: interrupt the call and wait for it, so that it cannot commit
                // beside the next try (if it committed first, that commit is this run's
                // success).
                control.abandon();
                call.await
            }
        }
    };
    abandon_on_drop.disarm();
    drop(turn);
    let outcome = match called {
        Ok(outcome) => outcome,
        Err(error) => {
            P::evict(connection);
            return Tried::Broke(Failure::new(error, Phase::Operation));
        }
    };
    match outcome {
        Blocking::Committed(value) => Tried::Succeeded(value),
        Blocking::Abandoned => interrupted(),
        Blocking::Failed(error, writing) => {
            if error.breaks_connection() {
                P::evict(connection);
            }
            *wrote = writing;
            Tried::Failed(error)
        }
        Blocking::Broke(error) => {
            if error.breaks_connection() {
                P::evict(connection);
            }
            Tried::Broke(Failure::new(error, Phase::Operation))
        }
        Blocking::OutcomeUnknown(error) => {
            P::evict(connection);
            Tried::Stop(
                ErrorKind::CommitOutcomeUnknown,
                Failure::new(error, Phase::Operation),
            )
        }
    }
}

/// What the blocking call came to.
enum Blocking<T, E> {
    Committed(T),
    /// The closure's own error (rolled back); true when it came from turning a deferred
    /// transaction into a write transaction.
    Failed(E, bool),
    /// `BEGIN` or `COMMIT` failed, and nothing was applied (rolled back).
    Broke(rusqlite::Error),
    /// Abandoned by the retrier before `COMMIT`: rolled back.
    Abandoned,
    /// `COMMIT` failed in a way that may have left it applied.
    OutcomeUnknown(rusqlite::Error),
}

/// What the async side and the blocking call share about one try.
#[derive(Default)]
struct Control {
    abandoned: AtomicBool,
    interrupt: Mutex<Option<InterruptHandle>>,
}

impl Control {
    /// Tells the call it is abandoned, and interrupts the statement it runs, if any.
    fn abandon(&self) {
        self.abandoned.store(true, Ordering::SeqCst);
        if let Some(handle) = &*lock(&self.interrupt) {
            handle.interrupt();
        }
    }

    fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::SeqCst)
    }

    /// The blocking call: `BEGIN`, `body`, `COMMIT`, with SQLite's lock wait bounded as
    /// `lock_wait` says.
    fn run<T, E, F>(
        &self,
        conn: &mut Connection,
        behavior: TransactionBehavior,
        lock_wait: LockWait,
        body: &Mutex<F>,
    ) -> Blocking<T, E>
    where
        F: FnMut(&rusqlite::Transaction<'_>) -> Result<T, E>,
        E: StdError + 'static,
    {
        *lock(&self.interrupt) = Some(conn.get_interrupt_handle());
        // Checked after registering: an abandon from now on interrupts this call.
        if self.abandoned() {
            return Blocking::Abandoned;
        }
        let configured = lock_wait.within.and_then(|_| busy_timeout(conn));
        if let (Some(within), Some(configured)) = (lock_wait.within, configured) {
            let wait = within.min(configured);
            // Best effort: on failure the configured wait applies, still bounded by the await.
            let _ = if lock_wait.head_of_queue {
                head_of_queue::wait_for_lock(conn, wait)
            } else {
                conn.busy_timeout(wait)
            };
        }
        let outcome = self.transact(conn, behavior, body);
        if let Some(configured) = configured {
            let _ = conn.busy_timeout(configured);
        }
        outcome
    }

    fn transact<T, E, F>(
        &self,
        conn: &mut Connection,
        behavior: TransactionBehavior,
        body: &Mutex<F>,
    ) -> Blocking<T, E>
    where
        F: FnMut(&rusqlite::Transaction<'_>) -> Result<T, E>,
        E: StdError + 'static,
    {
        let transaction = match conn.transaction_with_behavior(behavior) {
            Ok(transaction) => transaction,
            Err(error) => {
                let interrupted =
                    error.sqlite_error_code() == Some(ErrorCode::OperationInterrupted);
                let takes_lock = !matches!(behavior, TransactionBehavior::Deferred);
                if interrupted && takes_lock && self.abandoned() {
                    // The try's bound passed while `BEGIN IMMEDIATE` waited for the lock:
                    // the lock's own error, which SQLite would have given a moment later.
                    return Blocking::Broke(still_locked());
                }
                return self.not_applied(error);
            }
        };
        let done = (lock(body))(&transaction);
        // Dropping the transaction rolls it back, whatever the closure did.
        let value = match done {
            Ok(_) | Err(_) if self.abandoned() => return Blocking::Abandoned,
            Ok(value) => value,
            Err(error) => {
                let wrote = matches!(behavior, TransactionBehavior::Deferred)
                    && failed_to_write(&transaction, &error);
                return Blocking::Failed(error, wrote);
            }
        };
        match transaction.commit() {
            Ok(()) => Blocking::Committed(value),
            // rusqlite rolled back after the failed COMMIT.
            Err(error) if not_applied(&error) => self.not_applied(error),
            Err(error) => Blocking::OutcomeUnknown(error),
        }
    }

    /// `BEGIN` or `COMMIT` failed and applied nothing: the real error (a lock held
    /// elsewhere), unless it is the interrupt of an abandoned try.
    fn not_applied<T, E>(&self, error: rusqlite::Error) -> Blocking<T, E> {
        let interrupted = error.sqlite_error_code() == Some(ErrorCode::OperationInterrupted);
        if interrupted && self.abandoned() {
            Blocking::Abandoned
        } else {
            Blocking::Broke(error)
        }
    }
}

/// `SQLITE_BUSY`, as SQLite reports a lock that did not come in time.
fn still_locked() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
        Some("database is locked".to_owned()),
    )
}

/// Whether `error`, met in a deferred transaction, is the lock conflict of its first write:
/// `SQLITE_BUSY_SNAPSHOT`, or `SQLITE_BUSY` while the transaction already read (a reader that
/// could not start holds no lock yet).
fn failed_to_write<E: StdError + 'static>(conn: &Connection, error: &E) -> bool {
    let code = crate::retry::chain(error).find_map(|e| match e.downcast_ref::<rusqlite::Error>() {
        Some(rusqlite::Error::SqliteFailure(failure, _)) => Some(failure.extended_code),
        _ => None,
    });
    let reading = conn
        .transaction_state(Some(rusqlite::MAIN_DB))
        .is_ok_and(|state| state != rusqlite::TransactionState::None);
    match code {
        Some(rusqlite::ffi::SQLITE_BUSY_SNAPSHOT) => true,
        Some(code) => code & 0xff == rusqlite::ffi::SQLITE_BUSY && reading,
        None => false,
    }
}

/// How a try's blocking call waits for SQLite's lock.
#[derive(Clone, Copy)]
struct LockWait {
    /// At most this long (what is left of the try's bound), and never longer than the
    /// connection's `busy_timeout`.
    within: Option<Duration>,
    /// The try holds its turn to write: no writer of this process waits behind it in
    /// SQLite's busy handler, so it polls often rather than sleeping up to 100 ms between
    /// polls and losing the lock to whoever polls more often (another process, a deferred
    /// transaction).
    head_of_queue: bool,
}

/// The busy handler of the writer whose turn it is: polls every millisecond until its
/// deadline. (SQLite's handler is a plain function: the deadline lives in the blocking
/// thread, which runs nothing else meanwhile.)
mod head_of_queue {
    use std::cell::Cell;
    use std::time::{Duration, Instant};

    use rusqlite::Connection;

    thread_local! {
        static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    }

    const POLL: Duration = Duration::from_millis(1);

    pub(super) fn wait_for_lock(conn: &Connection, wait: Duration) -> rusqlite::Result<()> {
        DEADLINE.set(Instant::now().checked_add(wait));
        conn.busy_handler(Some(poll))
    }

    fn poll(_count: i32) -> bool {
        let waiting = DEADLINE
            .get()
            .is_some_and(|deadline| Instant::now() < deadline);
        if waiting {
            std::thread::sleep(POLL);
        }
        waiting
    }
}

/// A failed `COMMIT` that certainly applied nothing: the lock was busy, or it was interrupted
/// before it ran. (An I/O error, a full disk, … may come after the commit reached the file.)
fn not_applied(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::OperationInterrupted)
    )
}

/// The connection's `busy_timeout`, to restore after the try.
fn busy_timeout(conn: &Connection) -> Option<Duration> {
    conn.prepare_cached("PRAGMA busy_timeout")
        .and_then(|mut statement| statement.query_row([], |row| row.get::<_, i64>(0)))
        .ok()
        .and_then(|ms| u64::try_from(ms).ok())
        .map(Duration::from_millis)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Abandons the try when the caller goes away mid-call (its future dropped): the blocking
/// call then rolls back instead of committing, unless it is already committing.
struct AbandonOnDrop(Option<Arc<Control>>);

impl AbandonOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        if let Some(control) = self.0.take() {
            control.abandon();
        }
    }
}

/// Makes `Retrier::transaction` return a [`SqliteTransaction`] for a pool type.
macro_rules! sqlite_transactions {
    () => {
        fn transaction<'a>(retrier: &'a Retrier, pool: &'a Self) -> SqliteTransaction<'a, Self> {
            SqliteTransaction::new(retrier, pool)
        }
    };
}

mod private {
    use super::*;

    /// What the helper does with a pool: checkout, run a blocking call, evict.
    pub trait Ops: sealed::Sealed {
        /// A checked-out connection.
        type Connection<'p>: Send + Sync;

        fn checkout(&self) -> Boxed<'_, Result<Self::Connection<'_>, Error>>;

        /// The pool's diagnostics: their identity is the pool's (shared by its clones).
        fn diagnostics(&self) -> Diagnostics;

        fn interact<'c, R, F>(
            connection: &'c Self::Connection<'_>,
            call: F,
        ) -> Boxed<'c, Result<R, InteractError>>
        where
            F: FnOnce(&mut Connection) -> R + Send + 'static,
            R: Send + 'static;

        /// Takes the connection out of the pool for good (where the pool can be told).
        fn evict(connection: Self::Connection<'_>);
    }
}

#[cfg(feature = "deadpool")]
mod on_deadpool {
    use super::private::Ops;
    use super::*;
    use crate::deadpool_sqlite::{Object, Pool};

    impl sealed::Sealed for Pool {}
    impl SqlitePool for Pool {}

    impl TransactionPool for Pool {
        type Transaction<'a> = SqliteTransaction<'a, Pool>;
        sqlite_transactions!();
    }

    impl Ops for Pool {
        type Connection<'p> = Object;

        fn diagnostics(&self) -> Diagnostics {
            self.manager().diagnostics()
        }

        fn checkout(&self) -> Boxed<'_, Result<Object, Error>> {
            Box::pin(async move {
                self.get().await.map_err(|error| {
                    crate::manager::from_pool_error(error, self.manager().pool_shared())
                })
            })
        }

        fn interact<'c, R, F>(
            connection: &'c Self::Connection<'_>,
            call: F,
        ) -> Boxed<'c, Result<R, InteractError>>
        where
            F: FnOnce(&mut Connection) -> R + Send + 'static,
            R: Send + 'static,
        {
            Box::pin(async move {
                connection
                    .interact(call)
                    .await
                    .map_err(|error| match error {
                        deadpool_sync::InteractError::Panic(_) => InteractError::Panic,
                        deadpool_sync::InteractError::Cancelled => InteractError::Cancelled,
                    })
            })
        }

        fn evict(connection: Object) {
            drop(Object::take(connection));
        }
    }
}

#[cfg(feature = "bb8")]
mod on_bb8 {
    use super::private::Ops;
    use super::*;
    use crate::bb8::{Pool, PooledConnection};
    use crate::bb8_sqlite::SqliteConnectionManager;

    impl sealed::Sealed for Pool<SqliteConnectionManager> {}
    impl SqlitePool for Pool<SqliteConnectionManager> {}

    impl TransactionPool for Pool<SqliteConnectionManager> {
        type Transaction<'a> = SqliteTransaction<'a, Self>;
        sqlite_transactions!();
    }

    impl Ops for Pool<SqliteConnectionManager> {
        type Connection<'p> = PooledConnection<'p, SqliteConnectionManager>;

        fn checkout(&self) -> Boxed<'_, Result<Self::Connection<'_>, Error>> {
            Box::pin(self.get())
        }

        fn diagnostics(&self) -> Diagnostics {
            Pool::diagnostics(self)
        }

        fn interact<'c, R, F>(
            connection: &'c Self::Connection<'_>,
            call: F,
        ) -> Boxed<'c, Result<R, InteractError>>
        where
            F: FnOnce(&mut Connection) -> R + Send + 'static,
            R: Send + 'static,
        {
            Box::pin(connection.interact(call))
        }

        /// bb8 drops the connections its `has_broken` reports (poisoned by a panic); an
        /// SQLite connection is otherwise fine to reuse after a rolled-back try.
        fn evict(connection: Self::Connection<'_>) {
            drop(connection);
        }
    }
}

//! The error a retried connect or operation ends with.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use crate::classify::{Classify, ErrorClass, Phase};
use crate::codes::Code;
use crate::failure::{Failure, SharedCause};

/// Why a retried connect or operation ended in failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Connecting failed with a permanent error (wrong password, no such database, TLS
    /// refused, …): one attempt, not retried. The cause carries the details and SQLSTATE.
    Connection,
    /// The operation failed with a permanent error (bad SQL, a constraint violation, …): not
    /// retried.
    Query,
    /// Every allowed attempt failed with a transient error (`max_attempts` reached).
    RetryExhausted,
    /// The total deadline (`max_elapsed`) passed before a try succeeded.
    Timeout,
    /// The pool's circuit breaker is open after repeated connect failures: no attempt was made.
    CircuitOpen,
    /// No connection became free within the checkout's budget, while the database answered:
    /// every connection was in use ([`Error::pool_state`] says how full the pool was).
    PoolExhausted,
    /// The retrier's [`RetryBudget`](crate::RetryBudget) refused a retry: its callers have
    /// retried too much for their recent first attempts. The cause is the last real error.
    BudgetExhausted,
    /// The connection was lost while `COMMIT` was in flight: the transaction may or may not
    /// have been applied, so it was not re-run. Check before running it again.
    CommitOutcomeUnknown,
}

impl ErrorKind {
    /// Why a caller was given up on, as the `reason` label of `dbretry_give_ups_total`.
    pub(crate) fn give_up_reason(self) -> &'static str {
        match self {
            Self::Connection | Self::Query => "permanent",
            Self::RetryExhausted => "attempts",
            Self::Timeout => "deadline",
            Self::CircuitOpen => "circuit_open",
            Self::PoolExhausted => "pool_exhausted",
            Self::BudgetExhausted => "budget",
            Self::CommitOutcomeUnknown => "commit_outcome_unknown",
        }
    }

    /// A short, stable label: `connection`, `query`, `retry_exhausted`, `timeout`,
    /// `circuit_open`, `pool_exhausted`, `budget_exhausted`, `commit_outcome_unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connection => "connection",
            Self::Query => "query",
            Self::RetryExhausted => "retry_exhausted",
            Self::Timeout => "timeout",
            Self::CircuitOpen => "circuit_open",
            Self::PoolExhausted => "pool_exhausted",
            Self::BudgetExhausted => "budget_exhausted",
            Self::CommitOutcomeUnknown => "commit_outcome_unknown",
        }
    }
}

/// How full a pool was when a checkout gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolState {
    /// Connections handed out.
    pub in_use: usize,
    /// The most the pool holds.
    pub max_size: usize,
    /// Other callers waiting for a connection.
    pub waiting: usize,
}

/// The error of a retried connect or operation: what happened, after how many attempts and how
/// long, with the last real cause (the driver's error, SQLSTATE and all) in
/// [`source()`](StdError::source).
///
/// Ask it questions rather than matching on it: [`kind`](Error::kind),
/// [`attempts`](Error::attempts), [`elapsed`](Error::elapsed), [`class`](Error::class),
/// [`sqlstate`](Error::sqlstate), [`last_failure`](Error::last_failure). Its message never
/// contains a password (drivers do not put one in theirs, and this crate prints no connection
/// string).
#[derive(Clone)]
pub struct Error(Box<Inner>);

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    attempts: u32,
    elapsed: Duration,
    last: Option<Failure>,
    pool: Option<PoolState>,
}

impl Error {
    pub(crate) fn new(
        kind: ErrorKind,
        attempts: u32,
        elapsed: Duration,
        last: Option<Failure>,
    ) -> Self {
        Self(Box::new(Inner {
            kind,
            attempts,
            elapsed,
            last,
            pool: None,
        }))
    }

    /// A checkout that waited `waited` for a free connection while the database answered.
    pub(crate) fn pool_exhausted(waited: Duration, pool: PoolState) -> Self {
        let mut error = Self::new(ErrorKind::PoolExhausted, 0, waited, None);
        error.0.pool = Some(pool);
        error
    }

    /// How full the pool was, for [`ErrorKind::PoolExhausted`].
    pub fn pool_state(&self) -> Option<PoolState> {
        self.0.pool
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// Tries made, the first included (0 when the circuit breaker refused at once).
    pub fn attempts(&self) -> u32 {
        self.0.attempts
    }

    /// Time from the first try to giving up, sleeps included.
    pub fn elapsed(&self) -> Duration {
        self.0.elapsed
    }

    /// The last failed attempt, with its class, phase and time.
    pub fn last_failure(&self) -> Option<&Failure> {
        self.0.last.as_ref()
    }

    /// The class of the last cause, if there was one.
    pub fn class(&self) -> Option<ErrorClass> {
        self.0.last.as_ref().map(Failure::class)
    }

    /// The last real cause: the driver's error (or [`AttemptTimedOut`](crate::AttemptTimedOut)).
    pub fn cause(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.0.last.as_ref().map(Failure::cause)
    }

    /// The first error of type `T` in the cause chain: `err.find_cause::<tokio_postgres::Error>()`.
    pub fn find_cause<T: StdError + 'static>(&self) -> Option<&T> {
        self.0.last.as_ref()?.find_cause()
    }

    /// The database's code for the last cause: a SQLSTATE or an SQLite result code.
    pub fn database_code(&self) -> Option<Code<'_>> {
        self.0.last.as_ref()?.database_code()
    }

    /// The PostgreSQL SQLSTATE of the last cause (`"28P01"`, `"3D000"`, `"57P03"`, …), if the
    /// server sent one.
    pub fn sqlstate(&self) -> Option<&str> {
        self.0.last.as_ref()?.sqlstate()
    }

    /// The SQLite extended result code of the last cause (5 = `SQLITE_BUSY`, 517 =
    /// `SQLITE_BUSY_SNAPSHOT`, 14 = `SQLITE_CANTOPEN`, …), if there is one.
    pub fn sqlite_code(&self) -> Option<i32> {
        self.0.last.as_ref()?.sqlite_code()
    }

    /// The SQLSTATE of the last cause, as `tokio_postgres::Error::code` answers it, so
    /// `PoolError::Backend(e) if e.code() == Some(&SqlState::INVALID_PASSWORD)` reads as with
    /// deadpool-postgres.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        self.as_db_error().map(tokio_postgres::error::DbError::code)
    }

    /// The server's error report behind the last cause (message, detail, hint, constraint, …),
    /// as `tokio_postgres::Error::as_db_error` answers it.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn as_db_error(&self) -> Option<&tokio_postgres::error::DbError> {
        self.find_cause()
    }

    /// Whether the last cause is tokio-postgres's "connection closed", as
    /// `tokio_postgres::Error::is_closed` answers it.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn is_closed(&self) -> bool {
        self.find_cause::<tokio_postgres::Error>()
            .is_some_and(tokio_postgres::Error::is_closed)
    }

    /// SQLite's error behind the last cause (code and extended code), as
    /// `rusqlite::Error::sqlite_error` answers it.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub fn sqlite_error(&self) -> Option<&rusqlite::ffi::Error> {
        self.find_cause()
    }

    /// SQLite's primary error code behind the last cause (`DatabaseBusy`, `CannotOpen`, …), as
    /// `rusqlite::Error::sqlite_error_code` answers it.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub fn sqlite_error_code(&self) -> Option<rusqlite::ErrorCode> {
        self.sqlite_error().map(|error| error.code)
    }

    /// Takes the last cause out of the error.
    pub fn into_cause(self) -> Option<SharedCause> {
        self.0.last.map(|failure| failure.shared_cause().clone())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Inner {
            kind,
            attempts,
            elapsed,
            ..
        } = &*self.0;
        let tries = if *attempts == 1 {
            "attempt"
        } else {
            "attempts"
        };
        // What is still wrong, in the words of the last cause: a lock, a conflict, or (for
        // anything else) an unavailable database.
        let (what, still) = self
            .0
            .last
            .as_ref()
            .and_then(Failure::database_code)
            .and_then(|code| code.condition())
            .unwrap_or(("database", "unavailable"));
        match kind {
            ErrorKind::Connection => write!(
                f,
                "cannot connect to the database (permanent error, not retried)"
            )?,
            ErrorKind::Query => {
                let class = self.class().map_or("permanent", ErrorClass::as_str);
                write!(f, "database operation failed ({class} error, not retried)")?;
            }
            ErrorKind::RetryExhausted => write!(
                f,
                "{what} still {still} after {attempts} {tries} over {elapsed:.2?} (max_attempts reached)"
            )?,
            ErrorKind::Timeout if *attempts == 0 => write!(
                f,
                "database still unavailable when the deadline passed, after {elapsed:.2?}"
            )?,
            ErrorKind::Timeout => write!(
                f,
                "{what} still {still} when the deadline passed: {attempts} {tries} over {elapsed:.2?}"
            )?,
            ErrorKind::CircuitOpen => write!(
                f,
                "not connecting: the circuit breaker is open after repeated connect failures"
            )?,
            ErrorKind::PoolExhausted => {
                write!(
                    f,
                    "no connection of the pool became free within {elapsed:.2?}"
                )?;
                if let Some(pool) = &self.0.pool {
                    write!(
                        f,
                        ": {} of {} in use, {} other caller(s) waiting",
                        pool.in_use, pool.max_size, pool.waiting
                    )?;
                }
                write!(
                    f,
                    "; the database answers (raise max_size, or hold connections for less time)"
                )?;
            }
            ErrorKind::BudgetExhausted => write!(
                f,
                "not retrying: the retry budget is spent (too many retries for recent first attempts); {what} {still} after {attempts} {tries} over {elapsed:.2?}"
            )?,
            ErrorKind::CommitOutcomeUnknown => write!(
                f,
                "commit outcome unknown: the connection was lost while COMMIT was in flight, so the transaction may or may not have been applied (not re-run; check before running it again)"
            )?,
        }
        if let Some(last) = &self.0.last {
            let label = if matches!(kind, ErrorKind::Connection | ErrorKind::Query) {
                "cause"
            } else {
                "last error"
            };
            let cause = last.to_string();
            write!(f, "; {label}: {cause}")?;
            // A cause that is itself one of these errors has printed its hint already.
            if let Some(hint) = last.hint().filter(|hint| !cause.contains(hint)) {
                write!(f, " (hint: {hint})")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.0.kind)
            .field("attempts", &self.0.attempts)
            .field("elapsed", &self.0.elapsed)
            .field("last", &self.0.last)
            .finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0
            .last
            .as_ref()
            .map(|last| last.cause() as &(dyn StdError + 'static))
    }
}

impl Classify for Error {
    /// [`ErrorKind::CommitOutcomeUnknown`] is permanent whatever its cause (re-running could
    /// apply a transaction twice). Otherwise the class of the last failure when there is one (a
    /// timed-out or exhausted run ended on a transient one, a permanent give-up on a permanent
    /// one); without one, permanent for [`ErrorKind::Connection`] and [`ErrorKind::Query`] and
    /// transient otherwise (an open circuit, an exhausted pool or budget: conditions that pass).
    fn classify(&self, _phase: Phase) -> ErrorClass {
        if self.0.kind == ErrorKind::CommitOutcomeUnknown {
            return ErrorClass::Permanent;
        }
        if let Some(last) = &self.0.last {
            return last.class();
        }
        match self.0.kind {
            ErrorKind::Connection | ErrorKind::Query | ErrorKind::CommitOutcomeUnknown => {
                ErrorClass::Permanent
            }
            _ => ErrorClass::Transient,
        }
    }

    fn breaks_connection(&self) -> bool {
        self.0.last.as_ref().is_some_and(Failure::breaks_connection)
    }
}

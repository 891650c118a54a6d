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
}

impl ErrorKind {
    /// Why a caller was given up on, as the `reason` label of `dbretry_give_ups_total`.
    pub(crate) fn give_up_reason(self) -> &'static str {
        match self {
            Self::Connection | Self::Query => "permanent",
            Self::RetryExhausted => "attempts",
            Self::Timeout => "deadline",
            Self::CircuitOpen => "circuit_open",
        }
    }

    /// A short, stable label: `connection`, `query`, `retry_exhausted`, `timeout`,
    /// `circuit_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connection => "connection",
            Self::Query => "query",
            Self::RetryExhausted => "retry_exhausted",
            Self::Timeout => "timeout",
            Self::CircuitOpen => "circuit_open",
        }
    }
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
        }))
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
        match kind {
            ErrorKind::Connection => write!(
                f,
                "cannot connect to the database (permanent error, not retried)"
            )?,
            ErrorKind::Query => write!(
                f,
                "database operation failed (permanent error, not retried)"
            )?,
            ErrorKind::RetryExhausted => write!(
                f,
                "database still unavailable after {attempts} {tries} over {elapsed:.2?} (max_attempts reached)"
            )?,
            ErrorKind::Timeout => write!(
                f,
                "database still unavailable when the deadline passed: {attempts} {tries} over {elapsed:.2?}"
            )?,
            ErrorKind::CircuitOpen => write!(
                f,
                "not connecting: the circuit breaker is open after repeated connect failures"
            )?,
        }
        if let Some(last) = &self.0.last {
            let label = if matches!(kind, ErrorKind::Connection | ErrorKind::Query) {
                "cause"
            } else {
                "last error"
            };
            write!(f, "; {label}: {last}")?;
            if let Some(hint) = last.hint() {
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
    /// Permanent for [`ErrorKind::Connection`] and [`ErrorKind::Query`]; transient otherwise:
    /// the condition that exhausted the retries may pass later.
    fn classify(&self, _phase: Phase) -> ErrorClass {
        match self.0.kind {
            ErrorKind::Connection | ErrorKind::Query => ErrorClass::Permanent,
            _ => ErrorClass::Transient,
        }
    }

    fn breaks_connection(&self) -> bool {
        self.0.last.as_ref().is_some_and(Failure::breaks_connection)
    }
}

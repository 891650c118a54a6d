//! The error a retried connect or operation ends with.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::classify::{Classify, ErrorClass, Phase};

/// A cause as carried by [`Error`]: shared, because one failed reconnect can be the cause
/// reported to every caller that waited on it.
pub type SharedCause = Arc<dyn StdError + Send + Sync + 'static>;

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
/// [`sqlstate`](Error::sqlstate), [`cause`](Error::cause). Its message never contains a
/// password (drivers do not put one in theirs, and this crate prints no connection string).
#[derive(Clone)]
pub struct Error(Box<Inner>);

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    attempts: u32,
    elapsed: Duration,
    class: Option<ErrorClass>,
    cause: Option<SharedCause>,
}

impl Error {
    pub(crate) fn new(
        kind: ErrorKind,
        attempts: u32,
        elapsed: Duration,
        class: Option<ErrorClass>,
        cause: Option<SharedCause>,
    ) -> Self {
        Self(Box::new(Inner {
            kind,
            attempts,
            elapsed,
            class,
            cause,
        }))
    }

    /// Runs a check of a pooled connection (a ping), bounded by `bound`; a failure is an
    /// [`ErrorKind::Connection`] error carrying the check's error or [`AttemptTimedOut`].
    ///
    /// [`AttemptTimedOut`]: crate::AttemptTimedOut
    #[cfg_attr(not(pools), allow(dead_code))]
    pub(crate) async fn check<T, E>(
        bound: Duration,
        check: impl Future<Output = Result<T, E>>,
    ) -> Result<T, Error>
    where
        E: crate::OperationError,
    {
        let started = tokio::time::Instant::now();
        let failure = match tokio::time::timeout(bound, check).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => crate::retry::Failure::new(error, Phase::Connect),
            Err(_) => crate::retry::Failure::new(
                crate::AttemptTimedOut { timeout: bound },
                Phase::Connect,
            ),
        };
        Err(Self::new(
            ErrorKind::Connection,
            1,
            started.elapsed(),
            Some(failure.class),
            Some(failure.cause),
        ))
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

    /// The class of the last cause, if there was one.
    pub fn class(&self) -> Option<ErrorClass> {
        self.0.class
    }

    /// The last real cause: the driver's error (or [`AttemptTimedOut`](crate::AttemptTimedOut)).
    pub fn cause(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.0.cause.as_deref()
    }

    /// The first error of type `T` in the cause chain: `err.find_cause::<tokio_postgres::Error>()`.
    pub fn find_cause<T: StdError + 'static>(&self) -> Option<&T> {
        let mut next: Option<&(dyn StdError + 'static)> = self.source();
        while let Some(error) = next {
            if let Some(found) = error.downcast_ref::<T>() {
                return Some(found);
            }
            next = error.source();
        }
        None
    }

    /// The PostgreSQL SQLSTATE of the last cause (`"28P01"`, `"3D000"`, `"57P03"`, …), if the
    /// server sent one.
    #[cfg(feature = "postgres")]
    pub fn sqlstate(&self) -> Option<&str> {
        self.find_cause::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::code)
            .map(tokio_postgres::error::SqlState::code)
    }

    /// The SQLite extended result code of the last cause (5 = `SQLITE_BUSY`, 517 =
    /// `SQLITE_BUSY_SNAPSHOT`, 14 = `SQLITE_CANTOPEN`, …), if there is one.
    #[cfg(feature = "sqlite")]
    pub fn sqlite_code(&self) -> Option<i32> {
        match self.find_cause::<rusqlite::Error>()? {
            rusqlite::Error::SqliteFailure(e, _) => Some(e.extended_code),
            _ => None,
        }
    }

    /// Takes the last cause out of the error.
    pub fn into_cause(self) -> Option<SharedCause> {
        self.0.cause
    }

    fn hint(&self) -> Option<&'static str> {
        #[cfg(feature = "postgres")]
        if let Some(hint) = self.sqlstate().and_then(crate::postgres::hint_for_sqlstate) {
            return Some(hint);
        }
        #[cfg(feature = "sqlite")]
        if let Some(hint) = self.sqlite_code().and_then(crate::sqlite::hint_for_code) {
            return Some(hint);
        }
        None
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
        if let Some(cause) = &self.0.cause {
            let label = if matches!(kind, ErrorKind::Connection | ErrorKind::Query) {
                "cause"
            } else {
                "last error"
            };
            write!(f, "; {label}: ")?;
            write_chain(f, &**cause)?;
        }
        if let Some(hint) = self.hint() {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// Displays an error followed by its sources, `a: b: c` — what a log line or a hook wants
/// from a driver error whose own message is only "db error".
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_chain(f, self.0)
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_chain(f, self.0)
    }
}

/// Writes an error and its sources, `a: b: c`, as drivers put the detail in the source (a
/// tokio-postgres error says only "db error"; its source says "FATAL: password
/// authentication failed …").
fn write_chain(f: &mut fmt::Formatter<'_>, error: &(dyn StdError + 'static)) -> fmt::Result {
    let mut written = error.to_string();
    f.write_str(&written)?;
    let mut next = error.source();
    while let Some(source) = next {
        let text = source.to_string();
        if !written.contains(&text) && !text.contains(&written) {
            write!(f, ": {text}")?;
            written = text;
        }
        next = source.source();
    }
    Ok(())
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.0.kind)
            .field("attempts", &self.0.attempts)
            .field("elapsed", &self.0.elapsed)
            .field("class", &self.0.class)
            .field("cause", &self.0.cause)
            .finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0
            .cause
            .as_deref()
            .map(|cause| cause as &(dyn StdError + 'static))
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
        self.0
            .cause
            .as_deref()
            .is_some_and(|cause| crate::classify::breaks_connection_dyn(cause))
    }
}

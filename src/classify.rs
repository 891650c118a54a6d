//! Transient or permanent: the one classification used by the retry loop, the pool managers,
//! health checks and the CLI.

use std::error::Error as StdError;
use std::io;

use serde::Serialize;

/// Whether retrying can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The same request may succeed after a pause: the server is restarting, starting up, out
    /// of connection slots, unreachable for a moment; a lock is held; a connection was cut.
    Transient,
    /// It will fail the same way again: wrong password, no such database, bad SQL, a
    /// certificate that does not verify. Reported at once, never retried.
    Permanent,
}

impl ErrorClass {
    /// `"transient"` or `"permanent"`: the label used in metrics and health bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
        }
    }

    /// True for [`ErrorClass::Transient`].
    pub fn is_transient(self) -> bool {
        self == Self::Transient
    }
}

/// What was being done when the error happened; some errors are transient in one phase only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Opening a connection (TCP, TLS, startup, authentication) or checking a pooled one.
    Connect,
    /// Running the caller's operation: a query or a whole transaction, re-run from the start on
    /// retry. Serialization failures and deadlocks (PostgreSQL 40001, 40P01) and SQLite
    /// `BUSY` are transient here: the caller re-runs the transaction; a pool never does.
    Operation,
}

/// An error that knows whether retrying can help.
///
/// Implemented for `tokio_postgres::Error`, `rusqlite::Error`, `std::io::Error`, this crate's
/// [`Error`](crate::Error), the pool crates' errors wrapping any of these, and boxed errors
/// (whose cause chain is searched for one of these). Implement it for your own error type to
/// use it with [`Retrier`](crate::Retrier).
pub trait Classify {
    /// Transient or permanent in `phase`.
    fn classify(&self, phase: Phase) -> ErrorClass;

    /// True when the connection that produced this error must not be used again (it was
    /// closed, cut, or left in an unknown state); pools evict it.
    fn breaks_connection(&self) -> bool {
        false
    }
}

impl Phase {
    /// `"connect"` or `"operation"`: the `phase` label of metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Operation => "operation",
        }
    }
}

impl Classify for io::Error {
    fn classify(&self, _phase: Phase) -> ErrorClass {
        classify_io(self)
    }

    fn breaks_connection(&self) -> bool {
        true
    }
}

/// An error a retried operation may fail with: anything that [classifies](Classify) itself
/// and can be boxed — any `std::error::Error + Send + Sync` type, and
/// `Box<dyn std::error::Error + Send + Sync>`.
pub trait OperationError: Classify + Into<Box<dyn StdError + Send + Sync>> {}

impl<E: Classify + Into<Box<dyn StdError + Send + Sync>>> OperationError for E {}

/// Network conditions that pass: refused, reset, unreachable, timed out, a unix socket absent
/// while the server restarts. Everything else (bad input, permission denied by the OS, …) is
/// permanent.
pub(crate) fn classify_io(error: &io::Error) -> ErrorClass {
    use io::ErrorKind::*;
    match error.kind() {
        ConnectionRefused | ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
        | TimedOut | HostUnreachable | NetworkUnreachable | NetworkDown | NotConnected
        | AddrNotAvailable | Interrupted | NotFound => ErrorClass::Transient,
        _ if is_temporary_dns_failure(error) => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// `getaddrinfo`'s `EAI_AGAIN` reaches Rust only as text (std gives it no kind or code), so
/// the text is the one structured-enough signal there is.
fn is_temporary_dns_failure(error: &io::Error) -> bool {
    error.raw_os_error().is_none()
        && error
            .to_string()
            .contains("Temporary failure in name resolution")
}

/// A try that ran past the policy's `attempt_timeout`. Transient: the next try may be faster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the attempt did not finish within {timeout:?} (attempt_timeout); the server may be overloaded, hung or unreachable"
)]
pub struct AttemptTimedOut {
    /// The bound that was exceeded.
    pub timeout: std::time::Duration,
}

impl Classify for AttemptTimedOut {
    fn classify(&self, _phase: Phase) -> ErrorClass {
        ErrorClass::Transient
    }

    fn breaks_connection(&self) -> bool {
        true
    }
}

#[cfg(feature = "deadpool")]
impl<E: Classify> Classify for deadpool::managed::PoolError<E> {
    fn classify(&self, phase: Phase) -> ErrorClass {
        use deadpool::managed::PoolError;
        match self {
            Self::Backend(e) => e.classify(phase),
            Self::Timeout(_) => ErrorClass::Transient,
            PoolError::PostCreateHook(deadpool::managed::HookError::Backend(e)) => {
                e.classify(phase)
            }
            _ => ErrorClass::Permanent,
        }
    }
}

#[cfg(feature = "bb8")]
impl<E: Classify> Classify for bb8::RunError<E> {
    fn classify(&self, phase: Phase) -> ErrorClass {
        match self {
            Self::User(e) => e.classify(phase),
            Self::TimedOut => ErrorClass::Transient,
        }
    }

    fn breaks_connection(&self) -> bool {
        matches!(self, Self::User(e) if e.breaks_connection())
    }
}

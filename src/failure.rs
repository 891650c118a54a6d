//! One failed attempt, as every part of the crate records it: the error itself, its class,
//! the phase, when, and whether it broke the connection. [`Error`](crate::Error) carries the
//! last one, [`Diagnostics`](crate::Diagnostics) keeps them, health reports and the CLI read
//! their codes — all through this one type.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use crate::classify::{ErrorClass, OperationError, Phase};
use crate::codes::{Code, code_in};

/// A cause as carried by a [`Failure`]: shared, because one failed reconnect can be the cause
/// reported to every caller that waited on it.
pub type SharedCause = Arc<dyn StdError + Send + Sync + 'static>;

/// One failed attempt: the real error (the driver's, with its SQLSTATE or result code), its
/// class, the phase it happened in and when. Cheap to clone.
#[derive(Clone)]
pub struct Failure {
    cause: SharedCause,
    class: ErrorClass,
    breaks_connection: bool,
    phase: Phase,
    at: SystemTime,
}

impl Failure {
    /// Records `error`, classified for `phase`, as happening now.
    pub fn new<E: OperationError>(error: E, phase: Phase) -> Self {
        Self {
            class: error.classify(phase),
            breaks_connection: error.breaks_connection(),
            cause: Arc::from(error.into()),
            phase,
            at: SystemTime::now(),
        }
    }

    /// The error itself.
    pub fn cause(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.cause
    }

    /// The error itself, shared.
    pub fn shared_cause(&self) -> &SharedCause {
        &self.cause
    }

    /// Transient or permanent.
    pub fn class(&self) -> ErrorClass {
        self.class
    }

    /// Connecting or running an operation.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// When it happened.
    pub fn at(&self) -> SystemTime {
        self.at
    }

    /// Whether the connection it happened on must not be used again.
    pub fn breaks_connection(&self) -> bool {
        self.breaks_connection
    }

    /// The database's code for it: a SQLSTATE or an SQLite result code.
    pub fn database_code(&self) -> Option<Code<'_>> {
        code_in(&*self.cause)
    }

    /// The PostgreSQL SQLSTATE (`"28P01"`, `"57P03"`, …), if the server sent one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self.database_code()? {
            Code::Sqlstate(state) => Some(state),
            Code::Sqlite(_) => None,
        }
    }

    /// The SQLite extended result code (5 = `SQLITE_BUSY`, 517 = `SQLITE_BUSY_SNAPSHOT`, …).
    pub fn sqlite_code(&self) -> Option<i32> {
        match self.database_code()? {
            Code::Sqlite(code) => Some(code),
            Code::Sqlstate(_) => None,
        }
    }

    /// What to check, for the codes users meet most.
    pub fn hint(&self) -> Option<&'static str> {
        crate::codes::hint_in(&*self.cause)
    }

    /// The first error of type `T` in the cause chain.
    pub fn find_cause<T: StdError + 'static>(&self) -> Option<&T> {
        let mut next: Option<&(dyn StdError + 'static)> = Some(&*self.cause);
        while let Some(error) = next {
            if let Some(found) = error.downcast_ref::<T>() {
                return Some(found);
            }
            next = error.source();
        }
        None
    }
}

impl fmt::Display for Failure {
    /// The error and its sources, `a: b: c`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        ErrorChain(&*self.cause).fmt(f)
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failure")
            .field("class", &self.class)
            .field("phase", &self.phase)
            .field("code", &self.database_code())
            .field("error", &ErrorChain(&*self.cause).to_string())
            .finish()
    }
}

/// Displays an error followed by its sources, `a: b: c` — what a log line or a hook wants
/// from a driver error whose own message is only "db error".
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut written = self.0.to_string();
        f.write_str(&written)?;
        let mut next = self.0.source();
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
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

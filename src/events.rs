//! What happened to one pool's connections, kept for diagnostics: the last connect failure and
//! the last error a live connection ended with.

#![cfg_attr(not(pools), allow(dead_code))]

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::time::SystemTime;
use tokio::sync::watch;

use crate::classify::Phase;
use crate::error::{ErrorChain, SharedCause};
use crate::metrics;
use crate::retry::OperationError;
use crate::{Error, ErrorClass};

/// A failure remembered for diagnostics: what, when, and its class.
#[derive(Clone)]
pub struct RecordedError {
    /// The error itself (the driver's), with its SQLSTATE or result code.
    pub error: SharedCause,
    /// Transient or permanent.
    pub class: ErrorClass,
    /// When it happened.
    pub at: SystemTime,
}

impl fmt::Debug for RecordedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedError")
            .field("error", &ErrorChain(&*self.error).to_string())
            .field("class", &self.class)
            .field("at", &self.at)
            .finish()
    }
}

impl RecordedError {
    pub(crate) fn new<E: OperationError>(error: E, phase: Phase) -> Self {
        Self::from_failure(&crate::retry::Failure::new(error, phase))
    }

    pub(crate) fn from_failure(failure: &crate::retry::Failure) -> Self {
        Self {
            error: failure.cause.clone(),
            class: failure.class,
            at: SystemTime::now(),
        }
    }

    /// The PostgreSQL SQLSTATE of the error, if the server sent one.
    #[cfg(feature = "postgres")]
    pub fn sqlstate(&self) -> Option<&str> {
        self.error
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::code)
            .map(tokio_postgres::error::SqlState::code)
    }
}

/// Per-pool record of connection events, shared by a manager and its [`Diagnostics`].
#[derive(Debug)]
pub(crate) struct PoolEvents {
    name: Arc<str>,
    connects_succeeded: AtomicU64,
    /// Set when a pooled connection is found dead; the next connect checks the database with
    /// one probe before the pool reconnects in bulk.
    connection_lost: AtomicBool,
    connects_failed_transient: AtomicU64,
    connects_failed_permanent: AtomicU64,
    last_connect_failure: Mutex<Option<RecordedError>>,
    last_connection_error: Mutex<Option<RecordedError>>,
    /// The latest error a connect gave up with, so that callers waiting elsewhere (bb8's
    /// `get()`, which never sees connect errors) can end with it.
    give_ups: watch::Sender<Option<Error>>,
}

impl PoolEvents {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: Arc::from(name),
            connects_succeeded: AtomicU64::new(0),
            connection_lost: AtomicBool::new(false),
            connects_failed_transient: AtomicU64::new(0),
            connects_failed_permanent: AtomicU64::new(0),
            last_connect_failure: Mutex::new(None),
            last_connection_error: Mutex::new(None),
            give_ups: watch::Sender::new(None),
        }
    }

    /// The pool's name, its metrics' `pool` label.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn recycle_failed(&self, why: &dyn fmt::Display) {
        self.connection_lost();
        tracing::warn!(target: "dbretry", pool = self.name(), reason = %why, "discarding a pooled connection that failed its check");
        metrics::recycle_failed(&self.name);
    }

    /// A pooled connection was found dead (closed by the server, cut by the network).
    pub(crate) fn connection_lost(&self) {
        self.connection_lost.store(true, Ordering::Relaxed);
    }

    /// Whether a connection was lost since the last call.
    pub(crate) fn take_connection_lost(&self) -> bool {
        self.connection_lost.swap(false, Ordering::Relaxed)
    }

    pub(crate) fn connect_succeeded(&self) {
        self.connects_succeeded.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connect_failed(&self, failure: RecordedError) {
        let counter = if failure.class == ErrorClass::Permanent {
            &self.connects_failed_permanent
        } else {
            &self.connects_failed_transient
        };
        counter.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_connect_failure) = Some(failure);
    }

    pub(crate) fn connect_gave_up(&self, error: &Error) {
        self.give_ups.send_replace(Some(error.clone()));
    }

    /// A live connection ended with an error (the server terminated it, the network cut it):
    /// logged and recorded, since no caller may be there to see it.
    pub(crate) fn connection_closed_with<E: OperationError>(&self, error: E) {
        let recorded = RecordedError::new(error, Phase::Operation);
        if recorded.class == ErrorClass::Transient {
            self.connection_lost();
        }
        metrics::connection_closed(&self.name, recorded.class.as_str());
        tracing::warn!(
            target: "dbretry",
            pool = self.name(),
            class = recorded.class.as_str(),
            error = %ErrorChain(&*recorded.error),
            "pooled connection closed with an error"
        );
        *lock(&self.last_connection_error) = Some(recorded);
    }

    /// Receives every later give-up (the current one counts as seen).
    #[cfg_attr(not(feature = "bb8"), allow(dead_code))]
    pub(crate) fn subscribe_give_ups(&self) -> watch::Receiver<Option<Error>> {
        self.give_ups.subscribe()
    }
}

/// A handle on one pool's connection history, for callers that cannot get it from the pool's
/// own errors — bb8's `get()` only ever says `TimedOut`. Cheap to clone; take it from the
/// manager before handing the manager to the pool.
#[derive(Clone, Debug)]
pub struct Diagnostics(pub(crate) Arc<PoolEvents>);

impl Diagnostics {
    /// The last failed connect attempt: the real error, SQLSTATE and all.
    pub fn last_connect_error(&self) -> Option<RecordedError> {
        lock(&self.0.last_connect_failure).clone()
    }

    /// The last error a pooled connection ended with while open (terminated by the server,
    /// cut by the network) — the connection task's error, which would otherwise be lost.
    pub fn last_connection_error(&self) -> Option<RecordedError> {
        lock(&self.0.last_connection_error).clone()
    }

    /// Connect attempts so far: `(succeeded, failed transient, failed permanent)`.
    pub fn connect_attempts(&self) -> ConnectAttempts {
        ConnectAttempts {
            succeeded: self.0.connects_succeeded.load(Ordering::Relaxed),
            transient: self.0.connects_failed_transient.load(Ordering::Relaxed),
            permanent: self.0.connects_failed_permanent.load(Ordering::Relaxed),
        }
    }
}

/// Connect attempts of one pool, by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ConnectAttempts {
    /// Attempts that connected.
    pub succeeded: u64,
    /// Attempts that failed with a transient error.
    pub transient: u64,
    /// Attempts that failed with a permanent error.
    pub permanent: u64,
}

impl ConnectAttempts {
    /// All attempts.
    pub fn total(&self) -> u64 {
        self.succeeded + self.transient + self.permanent
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

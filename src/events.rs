//! What happened to one pool's connections, kept for diagnostics: attempt counts, the last
//! connect failure and the last error a live connection ended with.

#![cfg_attr(not(pools), allow(dead_code))]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::classify::{ErrorClass, OperationError, Phase};
use crate::failure::{ErrorChain, Failure};
use crate::metrics;

/// Per-pool record of connection events, shared by a manager and its [`Diagnostics`].
#[derive(Debug)]
pub(crate) struct PoolEvents {
    name: Arc<str>,
    connects_succeeded: AtomicU64,
    connects_failed_transient: AtomicU64,
    connects_failed_permanent: AtomicU64,
    last_connect_failure: Mutex<Option<Failure>>,
    last_connection_error: Mutex<Option<Failure>>,
}

impl PoolEvents {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: Arc::from(name),
            connects_succeeded: AtomicU64::new(0),
            connects_failed_transient: AtomicU64::new(0),
            connects_failed_permanent: AtomicU64::new(0),
            last_connect_failure: Mutex::new(None),
            last_connection_error: Mutex::new(None),
        }
    }

    /// The pool's name, its metrics' `pool` label.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn recycle_failed(&self, why: &dyn std::fmt::Display) {
        tracing::warn!(target: "dbretry::pool", pool = self.name(), reason = %why, "discarding a pooled connection that failed its check");
        metrics::recycle_failed(&self.name);
    }

    pub(crate) fn connect_succeeded(&self) {
        self.connects_succeeded.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connect_failed(&self, failure: &Failure) {
        let counter = match failure.class() {
            ErrorClass::Permanent => &self.connects_failed_permanent,
            ErrorClass::Transient => &self.connects_failed_transient,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_connect_failure) = Some(failure.clone());
    }

    /// A live connection ended with an error (the server terminated it, the network cut it):
    /// logged and recorded, since no caller may be there to see it.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn connection_closed_with<E: OperationError>(&self, error: E) -> Failure {
        let failure = Failure::new(error, Phase::Operation);
        metrics::connection_closed(&self.name, failure.class().as_str());
        tracing::warn!(
            target: "dbretry::pool",
            pool = self.name(),
            class = failure.class().as_str(),
            error = %ErrorChain(failure.cause()),
            "pooled connection closed with an error"
        );
        *lock(&self.last_connection_error) = Some(failure.clone());
        failure
    }

    pub(crate) fn last_connect_failure(&self) -> Option<Failure> {
        lock(&self.last_connect_failure).clone()
    }
}

/// A handle on one pool's connection history, for callers that cannot get it from the pool's
/// own errors — a plain bb8 pool's `get()` only ever says `TimedOut`. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Diagnostics(pub(crate) Arc<PoolEvents>);

impl Diagnostics {
    /// The last failed connect attempt: the real error, SQLSTATE and all.
    pub fn last_connect_error(&self) -> Option<Failure> {
        self.0.last_connect_failure()
    }

    /// The last error a pooled connection ended with while open (terminated by the server,
    /// cut by the network) — the connection task's error, which would otherwise be lost.
    pub fn last_connection_error(&self) -> Option<Failure> {
        lock(&self.0.last_connection_error).clone()
    }

    /// Connect attempts so far, by outcome.
    pub fn connect_attempts(&self) -> ConnectAttempts {
        ConnectAttempts {
            succeeded: self.0.connects_succeeded.load(Ordering::Relaxed),
            transient: self.0.connects_failed_transient.load(Ordering::Relaxed),
            permanent: self.0.connects_failed_permanent.load(Ordering::Relaxed),
        }
    }

    /// The pool's name (its metrics' `pool` label).
    pub fn pool_name(&self) -> &str {
        self.0.name()
    }
}

/// Connect attempts of one pool, by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
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

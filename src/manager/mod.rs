//! One retrying pool manager for every backend and pool crate: [`RetryingManager`] wraps a
//! [`Backend`] (how to open, check and ping one kind of connection) with the pool's gate and
//! diagnostics, and implements deadpool's `Manager` and bb8's `ManageConnection` in two small
//! adapters. Every manager in this crate is one of these, built by one [`ManagerBuilder`].

#![cfg_attr(not(pools), allow(dead_code))]

pub(crate) mod backend;
#[cfg(feature = "bb8")]
pub(crate) mod bb8;
mod builder;
mod check;
#[cfg(feature = "deadpool")]
mod deadpool;
#[cfg(feature = "bb8")]
pub(crate) use self::bb8::discard;
#[cfg(feature = "deadpool")]
pub(crate) use self::deadpool::from_pool_error;

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use tokio::time::Instant;

pub use self::backend::{Backend, PoolContext};
pub use self::builder::ManagerBuilder;
pub use self::check::CheckSettings;
pub(crate) use self::check::check_within;

use crate::checkout_deadline::checkout_deadline;
use crate::circuit_breaker::CircuitBreaker;
use crate::events::{Diagnostics, PoolEvents};
use crate::gate::Gate;
use crate::{Error, Retrier, RetryPolicy};

/// What a pool's connections share: the gate (reconnect schedule and circuit breaker) and the
/// diagnostics.
#[derive(Debug)]
pub(crate) struct PoolShared {
    pub(crate) gate: Gate,
    pub(crate) events: Arc<PoolEvents>,
    pub(crate) checks: CheckSettings,
    pub(crate) silent_peers: check::SilentPeers,
    pub(crate) losses: check::Losses,
    #[cfg(feature = "bb8")]
    pub(crate) give_ups: bb8::GiveUps,
}

impl PoolShared {
    fn new(retrier: Retrier, breaker: Option<CircuitBreaker>, checks: CheckSettings) -> Self {
        let events = Arc::new(PoolEvents::new(retrier.label()));
        crate::metrics::register_pool(retrier.label());
        Self {
            gate: Gate::new(retrier, breaker),
            events,
            checks,
            silent_peers: check::SilentPeers::default(),
            losses: check::Losses::default(),
            #[cfg(feature = "bb8")]
            give_ups: bb8::GiveUps::default(),
        }
    }

    /// A pooled connection is dead: recorded, and the next connect checks the database first.
    pub(crate) fn connection_lost(&self, last_alive: Instant) {
        self.losses.saw_one();
        self.gate.connection_lost(last_alive);
    }

    /// The bound on one check begun `now`: the check timeout, the attempt timeout, and what
    /// is left before `deadline` (by default, that of the checkout it runs for), whichever is
    /// shortest.
    pub(crate) fn check_bound(
        &self,
        now: Instant,
        deadline: Option<Instant>,
    ) -> std::time::Duration {
        let bound = self.checks.timeout.min(self.gate.attempt_timeout());
        match deadline.or_else(checkout_deadline) {
            Some(deadline) => bound.min(deadline.saturating_duration_since(now)),
            None => bound,
        }
    }

    /// Runs the check `make_check` makes of a pooled connection last alive at `last_alive`,
    /// begun `now`, within [`check_bound`](Self::check_bound); a connection that fails it is
    /// reported lost, and one that does not answer marks its idle peers suspect.
    pub(crate) async fn check<E: crate::OperationError, F: Future<Output = Result<(), E>>>(
        &self,
        now: Instant,
        last_alive: Option<Instant>,
        deadline: Option<Instant>,
        make_check: impl FnOnce() -> F,
    ) -> Result<(), Error> {
        let checked = check_within(now, self.check_bound(now, deadline), make_check).await;
        if let Err(error) = &checked {
            self.events.recycle_failed(error);
            if check::went_unanswered(error) {
                self.silent_peers.saw_one();
            }
            self.connection_lost(last_alive.unwrap_or(now));
        }
        checked
    }
}

impl PoolShared {
    /// The error of a checkout that began at `started` and ran out of time: the database's
    /// last answer if a connect failed meanwhile (or the pool knows it is down), else "pool
    /// exhausted".
    pub(crate) fn checkout_timed_out(&self, started: Instant, pool: crate::PoolState) -> Error {
        let waited = started.elapsed();
        let began = std::time::SystemTime::now()
            .checked_sub(waited)
            .unwrap_or(std::time::UNIX_EPOCH);
        let last = self.events.last_connect_failure();
        let failed_meanwhile = last.as_ref().is_some_and(|f| f.at() >= began);
        let label = self.events.name();
        if failed_meanwhile || !self.gate.is_up() {
            crate::metrics::checkout_timeout(label, crate::metrics::CheckoutTimeoutCause::Database);
            Error::new(crate::ErrorKind::Timeout, 0, waited, last)
        } else {
            crate::metrics::checkout_timeout(
                label,
                crate::metrics::CheckoutTimeoutCause::PoolExhausted,
            );
            Error::pool_exhausted(waited, pool)
        }
    }
}

/// A dbretry manager — any [`RetryingManager`] — that the pool wrappers
/// ([`dbretry::bb8::Pool`](crate), [`dbretry::deadpool::Pool`](crate)) can wrap. Sealed.
#[cfg(any(feature = "deadpool", feature = "bb8"))]
pub trait PoolManager: sealed::HasContext {}

#[cfg(any(feature = "deadpool", feature = "bb8"))]
impl<B> PoolManager for RetryingManager<B> {}

#[cfg(any(feature = "deadpool", feature = "bb8"))]
pub(crate) mod sealed {
    use super::{PoolContext, RetryingManager};

    pub trait HasContext {
        fn context(&self) -> &PoolContext;
    }

    impl<B> HasContext for RetryingManager<B> {
        fn context(&self) -> &PoolContext {
            &self.shared
        }
    }
}

/// A pool manager that retries transient connect failures under a [`RetryPolicy`], with one
/// shared reconnect effort per pool and an optional circuit breaker, for the backend `B`.
///
/// Use it through the pool modules' names — `deadpool_postgres::Manager`,
/// `bb8_postgres::PostgresConnectionManager`, `deadpool_sqlite::Manager`,
/// `bb8_sqlite::SqliteConnectionManager` — which are this type for their backend. It derefs to
/// the backend, so backend settings (deadpool-postgres's `statement_caches`, say) are reached
/// as before.
pub struct RetryingManager<B> {
    backend: B,
    shared: PoolContext,
    settings: builder::Settings,
}

impl<B> RetryingManager<B> {
    /// What this manager's pool went through: the last connect error, the last error a live
    /// connection ended with, attempt counts.
    pub fn diagnostics(&self) -> Diagnostics {
        Diagnostics(self.shared.0.events.clone())
    }

    /// The pool's name (its metrics' `pool` label).
    pub fn name(&self) -> &str {
        self.shared.0.gate.retrier().label()
    }

    /// The retry policy connects follow (with the attempt timeout pools always have).
    pub fn policy(&self) -> &RetryPolicy {
        self.shared.0.gate.retrier().policy()
    }

    #[cfg_attr(not(feature = "deadpool"), allow(dead_code))]
    pub(crate) fn pool_shared(&self) -> &PoolShared {
        &self.shared.0
    }

    /// The backend: how connections are opened and checked.
    pub fn backend(&self) -> &B {
        &self.backend
    }
}

impl<B: Backend> RetryingManager<B> {
    /// Opens one connection through the pool's gate.
    pub(crate) async fn open(&self) -> Result<B::Connection, Error> {
        let pool = &self.shared.0;
        let connection = pool
            .gate
            .connect(&pool.events, || self.backend.connect(&self.shared))
            .await?;
        self.backend.created(&connection);
        Ok(connection)
    }

    /// The round trip that proves a connection works, within the check bound.
    #[cfg_attr(not(feature = "deadpool"), allow(dead_code))]
    pub(crate) async fn ping(&self, connection: &mut B::Connection) -> Result<(), Error> {
        let now = Instant::now();
        check_within(now, self.shared.0.check_bound(now, None), || {
            B::ping(connection)
        })
        .await
    }
}

impl<B> Deref for RetryingManager<B> {
    type Target = B;

    fn deref(&self) -> &B {
        &self.backend
    }
}

impl<B: Clone> Clone for RetryingManager<B> {
    /// The same settings for an independent pool: a fresh gate and fresh diagnostics.
    fn clone(&self) -> Self {
        ManagerBuilder::with_settings(self.backend.clone(), self.settings.clone()).build()
    }
}

impl<B: fmt::Debug> fmt::Debug for RetryingManager<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryingManager")
            .field("name", &self.name())
            .field("backend", &self.backend)
            .field("policy", self.policy())
            .field("circuit_breaker", &self.settings.circuit_breaker)
            .finish()
    }
}

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

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use tokio::time::Instant;

pub use self::backend::{Backend, PoolContext};
pub use self::builder::ManagerBuilder;
pub(crate) use self::check::check_within;

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
    #[cfg(feature = "bb8")]
    pub(crate) give_ups: bb8::GiveUps,
}

impl PoolShared {
    fn new(retrier: Retrier, breaker: Option<CircuitBreaker>) -> Self {
        let events = Arc::new(PoolEvents::new(retrier.label()));
        crate::metrics::register_pool(retrier.label());
        Self {
            gate: Gate::new(retrier, breaker),
            events,
            #[cfg(feature = "bb8")]
            give_ups: bb8::GiveUps::default(),
        }
    }

    /// A pooled connection is dead: recorded, and the next connect checks the database first.
    pub(crate) fn connection_lost(&self, last_alive: Instant) {
        self.gate.connection_lost(last_alive);
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

    /// The backend: how connections are opened and checked.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub(crate) fn shared(&self) -> &PoolContext {
        &self.shared
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

    /// The round trip that proves a connection works, bounded by the attempt timeout.
    pub(crate) async fn ping(&self, connection: &mut B::Connection) -> Result<(), Error> {
        let bound = self.shared.0.gate.attempt_timeout();
        check_within(bound, B::ping(connection)).await
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

//! deadpool with one budget per `get()`.
//!
//! A plain deadpool pool bounds a checkout in parts: the wait for a free slot by its
//! `Timeouts.wait`, a connection's create by the manager's policy (`max_elapsed`), a recycle
//! check by the check bound — so during an outage one `get()` can take the wait *plus* the
//! create, and a caller timed out in the queue gets deadpool's bare `Timeout(Wait)`. That is
//! how the drop-in types (`dbretry::deadpool_postgres::Pool`, …) behave, unchanged.
//!
//! [`Pool`] wraps such a pool and gives each [`Pool::get`] one budget — the policy's
//! `max_elapsed` — for the queue, the create and the check together, and an error that says
//! what happened: the database's last answer when it failed meanwhile, or
//! [`ErrorKind::PoolExhausted`](crate::ErrorKind::PoolExhausted) with how full the pool was
//! when the database answered but no connection became free. Everything else is deadpool's
//! own pool, through `Deref`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use dbretry::RetryPolicy;
//! use dbretry::deadpool_postgres::Manager;
//!
//! let policy = RetryPolicy::builder()
//!     .max_attempts(u32::MAX)
//!     .max_delay(Duration::from_millis(250))
//!     .max_elapsed(Duration::from_secs(5)) // the budget of every get()
//!     .build()?;
//! let manager = Manager::builder("postgres://app@db/app".parse()?, tokio_postgres::NoTls)
//!     .policy(policy)
//!     .build();
//! let pool = dbretry::deadpool::Pool::new(
//!     dbretry::deadpool_postgres::Pool::builder(manager).max_size(16).build()?,
//! );
//! let client = pool.get().await?; // at most 5 s, whatever it waits for
//! client.simple_query("SELECT 1").await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use deadpool::managed::{self, Object, PoolError};
use tokio::time::Instant;

use crate::checkout_deadline::CHECKOUT_DEADLINE;
use crate::manager::{PoolManager, PoolShared};
use crate::{Error, PoolState};

/// A deadpool pool of a dbretry manager whose `get()` has one budget; see the
/// [module docs](self).
pub struct Pool<M: managed::Manager + PoolManager> {
    inner: managed::Pool<M>,
    shared: Arc<PoolShared>,
    budget: Option<Duration>,
}

impl<M: managed::Manager<Error = Error> + PoolManager> Pool<M> {
    /// Wraps `inner`; each `get()`'s budget is the manager's `max_elapsed` (none if the policy
    /// sets none: then only deadpool's own timeouts bound it).
    pub fn new(inner: managed::Pool<M>) -> Self {
        let shared = inner.manager().context().0.clone();
        let budget = shared.gate.retrier().policy().max_elapsed();
        crate::metrics::pool_max_size(shared.events.name(), inner.status().max_size);
        Self {
            inner,
            shared,
            budget,
        }
    }

    /// Takes a connection within the budget: the wait for a free slot, a create (retried
    /// under the policy) and a recycle check together.
    ///
    /// # Errors
    /// The create's own error (a permanent one at once, with its SQLSTATE);
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) with the database's last answer, or
    /// [`ErrorKind::PoolExhausted`](crate::ErrorKind::PoolExhausted) when the database
    /// answered but every connection stayed in use.
    pub async fn get(&self) -> Result<Object<M>, Error> {
        let Some(budget) = self.budget else {
            return self.inner.get().await.map_err(|e| self.pool_error(e, None));
        };
        let started = Instant::now();
        let deadline = crate::time::later(started, budget);
        let checkout = CHECKOUT_DEADLINE.scope(deadline, self.inner.get());
        let span = crate::checkout_deadline::checkout_span(self.shared.events.name());
        match tokio::time::timeout_at(deadline, checkout)
            .instrument(span)
            .await
        {
            Ok(checked_out) => checked_out.map_err(|e| self.pool_error(e, Some(started))),
            Err(_) => Err(self.timed_out(started)),
        }
    }

    /// The underlying deadpool pool.
    pub fn inner(&self) -> &managed::Pool<M> {
        &self.inner
    }

    fn pool_error(&self, error: PoolError<Error>, started: Option<Instant>) -> Error {
        match (error, started) {
            (PoolError::Backend(error), _) => error,
            (PoolError::Timeout(_), Some(started)) => self.timed_out(started),
            (other, _) => crate::manager::from_pool_error(other, &self.shared),
        }
    }

    fn timed_out(&self, started: Instant) -> Error {
        let status = self.inner.status();
        let pool = PoolState {
            in_use: status.size.saturating_sub(status.available),
            max_size: status.max_size,
            waiting: status.waiting,
        };
        self.shared.checkout_timed_out(started, pool)
    }
}

impl<M: managed::Manager + PoolManager> Deref for Pool<M> {
    type Target = managed::Pool<M>;

    fn deref(&self) -> &managed::Pool<M> {
        &self.inner
    }
}

impl<M: managed::Manager + PoolManager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            budget: self.budget,
        }
    }
}

impl<M: managed::Manager + PoolManager> fmt::Debug for Pool<M>
where
    M::Type: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("status", &self.inner.status())
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

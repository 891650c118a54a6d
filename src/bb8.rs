//! bb8 without stacked retry loops and with real errors.
//!
//! bb8 0.9 retries failed connects itself (`retry_connection`, on by default: 200 ms doubling,
//! no jitter, any error, until `connection_timeout`), and its `get()` only ever returns
//! `TimedOut` — the connect error goes to the error sink. With a dbretry manager, which
//! already retries under its policy, that is two retry loops and a hidden cause. [`Pool`]
//! fixes both:
//!
//! * [`Pool::new`] turns bb8's own retry off (`retry_connection(false)`) and, when the policy
//!   sets `max_elapsed`, makes it the pool's `connection_timeout`, so the manager's budget and
//!   the pool's agree;
//! * [`Pool::get`] returns [`dbretry::Error`](crate::Error): a permanent connect error (wrong
//!   password, no such database) at once, with its SQLSTATE, and on time-out the last real
//!   connect error instead of a bare `TimedOut`;
//! * callers are served first come, first served: bb8 wakes waiters unfairly, which after an
//!   outage leaves some callers waiting seconds while others are served again and again.
//!
//! Everything else is bb8's own pool, reachable through `Deref`. If you keep a plain
//! `bb8::Pool` instead (call sites unchanged, `TimedOut` errors), set `retry_connection(false)`
//! yourself and read the cause from the manager's [`Diagnostics`].

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use bb8::{ManageConnection, RunError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::ErrorKind;
use crate::{Diagnostics, Error, RetryPolicy};

/// A dbretry manager for bb8: one whose errors are [`dbretry::Error`](crate::Error) and whose
/// connection history can be read.
pub trait RetryingManager: ManageConnection<Error = Error> {
    /// The manager's connection history.
    fn diagnostics(&self) -> Diagnostics;

    /// The manager's retry policy.
    fn policy(&self) -> &RetryPolicy;
}

/// A bb8 pool of a dbretry manager whose `get()` reports real errors; see the
/// [module docs](self).
pub struct Pool<M: RetryingManager> {
    inner: bb8::Pool<M>,
    diagnostics: Diagnostics,
    /// Admits at most `max_size` callers into bb8 at a time, first come first served: bb8's
    /// own wake-ups are unfair under contention, so after an outage some callers would wait
    /// seconds while others are served again and again.
    turns: Arc<Semaphore>,
}

/// A connection checked out of a [`Pool`]; derefs to the manager's connection and returns it
/// to the pool when dropped.
pub struct PooledConnection<'a, M: ManageConnection> {
    connection: bb8::PooledConnection<'a, M>,
    _turn: OwnedSemaphorePermit,
}

impl<M: ManageConnection> Deref for PooledConnection<'_, M> {
    type Target = M::Connection;

    fn deref(&self) -> &M::Connection {
        &self.connection
    }
}

impl<M: ManageConnection> DerefMut for PooledConnection<'_, M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        &mut self.connection
    }
}

impl<M: ManageConnection> fmt::Debug for PooledConnection<'_, M>
where
    M::Connection: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PooledConnection")
            .field(&*self.connection)
            .finish()
    }
}

impl<M: RetryingManager> Pool<M> {
    /// Builds the pool from a bb8 builder (your `max_size`, `min_idle`, … kept), with bb8's own
    /// connect retry off and, when the policy sets `max_elapsed`, that as `connection_timeout`.
    ///
    /// # Errors
    /// As `bb8::Builder::build`: the first connect error when `min_idle` connections cannot
    /// be opened.
    pub async fn new(builder: bb8::Builder<M>, manager: M) -> Result<Self, Error> {
        let diagnostics = manager.diagnostics();
        let mut builder = builder.retry_connection(false);
        if let Some(budget) = manager.policy().max_elapsed() {
            builder = builder.connection_timeout(budget);
        }
        let inner = builder.build(manager).await?;
        Ok(Self {
            turns: Arc::new(Semaphore::new(inner.config().max_size as usize)),
            inner,
            diagnostics,
        })
    }

    /// Like `bb8::Pool::get`, with real errors and one deadline (the pool's
    /// `connection_timeout`, counted from the call): a permanent connect error (or an open
    /// circuit) ends the wait at once with that error, as does a connect made for this wait
    /// that spent its budget; a time-out carries the last connect error as its cause.
    ///
    /// # Errors
    /// [`ErrorKind::Connection`] with the SQLSTATE for a permanent failure,
    /// [`ErrorKind::RetryExhausted`] or [`ErrorKind::Timeout`] with the last cause otherwise.
    pub async fn get(&self) -> Result<PooledConnection<'_, M>, Error> {
        let start = Instant::now();
        let deadline = start + self.inner.config().connection_timeout;
        let mut give_ups = self.diagnostics.0.subscribe_give_ups();
        let checkout = async {
            let turn =
                match tokio::time::timeout_at(deadline, self.turns.clone().acquire_owned()).await {
                    Ok(Ok(turn)) => turn,
                    _ => return Err(self.timed_out(start)),
                };
            // bb8's own `connection_timeout` would start over here, after the wait for a turn.
            match tokio::time::timeout_at(deadline, self.inner.get()).await {
                Ok(Ok(connection)) => Ok(PooledConnection {
                    connection,
                    _turn: turn,
                }),
                Ok(Err(RunError::User(error))) => Err(error),
                Ok(Err(RunError::TimedOut)) | Err(_) => Err(self.timed_out(start)),
            }
        };
        let gave_up = async {
            loop {
                if give_ups.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                let gave_up = give_ups.borrow_and_update().clone();
                if let Some(error) = gave_up.filter(|error| ends_wait_begun_at(error, start)) {
                    return error;
                }
            }
        };
        tokio::select! {
            result = checkout => result,
            error = gave_up => Err(error),
        }
    }

    /// The underlying bb8 pool.
    pub fn inner(&self) -> &bb8::Pool<M> {
        &self.inner
    }

    /// The manager's connection history.
    pub fn diagnostics(&self) -> &Diagnostics {
        &self.diagnostics
    }

    fn timed_out(&self, start: Instant) -> Error {
        let last = self.diagnostics.last_connect_error();
        Error::new(
            ErrorKind::Timeout,
            0,
            start.elapsed(),
            last.as_ref().map(|e| e.class),
            last.map(|e| e.error),
        )
    }
}

/// Whether a connect's give-up ends a `get()` that began at `start`: a permanent error or an
/// open circuit would end any connect; a spent budget only one that began after `start` — a
/// connect left running by an earlier, abandoned `get()` was spending an older budget.
fn ends_wait_begun_at(error: &Error, start: Instant) -> bool {
    match error.kind() {
        ErrorKind::Timeout | ErrorKind::RetryExhausted => error.elapsed() <= start.elapsed(),
        _ => true,
    }
}

impl<M: RetryingManager> Deref for Pool<M> {
    type Target = bb8::Pool<M>;

    fn deref(&self) -> &bb8::Pool<M> {
        &self.inner
    }
}

impl<M: RetryingManager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            diagnostics: self.diagnostics.clone(),
            turns: self.turns.clone(),
        }
    }
}

impl<M: RetryingManager> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("inner", &self.inner).finish()
    }
}

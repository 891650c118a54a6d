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
//!   password, no such database) made for this caller at once, with its SQLSTATE, and on
//!   time-out the last real connect error instead of a bare `TimedOut`;
//! * callers that have to wait are served first come, first served: bb8 wakes waiters
//!   unfairly, which after an outage leaves some callers waiting seconds while others are
//!   served again and again. A caller that finds an idle connection while nobody waits takes
//!   it at once, at the cost of a plain bb8 checkout;
//! * the check on checkout (`test_on_check_out`, bb8's default) is made by [`Pool::get`]
//!   rather than inside bb8: bounded by the check timeout and the caller's budget, and a
//!   connection that fails it is closed and the next one tried, as bb8 would. The inner pool
//!   is built with `test_on_check_out(false)`, so `inner().get()` skips the check.
//!
//! Everything else is bb8's own pool, reachable through `Deref`. If you keep a plain
//! `bb8::Pool` instead (call sites unchanged, `TimedOut` errors), set `retry_connection(false)`
//! yourself and read the cause from the manager's [`Diagnostics`].

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tracing::Instrument;

use bb8::{ManageConnection, RunError};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::checkout_deadline::CHECKOUT_DEADLINE;
use crate::health::{HealthTarget, PingFuture, PoolOccupancy};
use crate::manager::bb8::Ended;
use crate::manager::{Backend, PoolShared, RetryingManager};
use crate::{Diagnostics, Error, PoolState};

pub use crate::manager::PoolManager;

/// A bb8 pool of a dbretry manager whose `get()` reports real errors; see the
/// [module docs](self).
pub struct Pool<M: PoolManager + ManageConnection> {
    inner: bb8::Pool<M>,
    shared: Arc<PoolShared>,
    budget: Duration,
    turns_total: usize,
    test_on_check_out: bool,
    /// Callers in the slow path; while there are any, newcomers queue behind them.
    waiting: Arc<AtomicUsize>,
    /// Admits at most `max_size` waiting callers into bb8 at a time, first come first served.
    turns: Arc<Semaphore>,
}

/// A connection checked out of a [`Pool`]: bb8's own, which derefs to the manager's
/// connection and returns it to the pool when dropped.
pub type PooledConnection<'a, M> = bb8::PooledConnection<'a, M>;

impl<B: Backend> Pool<RetryingManager<B>> {
    /// Builds the pool from a bb8 builder (your `max_size`, `min_idle`, … kept), with bb8's own
    /// connect retry off and, when the policy sets `max_elapsed`, that as `connection_timeout`.
    ///
    /// # Errors
    /// As `bb8::Builder::build`: the first connect error when `min_idle` connections cannot
    /// be opened.
    pub async fn new(
        builder: bb8::Builder<RetryingManager<B>>,
        manager: RetryingManager<B>,
    ) -> Result<Self, Error> {
        let shared = crate::manager::sealed::HasContext::context(&manager)
            .0
            .clone();
        // The check on checkout is made here (`get`), where it is bounded by the caller's
        // budget (measured: 1.17x the instructions of a checkout with bb8's own check).
        let test_on_check_out = settings_of(&builder, bb8::Pool::config).test_on_check_out;
        let mut builder = builder.retry_connection(false).test_on_check_out(false);
        if let Some(budget) = shared.gate.retrier().policy().max_elapsed() {
            builder = builder.connection_timeout(budget);
        }
        let inner = builder.build(manager).await?;
        let config = inner.config();
        crate::metrics::pool_max_size(shared.events.name(), config.max_size as usize);
        Ok(Self {
            turns: Arc::new(Semaphore::new(config.max_size as usize)),
            budget: config.connection_timeout,
            turns_total: config.max_size as usize,
            test_on_check_out,
            waiting: Arc::default(),
            inner,
            shared,
        })
    }

    /// Like `bb8::Pool::get`, with real errors and one deadline (the pool's
    /// `connection_timeout`, counted from the call): a permanent connect error (or an open
    /// circuit) from a connect made for this wait ends it at once with that error; a time-out
    /// carries the last connect error as its cause.
    ///
    /// # Errors
    /// [`ErrorKind::Connection`](crate::ErrorKind::Connection) with the SQLSTATE for a permanent failure,
    /// [`ErrorKind::CircuitOpen`](crate::ErrorKind::CircuitOpen), or [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) with the last cause.
    pub fn get(
        &self,
    ) -> impl Future<Output = Result<PooledConnection<'_, RetryingManager<B>>, Error>> + Send + '_
    {
        Get {
            pool: self,
            state: GetState::Start,
        }
    }

    /// The waiting path of a `get()` that `began`, boxed: its state is large, and unboxed it
    /// would make every `get()` future large — a copy of it on every checkout, fast path
    /// included. `late` as for [`get_waiting`](Self::get_waiting).
    fn wait_in_turn(&self, began: Began, late: bool) -> WaitInTurn<'_, B> {
        Box::pin(self.get_waiting(began, late).instrument(self.span()))
    }

    /// How a `get()` goes on after its first try: with the check of a connection `taken` at
    /// once, or without one with the wait in turn.
    #[inline(never)]
    fn slow_start<'a>(
        &'a self,
        taken: Option<PooledConnection<'a, RetryingManager<B>>>,
        first_connect: u64,
    ) -> GetState<'a, B> {
        let began = Began {
            at: Instant::now(),
            first_connect,
        };
        match taken {
            Some(connection) => {
                let deadline = crate::time::later(began.at, self.budget);
                let check = self.checked(connection, began.at, deadline);
                GetState::Checking(began, Box::pin(check))
            }
            None => GetState::Waiting(self.wait_in_turn(began, false)),
        }
    }

    fn span(&self) -> tracing::Span {
        crate::checkout_deadline::checkout_span(self.shared.events.name())
    }

    /// `connection` if it passes the check bb8 would make (`test_on_check_out`), begun `now`
    /// and ended by the `get()`'s `deadline`; else it is closed.
    async fn checked<'a>(
        &self,
        mut connection: PooledConnection<'a, RetryingManager<B>>,
        now: Instant,
        deadline: Instant,
    ) -> Option<PooledConnection<'a, RetryingManager<B>>> {
        let pinged: &mut B::Connection = &mut connection;
        let checked = self
            .shared
            .check(now, None, Some(deadline), || B::ping(pinged));
        match checked.await {
            Ok(()) => Some(connection),
            Err(_) => {
                crate::manager::discard(connection);
                None
            }
        }
    }

    /// The waiting path of a `get()` that `began`; `late`: time has passed since (a
    /// failed check), so bb8's own `connection_timeout` would end past the deadline.
    async fn get_waiting(
        &self,
        began: Began,
        late: bool,
    ) -> Result<PooledConnection<'_, RetryingManager<B>>, Error> {
        let start = began.at;
        let deadline = crate::time::later(start, self.budget);
        let mut give_ups = self.shared.give_ups.mark(began.first_connect);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = LeaveOnDrop(&self.waiting);
        // The turn orders the waiting only: it is given back once this caller has its
        // connection.
        let (_turn, mut late) = match self.turns.try_acquire() {
            Ok(turn) => (turn, late),
            Err(_) => match tokio::time::timeout_at(deadline, self.turns.acquire()).await {
                Ok(Ok(turn)) => (turn, true),
                _ => return Err(self.timed_out(start)),
            },
        };
        loop {
            let checkout = CHECKOUT_DEADLINE.scope(deadline, async {
                if late {
                    // bb8's own `connection_timeout` starts over at each `get`.
                    tokio::time::timeout_at(deadline, self.inner.get())
                        .await
                        .unwrap_or(Err(RunError::TimedOut))
                } else {
                    // bb8's `connection_timeout` is the budget, begun just now: one timer.
                    self.inner.get().await
                }
            });
            let connection = tokio::select! {
                biased;
                checked_out = checkout => match checked_out {
                    Ok(connection) => connection,
                    Err(RunError::User(error)) => return Err(error),
                    Err(RunError::TimedOut) => return Err(self.timed_out(start)),
                },
                ended = self.shared.give_ups.next(&mut give_ups) => match ended {
                    Ended::Mine(error) => return Err(error),
                    // bb8 starts a connect for this caller if none is under way.
                    Ended::Other => {
                        late = true;
                        continue;
                    }
                },
                // bb8 frees a failed connect's slot after the give-up is published and wakes
                // no waiter for it: asked again, it starts a connect for this caller if none
                // is under way.
                () = tokio::time::sleep(ASK_AGAIN) => {
                    late = true;
                    continue;
                }
            };
            if !self.test_on_check_out {
                return Ok(connection);
            }
            if let Some(connection) = self.checked(connection, Instant::now(), deadline).await {
                return Ok(connection);
            }
            if Instant::now() >= deadline {
                return Err(self.timed_out(start));
            }
            late = true;
        }
    }

    /// The underlying bb8 pool.
    pub fn inner(&self) -> &bb8::Pool<RetryingManager<B>> {
        &self.inner
    }

    /// The manager's connection history.
    pub fn diagnostics(&self) -> Diagnostics {
        Diagnostics(self.shared.events.clone())
    }

    fn timed_out(&self, start: Instant) -> Error {
        let state = self.inner.state();
        let pool = PoolState {
            in_use: (state.connections - state.idle_connections) as usize,
            max_size: self.turns_total,
            waiting: self.waiting.load(Ordering::Relaxed).saturating_sub(1),
        };
        self.shared.checkout_timed_out(start, pool)
    }
}

/// How often a waiting caller asks bb8 again, so that a slot bb8 freed without waking
/// anyone (a failed connect) gets it a connect within this long.
const ASK_AGAIN: Duration = Duration::from_millis(100);

/// [`Pool::wait_in_turn`]'s future.
type WaitInTurn<'a, B> = Pin<
    Box<dyn Future<Output = Result<PooledConnection<'a, RetryingManager<B>>, Error>> + Send + 'a>,
>;

/// [`Pool::checked`]'s future, boxed (its size is mostly the ping's and the connection's).
type Checking<'a, B> =
    Pin<Box<dyn Future<Output = Option<PooledConnection<'a, RetryingManager<B>>>> + Send + 'a>>;

/// [`Pool::get`]'s future, small so that it is cheap to move. Its first poll takes an idle
/// connection from bb8 if one is there and nobody waits: bb8's `get()` polled once on this
/// poll's stack and its result returned from here, so that neither bb8's future nor the
/// connection is copied through futures of ours (each copy of a pooled connection is a
/// `memcpy`).
struct Get<'a, B: Backend> {
    pool: &'a Pool<RetryingManager<B>>,
    state: GetState<'a, B>,
}

/// When a `get()` began, and its first connect's number
/// ([`GiveUps::first_connect`](crate::manager::bb8::GiveUps::first_connect), read before its
/// first poll of bb8): give-ups of connects from there on are its own.
#[derive(Clone, Copy)]
struct Began {
    at: Instant,
    first_connect: u64,
}

/// Where a [`Get`] is.
enum GetState<'a, B: Backend> {
    /// Not polled yet.
    Start,
    /// A connection taken at once is being checked (the pool tests on checkout).
    Checking(Began, Checking<'a, B>),
    /// No connection at once, or the one taken failed its check: waiting in turn.
    Waiting(WaitInTurn<'a, B>),
}

impl<'a, B: Backend> Future for Get<'a, B> {
    type Output = Result<PooledConnection<'a, RetryingManager<B>>, Error>;

    /// Inlined into the caller, as bb8's own `get()` is: out of line, bb8's `get()` is not
    /// inlined into it either, and a checkout costs ~50 instructions more (the checkout
    /// bench, before the give-up mark was added: 1,568 against 1,517).
    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let GetState::Start = self.state {
            let pool = self.pool;
            // Before bb8 can start a connect for this `get()`: that connect's give-up is its own.
            let first_connect = pool.shared.give_ups.first_connect();
            let mut taken = None;
            if pool.waiting.load(Ordering::Relaxed) == 0
                && let Poll::Ready(Ok(connection)) = pin!(pool.inner.get()).poll(cx)
            {
                if !pool.test_on_check_out {
                    return Poll::Ready(Ok(connection));
                }
                taken = Some(connection);
            }
            self.state = pool.slow_start(taken, first_connect);
        }
        self.poll_slow(cx)
    }
}

impl<'a, B: Backend> Get<'a, B> {
    /// Everything but the first poll's fast path: the wait in turn begun, the check or the
    /// wait polled.
    #[inline(never)]
    fn poll_slow(&mut self, cx: &mut Context<'_>) -> Poll<<Self as Future>::Output> {
        loop {
            match &mut self.state {
                GetState::Start => {
                    let first_connect = self.pool.shared.give_ups.first_connect();
                    self.state = self.pool.slow_start(None, first_connect);
                }
                GetState::Checking(began, checking) => {
                    if let Some(connection) = ready!(checking.as_mut().poll(cx)) {
                        return Poll::Ready(Ok(connection));
                    }
                    self.state = GetState::Waiting(self.pool.wait_in_turn(*began, true));
                }
                GetState::Waiting(waiting) => return waiting.as_mut().poll(cx),
            }
        }
    }
}

/// bb8's settings in `builder`, as `bb8::Pool::config` would report them (bb8 does not export
/// the type by name; `config` names it).
fn settings_of<M: ManageConnection, C>(
    builder: &bb8::Builder<M>,
    _config: fn(&bb8::Pool<M>) -> C,
) -> C
where
    C: for<'b> From<&'b bb8::Builder<M>>,
{
    C::from(builder)
}

struct LeaveOnDrop<'a>(&'a AtomicUsize);

impl Drop for LeaveOnDrop<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<M: PoolManager + ManageConnection> Deref for Pool<M> {
    type Target = bb8::Pool<M>;

    fn deref(&self) -> &bb8::Pool<M> {
        &self.inner
    }
}

impl<M: PoolManager + ManageConnection> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            budget: self.budget,
            turns_total: self.turns_total,
            test_on_check_out: self.test_on_check_out,
            waiting: self.waiting.clone(),
            turns: self.turns.clone(),
        }
    }
}

impl<M: PoolManager + ManageConnection> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("inner", &self.inner).finish()
    }
}

impl<B: Backend> HealthTarget for Pool<RetryingManager<B>> {
    fn ping(&self) -> PingFuture<'_> {
        Box::pin(async move {
            let mut connection = self.get().await?;
            let now = Instant::now();
            let bound = self.shared.check_bound(now, None);
            crate::manager::check_within(now, bound, || B::ping(&mut connection)).await
        })
    }

    fn occupancy(&self) -> Option<PoolOccupancy> {
        let state = self.inner.state();
        Some(PoolOccupancy {
            size: state.connections as usize,
            idle: state.idle_connections as usize,
            waiters: self.waiting.load(Ordering::Relaxed),
            max_size: self.inner.config().max_size as usize,
        })
    }

    fn diagnostics(&self) -> Option<Diagnostics> {
        Some(Pool::diagnostics(self))
    }

    fn pool_name(&self) -> &str {
        self.shared.events.name()
    }
}

#[cfg(test)]
mod tests;

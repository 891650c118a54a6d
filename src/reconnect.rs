//! One reconnect effort per pool: while the database is down, every caller that needs a new
//! connection waits on the same backoff schedule and one probe at a time, instead of each
//! hammering the server with its own retry loop.
//!
//! While the last connect succeeded ("up"), creates run concurrently, as in any pool. The
//! first transient failure marks the pool "down" and starts the pool's schedule. From then on
//! callers queue on the probe lock: the holder waits for the next probe time and makes the one
//! connect attempt; the others, when they get the lock, see that a probe happened (the
//! generation moved), count it as an attempt of theirs, and either connect at once (it
//! succeeded), give up with the same cause (it failed permanently), or queue again. Every
//! caller keeps its own budget (`max_attempts`, `max_elapsed`) and gives up on it with the
//! last real cause.
//!
//! Cancellation: the lock guard is the only thing a probe holds, so dropping a waiting or
//! probing caller releases it and the next caller in the queue takes over the schedule.

#![cfg_attr(not(pools), allow(dead_code))]

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::SmallRng;
use tokio::time::Instant;

use crate::circuit::{Admission, Circuit, CircuitBreaker};
use crate::error::ErrorKind;
use crate::events::{Diagnostics, PoolEvents, RecordedError};
use crate::policy::Schedule;
use crate::retry::{Attempt, Failure, OperationError, Retrier, Run};
use crate::{Error, ErrorClass, Phase};

/// The bound on one connect attempt when the policy sets none: a server that accepts TCP but
/// never answers must not hang a pool's `get()` forever.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes one connection, once: the backend-specific part of a pool manager.
pub(crate) trait ConnectOnce: Send + Sync + 'static {
    type Connection: Send;
    type Error: OperationError;

    fn connect_once(&self) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send;
}

/// Why the pool is checking the database before reconnecting.
#[derive(Debug, thiserror::Error)]
#[error("a pooled connection was lost; checking that the database answers before reconnecting")]
struct ConnectionLost;

impl crate::Classify for ConnectionLost {
    fn classify(&self, _phase: Phase) -> ErrorClass {
        ErrorClass::Transient
    }
}

/// Connects through the shared reconnect, under a retry policy.
#[derive(Debug)]
pub(crate) struct Reconnector {
    retrier: Retrier,
    circuit: Circuit,
    events: Arc<PoolEvents>,
    state: Mutex<GateState>,
    probe: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct GateState {
    down: bool,
    generation: u64,
    next_probe_at: Instant,
    schedule: Schedule<SmallRng>,
    /// The last failure and the generation it produced (equal to `generation` while it is the
    /// latest news).
    last_failure: Option<(u64, Failure)>,
}

impl GateState {
    /// The failure that is the latest news, if the latest news is a failure.
    fn current_failure(&self) -> Option<Failure> {
        self.last_failure
            .as_ref()
            .filter(|(generation, _)| *generation == self.generation)
            .map(|(_, failure)| failure.clone())
    }
}

impl Reconnector {
    /// A reconnector connecting under `retrier`'s policy. Each attempt is bounded by the
    /// policy's `attempt_timeout`, or by [`DEFAULT_ATTEMPT_TIMEOUT`] if it sets none.
    pub(crate) fn new(retrier: Retrier, breaker: Option<CircuitBreaker>) -> Self {
        let events = Arc::new(PoolEvents::new(retrier.label()));
        let circuit = Circuit::new(breaker, retrier.label());
        let mut policy = retrier.policy().clone();
        policy
            .attempt_timeout
            .get_or_insert(DEFAULT_ATTEMPT_TIMEOUT);
        let retrier = retrier.with_policy(policy).phase(Phase::Connect);
        let schedule = retrier.policy().schedule();
        Self {
            retrier,
            circuit,
            events,
            state: Mutex::new(GateState {
                down: false,
                generation: 0,
                next_probe_at: Instant::now(),
                schedule,
                last_failure: None,
            }),
            probe: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn retrier(&self) -> &Retrier {
        &self.retrier
    }

    pub(crate) fn events(&self) -> &Arc<PoolEvents> {
        &self.events
    }

    pub(crate) fn diagnostics(&self) -> Diagnostics {
        Diagnostics(self.events.clone())
    }

    /// The bound on one check or connect attempt.
    pub(crate) fn attempt_timeout(&self) -> Duration {
        self.retrier
            .policy()
            .attempt_timeout
            .unwrap_or(DEFAULT_ATTEMPT_TIMEOUT)
    }

    /// Whether the last connect attempt failed with a transient error.
    #[cfg(test)]
    pub(crate) fn is_down(&self) -> bool {
        self.lock().down
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Connects with `backend`, retrying transient failures on the pool's shared schedule.
    pub(crate) async fn connect<C: ConnectOnce>(
        &self,
        backend: &C,
    ) -> Result<C::Connection, Error> {
        let result = self.connect_retrying(backend).await;
        if let Err(error) = &result {
            self.events.connect_gave_up(error);
        }
        result
    }

    async fn connect_retrying<C: ConnectOnce>(&self, backend: &C) -> Result<C::Connection, Error> {
        let mut run = Run::start(&self.retrier);
        loop {
            match self.circuit.admit() {
                Admission::Reject => return Err(self.give_up_waiting(&run, ErrorKind::CircuitOpen)),
                Admission::Probe => return self.half_open_probe(&mut run, backend).await,
                Admission::Pass => {}
            }
            let seen = {
                let state = self.lock();
                (!state.down).then_some(()).ok_or(state.generation)
            };
            match seen {
                Ok(()) if self.events.take_connection_lost() => self.suspect_down(),
                Ok(()) => match self.attempt(&mut run, backend).await {
                    Attempt::Succeeded(connection) => return Ok(connection),
                    Attempt::Failed(failure) => {
                        let first_probe_in = self.record_direct_failure(&failure);
                        run.check_continue(&failure, Duration::ZERO)?;
                        if let Some(delay) = first_probe_in {
                            run.announce_retry(&failure, delay);
                        }
                    }
                },
                Err(generation) => {
                    if let Some(connection) =
                        self.wait_or_probe(&mut run, backend, generation).await?
                    {
                        return Ok(connection);
                    }
                }
            }
        }
    }

    /// Queues for the probe lock; returns a connection if this caller probed and succeeded,
    /// `None` to go round again (a probe happened, or the pool is up again).
    async fn wait_or_probe<C: ConnectOnce>(
        &self,
        run: &mut Run<'_>,
        backend: &C,
        seen_generation: u64,
    ) -> Result<Option<C::Connection>, Error> {
        let guard = match run.deadline() {
            Some(deadline) => match tokio::time::timeout_at(deadline, self.probe.lock()).await {
                Ok(guard) => guard,
                Err(_) => return Err(self.give_up_waiting(run, ErrorKind::Timeout)),
            },
            None => self.probe.lock().await,
        };
        let (generation, down, probe_at, news) = {
            let state = self.lock();
            (
                state.generation,
                state.down,
                state.next_probe_at,
                state.current_failure(),
            )
        };
        let wait = probe_at.saturating_duration_since(Instant::now());
        if generation != seen_generation {
            drop(guard);
            if let Some(failure) = news {
                run.observed();
                run.check_continue(&failure, wait)?;
            }
            return Ok(None);
        }
        let Some(failure) = news.filter(|_| down) else {
            return Ok(None);
        };
        run.check_continue(&failure, wait)?;
        tokio::time::sleep_until(probe_at).await;
        if self.circuit.rejects() {
            return Err(self.give_up_waiting(run, ErrorKind::CircuitOpen));
        }
        match self.attempt(run, backend).await {
            Attempt::Succeeded(connection) => {
                self.record_probe_success();
                drop(guard);
                Ok(Some(connection))
            }
            Attempt::Failed(failure) => {
                let delay = self.record_probe_failure(&failure);
                drop(guard);
                run.check_continue(&failure, delay)?;
                run.announce_retry(&failure, delay);
                Ok(None)
            }
        }
    }

    /// The one attempt a half-open circuit lets through: success closes the circuit (and the
    /// pool is up), failure opens it again and this caller is told so.
    async fn half_open_probe<C: ConnectOnce>(
        &self,
        run: &mut Run<'_>,
        backend: &C,
    ) -> Result<C::Connection, Error> {
        struct AbandonOnDrop<'a>(Option<&'a Circuit>);
        impl Drop for AbandonOnDrop<'_> {
            fn drop(&mut self) {
                if let Some(circuit) = self.0 {
                    circuit.probe_abandoned();
                }
            }
        }
        let mut abandoned = AbandonOnDrop(Some(&self.circuit));
        let attempt = self.attempt(run, backend).await;
        abandoned.0 = None;
        match attempt {
            Attempt::Succeeded(connection) => {
                self.record_probe_success();
                Ok(connection)
            }
            Attempt::Failed(failure) => {
                self.record_probe_failure(&failure);
                let kind = match failure.class {
                    ErrorClass::Permanent => ErrorKind::Connection,
                    ErrorClass::Transient => ErrorKind::CircuitOpen,
                };
                Err(run.give_up(kind, Some(&failure)))
            }
        }
    }

    /// One attempt, recorded in the pool's events and circuit.
    async fn attempt<C: ConnectOnce>(
        &self,
        run: &mut Run<'_>,
        backend: &C,
    ) -> Attempt<C::Connection> {
        let attempt = run.attempt(backend.connect_once()).await;
        match &attempt {
            Attempt::Succeeded(_) => {
                self.circuit.succeeded();
                self.events.connect_succeeded();
            }
            Attempt::Failed(failure) => {
                self.circuit.failed(failure.class);
                self.events
                    .connect_failed(RecordedError::from_failure(failure));
            }
        }
        attempt
    }

    fn give_up_waiting(&self, run: &Run<'_>, kind: ErrorKind) -> Error {
        let last = self.lock().last_failure.clone();
        run.give_up(kind, last.as_ref().map(|(_, failure)| failure))
    }

    /// A pooled connection died: rather than every caller reconnecting at once (into a server
    /// that may be restarting), the pool counts as down with a probe due now — one caller
    /// checks, the others wait for its answer.
    fn suspect_down(&self) {
        let mut state = self.lock();
        if state.down {
            return;
        }
        state.down = true;
        state.generation += 1;
        state.last_failure = Some((
            state.generation,
            Failure::new(ConnectionLost, Phase::Connect),
        ));
        state.schedule.reset();
        state.next_probe_at = Instant::now();
    }

    /// A concurrent (non-probe) attempt failed: the first transient failure marks the pool down
    /// and starts its schedule (returning the delay to the first probe); a permanent one, or
    /// one while already down, is only remembered.
    fn record_direct_failure(&self, failure: &Failure) -> Option<Duration> {
        let mut state = self.lock();
        if failure.class != ErrorClass::Transient || state.down {
            let generation = state.generation;
            state.last_failure = Some((generation, failure.clone()));
            return None;
        }
        state.down = true;
        state.generation += 1;
        state.last_failure = Some((state.generation, failure.clone()));
        state.schedule.reset();
        let delay = state.schedule.next_delay();
        state.next_probe_at = Instant::now() + delay;
        Some(delay)
    }

    fn record_probe_success(&self) {
        let mut state = self.lock();
        state.down = false;
        state.generation += 1;
        state.schedule.reset();
    }

    /// Returns the delay until the next probe. A permanent failure means the server answered:
    /// the pool counts as up again, so later callers get their own permanent error at once
    /// instead of waiting for the schedule.
    fn record_probe_failure(&self, failure: &Failure) -> Duration {
        let mut state = self.lock();
        state.generation += 1;
        state.last_failure = Some((state.generation, failure.clone()));
        if failure.class == ErrorClass::Permanent {
            state.down = false;
            state.schedule.reset();
            return Duration::ZERO;
        }
        let delay = state.schedule.next_delay();
        state.next_probe_at = Instant::now() + delay;
        delay
    }
}

#[cfg(test)]
mod tests;

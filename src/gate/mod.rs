//! One reconnect effort per pool: the [`Machine`] decides, this driver does the I/O.
//!
//! While the pool is up, callers connect concurrently. After a transient failure it is down:
//! one caller at a time makes the probe on the pool's schedule; the others wait for its
//! outcome (each within its own budget), counting it as an attempt of theirs; a success marks
//! the pool up and everyone connects. A permanent failure goes back to its caller and to the
//! waiters that shared its attempt, and leaves the pool up for the next caller.
//!
//! Cancellation: a probe's only hold on the gate is its ticket; the guard around the attempt
//! reports it abandoned when its caller goes away, and the next waiter takes over.

#![cfg_attr(not(pools), allow(dead_code))]

mod machine;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::SmallRng;
use tokio::sync::watch;
use tokio::time::Instant;

pub(crate) use self::machine::{
    Admission, Circuit, Effects, Event, Machine, Outcome, State, Ticket,
};

use crate::circuit_breaker::CircuitBreaker;
use crate::classify::{ErrorClass, OperationError};
use crate::error::{Error, ErrorKind};
use crate::events::PoolEvents;
use crate::failure::Failure;
use crate::retry::{Attempt, Retrier, Run};

/// The bound on one connect attempt when the policy sets none: a server that accepts TCP but
/// never answers must not hang a pool's `get()` forever.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A pool's gate: the state machine behind a lock, and a channel that wakes its waiters.
#[derive(Debug)]
pub(crate) struct Gate {
    retrier: Retrier,
    machine: Mutex<Machine<Failure, SmallRng>>,
    news: watch::Sender<u64>,
}

impl Gate {
    /// A gate connecting under `retrier`'s policy (in the connect phase), each attempt bounded
    /// by the policy's `attempt_timeout` or [`DEFAULT_ATTEMPT_TIMEOUT`].
    pub(crate) fn new(retrier: Retrier, breaker: Option<CircuitBreaker>) -> Self {
        let mut policy = retrier.policy().clone();
        policy
            .attempt_timeout
            .get_or_insert(DEFAULT_ATTEMPT_TIMEOUT);
        let retrier = retrier
            .with_policy(policy)
            .phase(crate::classify::Phase::Connect);
        let machine = Machine::new(retrier.policy().schedule(), breaker);
        crate::metrics::circuit_state(retrier.label(), machine.circuit());
        Self {
            retrier,
            machine: Mutex::new(machine),
            news: watch::Sender::new(0),
        }
    }

    pub(crate) fn retrier(&self) -> &Retrier {
        &self.retrier
    }

    /// The bound on one connect attempt or check.
    pub(crate) fn attempt_timeout(&self) -> Duration {
        self.retrier
            .policy()
            .attempt_timeout
            .unwrap_or(DEFAULT_ATTEMPT_TIMEOUT)
    }

    /// Whether the last news about the database was good (or there was none).
    pub(crate) fn is_up(&self) -> bool {
        matches!(self.lock().state(), State::Up { .. })
    }

    #[cfg(test)]
    pub(crate) fn state(&self) -> State {
        self.lock().state().clone()
    }

    /// A pooled connection was found dead; it was last known alive at `last_alive`. Unless a
    /// later success proves the database reachable, the next caller probes before the others
    /// reconnect (into a server that may be restarting).
    pub(crate) fn connection_lost(&self, last_alive: Instant) {
        let effects = self
            .lock()
            .on(Event::ConnectionLost { last_alive }, Instant::now());
        self.apply(&effects);
    }

    /// Connects with `attempt`, retrying transient failures on the pool's shared schedule,
    /// within the caller's own budget (`max_attempts`, `max_elapsed`).
    pub(crate) async fn connect<T, E, Fut>(
        &self,
        events: &PoolEvents,
        mut attempt: impl FnMut() -> Fut,
    ) -> Result<T, Error>
    where
        Fut: Future<Output = Result<T, E>>,
        E: OperationError,
    {
        let mut run =
            Run::start(&self.retrier).within(crate::checkout_deadline::checkout_deadline());
        let mut news = None;
        loop {
            let (admission, effects) = self.lock().admit(Instant::now());
            self.apply(&effects);
            match admission {
                Admission::Direct(ticket) => {
                    if let Some(connection) =
                        self.attempt(&mut run, events, ticket, attempt()).await?
                    {
                        return Ok(connection);
                    }
                }
                Admission::Probe(ticket) => {
                    let guard = AbandonOnDrop {
                        gate: self,
                        ticket: Some(ticket),
                    };
                    let outcome = self.attempt(&mut run, events, ticket, attempt()).await;
                    guard.disarm();
                    if let Some(connection) = outcome? {
                        return Ok(connection);
                    }
                }
                Admission::Wait {
                    until,
                    probe,
                    generation,
                } => {
                    let news = news.get_or_insert_with(|| self.news.subscribe());
                    self.wait(&mut run, news, until, probe, generation).await?;
                }
                Admission::Reject => {
                    let last = self.lock().last_failure().cloned();
                    return Err(run.give_up(ErrorKind::CircuitOpen, last.as_ref()));
                }
            }
        }
    }

    /// One attempt, told to the machine. `Ok(None)`: it failed transiently and the caller
    /// may go round again; `Err`: the caller is given up on.
    async fn attempt<T, E, Fut>(
        &self,
        run: &mut Run<'_>,
        events: &PoolEvents,
        ticket: Ticket,
        attempt: Fut,
    ) -> Result<Option<T>, Error>
    where
        Fut: Future<Output = Result<T, E>>,
        E: OperationError,
    {
        let (outcome, result) = match run.attempt(attempt).await {
            Attempt::Succeeded(connection) => {
                events.connect_succeeded();
                (Outcome::Success, Some(connection))
            }
            Attempt::Failed(failure) => {
                events.connect_failed(&failure);
                let outcome = match failure.class() {
                    ErrorClass::Transient => Outcome::Transient(failure),
                    ErrorClass::Permanent => Outcome::Permanent(failure),
                };
                (outcome, None)
            }
        };
        let failure = outcome.failure().cloned();
        let effects = self
            .lock()
            .on(Event::Ended(ticket, outcome), Instant::now());
        self.apply(&effects);
        match (result, failure) {
            (Some(connection), _) => Ok(Some(connection)),
            (None, Some(failure)) => {
                // When this failure opened the circuit, the caller is told so next round.
                let opened = effects.circuit == Some(Circuit::Open);
                let next_probe_in = effects.next_probe_in.filter(|_| !opened);
                run.check_continue(&failure, next_probe_in.unwrap_or(Duration::ZERO))?;
                if let Some(delay) = next_probe_in {
                    run.announce_retry(&failure, delay);
                }
                Ok(None)
            }
            (None, None) => unreachable!("an attempt either connects or fails"),
        }
    }

    /// Waits for the next probe time or for news, within the caller's deadline. When the news
    /// is the outcome of the probe this caller waited on, it counts as one of its attempts.
    async fn wait(
        &self,
        run: &mut Run<'_>,
        news: &mut watch::Receiver<u64>,
        until: Option<Instant>,
        probe: Option<Ticket>,
        generation: u64,
    ) -> Result<(), Error> {
        if let Some(until) = until {
            let last = self.lock().last_failure().cloned();
            if let Some(last) = &last {
                run.check_continue(last, until.saturating_duration_since(Instant::now()))?;
            }
        }
        let wake_at = match (until, run.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let moved_on = news.wait_for(|seen| *seen > generation);
        let woken_by_news = match wake_at {
            Some(at) => tokio::time::timeout_at(at, moved_on).await.is_ok(),
            None => moved_on.await.is_ok(),
        };
        if !woken_by_news && run.deadline().is_some_and(|d| Instant::now() >= d) {
            let last = self.lock().last_failure().cloned();
            return Err(run.give_up(ErrorKind::Timeout, last.as_ref()));
        }
        let Some(probe) = probe else { return Ok(()) };
        let (shared, next_probe_in) = {
            let machine = self.lock();
            let shared = machine
                .news()
                .filter(|news| news.ticket == probe)
                .map(|news| news.outcome.clone());
            let next_probe_in = match machine.state() {
                State::Down { next_probe_at, .. } => {
                    next_probe_at.saturating_duration_since(Instant::now())
                }
                _ => Duration::ZERO,
            };
            (shared, next_probe_in)
        };
        match shared {
            Some(Outcome::Permanent(failure)) => {
                run.observed();
                run.check_continue(&failure, Duration::ZERO)
            }
            Some(Outcome::Transient(failure)) => {
                run.observed();
                run.check_continue(&failure, next_probe_in)
            }
            Some(Outcome::Success) | None => Ok(()),
        }
    }

    fn apply(&self, effects: &Effects) {
        if let Some(circuit) = effects.circuit {
            tracing::warn!(
                target: "dbretry::gate",
                pool = self.retrier.label(),
                state = circuit.as_str(),
                "circuit breaker changed state"
            );
            crate::metrics::circuit_state(self.retrier.label(), circuit);
        }
        if effects.wake {
            let generation = self.lock().generation();
            self.news.send_if_modified(|seen| {
                let moved = *seen < generation;
                *seen = (*seen).max(generation);
                moved
            });
        }
    }

    fn lock(&self) -> MutexGuard<'_, Machine<Failure, SmallRng>> {
        self.machine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Reports a probe abandoned when the caller making it goes away mid-attempt.
struct AbandonOnDrop<'g> {
    gate: &'g Gate,
    ticket: Option<Ticket>,
}

impl AbandonOnDrop<'_> {
    fn disarm(mut self) {
        self.ticket = None;
    }
}

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            let effects = self
                .gate
                .lock()
                .on(Event::Abandoned(ticket), Instant::now());
            self.gate.apply(&effects);
        }
    }
}

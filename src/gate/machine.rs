//! The per-pool gate as a pure state machine: one enum of states, one of events, and a
//! transition for every pair. No clock, no randomness of its own, no I/O: the caller passes
//! the time in and the probe delays come from an injected [`Schedule`], so every sequence of
//! events can be replayed and checked.
//!
//! | state | `admit` | success | transient | permanent | probe abandoned | connection lost |
//! |---|---|---|---|---|---|---|
//! | `Up` | direct attempt | `Up` | `Down` (or `Open` at the threshold) | `Up` | — | `Down`, probe due now (unless a later success proves the server reachable) |
//! | `Down` | wait, or be the probe once it is due | `Up` | the probe's: next probe scheduled; a direct one's: counted | `Up` (the server answered) | probe slot freed | — |
//! | `Open` | fail fast; once cooled down, be the one half-open probe | `Up` | — | — | — | — |
//! | `HalfOpen` | fail fast | `Up` | the probe's: `Open` again | the probe's: `Up` | `Open`, due now | — |
//!
//! "—" means the state is unchanged. A permanent failure is never kept as pool state: it goes
//! back to the caller whose attempt it was (and to the waiters that shared that attempt); the
//! next caller makes a fresh attempt.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::circuit_breaker::CircuitBreaker;
use crate::policy::Schedule;

/// Identifies one connect attempt, so that outcomes arriving late or twice cannot be taken
/// for another attempt's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Ticket(u64);

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome<F> {
    Success,
    Transient(F),
    Permanent(F),
}

impl<F> Outcome<F> {
    pub(crate) fn failure(&self) -> Option<&F> {
        match self {
            Self::Success => None,
            Self::Transient(failure) | Self::Permanent(failure) => Some(failure),
        }
    }
}

/// What happened, as told to the machine.
#[derive(Clone, Debug)]
pub(crate) enum Event<F> {
    /// The attempt with this ticket ended.
    Ended(Ticket, Outcome<F>),
    /// The caller making this attempt went away before it ended (cancelled, timed out).
    Abandoned(Ticket),
    /// A pooled connection was found dead; it was last known alive at this instant.
    ConnectionLost { last_alive: Instant },
}

/// What the machine tells a caller that needs a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The pool is up: connect now, concurrently with others.
    Direct(Ticket),
    /// The pool is down (or half-open) and this caller makes the one attempt.
    Probe(Ticket),
    /// Wait until `until` (the next probe time) or until the news moves past `generation`,
    /// whichever is first. `probe` is the attempt in flight whose outcome the caller shares.
    Wait {
        until: Option<Instant>,
        probe: Option<Ticket>,
        generation: u64,
    },
    /// The circuit breaker is open: fail fast without an attempt.
    Reject,
}

/// The circuit as metrics and logs show it.
pub(crate) use crate::metrics::CircuitState as Circuit;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// The last news was a success (or nothing yet): connects run concurrently.
    Up { failures: u32 },
    /// A transient failure was the last news: one probe at a time, on the schedule.
    Down {
        failures: u32,
        next_probe_at: Instant,
        probe: Option<Ticket>,
    },
    /// The breaker opened: callers fail fast until `until`. A probe still in flight from the
    /// outage before is carried along: it becomes the half-open probe if it outlasts the
    /// cool-down, so that there is never more than one.
    Open {
        until: Instant,
        probe: Option<Ticket>,
    },
    /// The one probe after a cool-down is out.
    HalfOpen { probe: Ticket },
}

/// The latest outcome, for the callers waiting on it.
#[derive(Clone, Debug)]
pub(crate) struct News<F> {
    pub(crate) ticket: Ticket,
    pub(crate) outcome: Outcome<F>,
}

/// What a transition did, for the driver to act on (metrics, logs, waking waiters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Effects {
    /// The news moved on: wake the waiters.
    pub(crate) wake: bool,
    /// The delay before the next probe, when this event scheduled one.
    pub(crate) next_probe_in: Option<Duration>,
    /// The circuit changed to this.
    pub(crate) circuit: Option<Circuit>,
}

/// One pool's gate: see the [module docs](self).
#[derive(Clone, Debug)]
pub(crate) struct Machine<F, R> {
    state: State,
    /// Counts the times the pool left `Up`: attempts admitted in one such period share it.
    outages: u64,
    breaker: Option<CircuitBreaker>,
    schedule: Schedule<R>,
    next_ticket: u64,
    generation: u64,
    news: Option<News<F>>,
    last_success: Option<Instant>,
}

impl<F: Clone, R: Rng> Machine<F, R> {
    pub(crate) fn new(schedule: Schedule<R>, breaker: Option<CircuitBreaker>) -> Self {
        Self {
            state: State::Up { failures: 0 },
            outages: 0,
            breaker,
            schedule,
            next_ticket: 0,
            generation: 0,
            news: None,
            last_success: None,
        }
    }

    pub(crate) fn state(&self) -> &State {
        &self.state
    }

    pub(crate) fn circuit(&self) -> Circuit {
        circuit_of(&self.state)
    }

    /// How many times the pool left `Up` so far.
    #[cfg(test)]
    pub(crate) fn outages(&self) -> u64 {
        self.outages
    }

    /// The latest outcome, if there was one.
    pub(crate) fn news(&self) -> Option<&News<F>> {
        self.news.as_ref()
    }

    /// The latest failure, if the latest outcome was one.
    pub(crate) fn last_failure(&self) -> Option<&F> {
        self.news.as_ref().and_then(|news| news.outcome.failure())
    }

    /// The attempt in flight while the pool is down or half-open.
    pub(crate) fn probe_in_flight(&self) -> Option<Ticket> {
        match self.state {
            State::Down { probe, .. } | State::Open { probe, .. } => probe,
            State::HalfOpen { probe } => Some(probe),
            State::Up { .. } => None,
        }
    }

    /// A caller needs a connection at `now`.
    pub(crate) fn admit(&mut self, now: Instant) -> (Admission, Effects) {
        let mut effects = Effects::default();
        let admission = match self.state {
            State::Up { .. } => Admission::Direct(self.ticket()),
            State::Down {
                probe: Some(probe), ..
            } => self.wait(None, Some(probe)),
            State::Down {
                failures,
                next_probe_at,
                probe: None,
            } if now >= next_probe_at => {
                let ticket = self.ticket();
                self.state = State::Down {
                    failures,
                    next_probe_at,
                    probe: Some(ticket),
                };
                Admission::Probe(ticket)
            }
            State::Down { next_probe_at, .. } => self.wait(Some(next_probe_at), None),
            State::Open {
                until,
                probe: Some(probe),
            } if now >= until => {
                self.enter(State::HalfOpen { probe }, &mut effects);
                Admission::Reject
            }
            State::Open { until, probe: None } if now >= until => {
                let ticket = self.ticket();
                self.enter(State::HalfOpen { probe: ticket }, &mut effects);
                Admission::Probe(ticket)
            }
            State::Open { .. } | State::HalfOpen { .. } => Admission::Reject,
        };
        (admission, effects)
    }

    /// Something happened at `now`.
    pub(crate) fn on(&mut self, event: Event<F>, now: Instant) -> Effects {
        let mut effects = Effects::default();
        match event {
            Event::Ended(ticket, outcome) => {
                let is_probe = self.probe_in_flight() == Some(ticket);
                self.ended(is_probe, &outcome, now, &mut effects);
                self.generation += 1;
                self.news = Some(News { ticket, outcome });
                effects.wake = true;
            }
            Event::Abandoned(ticket) => self.abandoned(ticket, now, &mut effects),
            Event::ConnectionLost { last_alive } => {
                let proven_since = self.last_success.is_some_and(|at| at > last_alive);
                if let State::Up { failures } = self.state
                    && !proven_since
                {
                    self.schedule.reset();
                    self.enter(
                        State::Down {
                            failures,
                            next_probe_at: now,
                            probe: None,
                        },
                        &mut effects,
                    );
                    self.generation += 1;
                    effects.wake = true;
                }
            }
        }
        effects
    }

    fn ended(&mut self, is_probe: bool, outcome: &Outcome<F>, now: Instant, effects: &mut Effects) {
        match (outcome, self.state.clone()) {
            // Any success: the database answers.
            (Outcome::Success, _) => {
                self.last_success = Some(now);
                self.schedule.reset();
                self.enter(State::Up { failures: 0 }, effects);
            }
            // A permanent failure is its caller's; it says the server answered, so the pool
            // is up and the next caller tries afresh. A late direct one changes nothing
            // while the breaker is open or its probe is out.
            (Outcome::Permanent(_), State::Up { .. }) => {}
            (Outcome::Permanent(_), State::Down { failures, .. }) => {
                self.schedule.reset();
                self.enter(State::Up { failures }, effects);
            }
            (Outcome::Permanent(_), State::HalfOpen { .. }) if is_probe => {
                self.schedule.reset();
                self.enter(State::Up { failures: 0 }, effects);
            }
            (Outcome::Permanent(_) | Outcome::Transient(_), State::Open { until, .. })
                if is_probe =>
            {
                self.state = State::Open { until, probe: None };
            }
            (Outcome::Permanent(_), State::Open { .. } | State::HalfOpen { .. }) => {}
            (Outcome::Transient(_), State::Up { failures }) => {
                self.schedule.reset();
                self.failed(failures, now, effects);
            }
            (
                Outcome::Transient(_),
                State::Down {
                    failures,
                    next_probe_at,
                    probe,
                },
            ) => {
                if is_probe {
                    self.failed(failures, now, effects);
                } else if self.opens_at(failures.saturating_add(1)) {
                    self.open(now, probe, effects);
                } else {
                    self.state = State::Down {
                        failures: failures.saturating_add(1),
                        next_probe_at,
                        probe,
                    };
                }
            }
            (Outcome::Transient(_), State::HalfOpen { .. }) if is_probe => {
                self.open(now, None, effects);
            }
            (Outcome::Transient(_), State::Open { .. } | State::HalfOpen { .. }) => {}
        }
    }

    fn abandoned(&mut self, ticket: Ticket, now: Instant, effects: &mut Effects) {
        match self.state {
            State::Down {
                failures,
                next_probe_at,
                probe: Some(probe),
            } if probe == ticket => {
                self.state = State::Down {
                    failures,
                    next_probe_at,
                    probe: None,
                };
                self.generation += 1;
                effects.wake = true;
            }
            State::Open {
                until,
                probe: Some(probe),
            } if probe == ticket => {
                self.state = State::Open { until, probe: None };
            }
            State::HalfOpen { probe } if probe == ticket => {
                self.enter(
                    State::Open {
                        until: now,
                        probe: None,
                    },
                    effects,
                );
                self.generation += 1;
                effects.wake = true;
            }
            _ => {}
        }
    }

    /// A transient failure that counts: down on the schedule, or open at the threshold.
    fn failed(&mut self, failures: u32, now: Instant, effects: &mut Effects) {
        let failures = failures.saturating_add(1);
        if self.opens_at(failures) {
            self.open(now, None, effects);
            return;
        }
        let delay = self.schedule.next_delay();
        effects.next_probe_in = Some(delay);
        self.enter(
            State::Down {
                failures,
                next_probe_at: crate::time::later(now, delay),
                probe: None,
            },
            effects,
        );
    }

    fn opens_at(&self, failures: u32) -> bool {
        self.breaker
            .is_some_and(|breaker| failures >= breaker.failure_threshold())
    }

    /// Opens the circuit, carrying along a probe still in flight.
    fn open(&mut self, now: Instant, probe: Option<Ticket>, effects: &mut Effects) {
        let cool_down = self.breaker.map_or(Duration::ZERO, |b| b.cool_down());
        effects.next_probe_in = Some(cool_down);
        let until = crate::time::later(now, cool_down);
        self.enter(State::Open { until, probe }, effects);
    }

    fn enter(&mut self, next: State, effects: &mut Effects) {
        if matches!(self.state, State::Up { .. }) && !matches!(next, State::Up { .. }) {
            self.outages += 1;
        }
        let (before, after) = (circuit_of(&self.state), circuit_of(&next));
        if before != after {
            effects.circuit = Some(after);
        }
        self.state = next;
    }

    fn wait(&self, until: Option<Instant>, probe: Option<Ticket>) -> Admission {
        Admission::Wait {
            until,
            probe,
            generation: self.generation,
        }
    }

    fn ticket(&mut self) -> Ticket {
        self.next_ticket += 1;
        Ticket(self.next_ticket)
    }

    /// How many times the news moved on (waiters compare against it).
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }
}

fn circuit_of(state: &State) -> Circuit {
    match state {
        State::Up { .. } | State::Down { .. } => Circuit::Closed,
        State::Open { .. } => Circuit::Open,
        State::HalfOpen { .. } => Circuit::HalfOpen,
    }
}

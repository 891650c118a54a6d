//! The optional per-pool circuit breaker: after repeated connect failures, stop trying for a
//! while and fail fast, then let exactly one probe through to see whether the database is back.

#![cfg_attr(not(pools), allow(dead_code))]

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::ErrorClass;

/// Circuit breaker settings for a pool.
///
/// After `failure_threshold` consecutive transient connect failures the circuit *opens*: for
/// `cool_down`, creating a connection fails at once with
/// [`ErrorKind::CircuitOpen`](crate::ErrorKind::CircuitOpen), without touching the database.
/// Then it is *half-open*: exactly one caller's connect attempt goes through; success closes
/// the circuit, failure opens it for another `cool_down`. Permanent errors (wrong password)
/// do not count — they already fail fast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitBreaker {
    /// Consecutive transient failures that open the circuit (≥ 1).
    pub failure_threshold: u32,
    /// How long it stays open before admitting a probe.
    pub cool_down: Duration,
}

impl CircuitBreaker {
    /// A breaker opening after `failure_threshold` consecutive failures (at least 1) for
    /// `cool_down`.
    pub fn new(failure_threshold: u32, cool_down: Duration) -> Self {
        Self {
            failure_threshold: failure_threshold.max(1),
            cool_down,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// What the circuit says to a caller about to connect.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Closed (or no breaker): connect as usual.
    Pass,
    /// Half-open and this caller is the one probe.
    Probe,
    /// Open, or half-open with the probe already out: fail fast.
    Reject,
}

/// A pool's circuit: the breaker settings (if any) and the state.
#[derive(Debug)]
pub(crate) struct Circuit {
    breaker: Option<CircuitBreaker>,
    state: Mutex<State>,
    pool: std::sync::Arc<str>,
}

impl Circuit {
    pub(crate) fn new(breaker: Option<CircuitBreaker>, pool: &str) -> Self {
        Self {
            breaker,
            state: Mutex::new(State::Closed {
                consecutive_failures: 0,
            }),
            pool: pool.into(),
        }
    }

    pub(crate) fn admit(&self) -> Admission {
        if self.breaker.is_none() {
            return Admission::Pass;
        }
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Admission::Pass,
            State::Open { until } if Instant::now() < until => Admission::Reject,
            State::Open { .. } => {
                self.set(&mut state, State::HalfOpen);
                Admission::Probe
            }
            State::HalfOpen => Admission::Reject,
        }
    }

    /// True while callers must be turned away (open and cooling down, or a probe is out).
    pub(crate) fn rejects(&self) -> bool {
        match *self.lock() {
            State::Closed { .. } => false,
            State::Open { until } => Instant::now() < until,
            State::HalfOpen => true,
        }
    }

    pub(crate) fn succeeded(&self) {
        if self.breaker.is_some() {
            let mut state = self.lock();
            self.set(
                &mut state,
                State::Closed {
                    consecutive_failures: 0,
                },
            );
        }
    }

    pub(crate) fn failed(&self, class: ErrorClass) {
        let Some(breaker) = self.breaker else { return };
        if class == ErrorClass::Permanent {
            return;
        }
        let mut state = self.lock();
        let next = match *state {
            State::Closed {
                consecutive_failures,
            } if consecutive_failures + 1 < breaker.failure_threshold => State::Closed {
                consecutive_failures: consecutive_failures + 1,
            },
            State::Closed { .. } | State::HalfOpen => State::Open {
                until: Instant::now() + breaker.cool_down,
            },
            open @ State::Open { .. } => open,
        };
        self.set(&mut state, next);
    }

    /// The probe's caller went away before it finished: let the next caller probe.
    pub(crate) fn probe_abandoned(&self) {
        let mut state = self.lock();
        if *state == State::HalfOpen {
            self.set(
                &mut state,
                State::Open {
                    until: Instant::now(),
                },
            );
        }
    }

    fn set(&self, state: &mut State, next: State) {
        let gauge = match next {
            State::Closed { .. } => crate::metrics::CircuitState::Closed,
            State::Open { .. } => crate::metrics::CircuitState::Open,
            State::HalfOpen => crate::metrics::CircuitState::HalfOpen,
        };
        if std::mem::discriminant(state) != std::mem::discriminant(&next) {
            tracing::warn!(target: "dbretry", pool = &*self.pool, state = ?next, "circuit breaker changed state");
        }
        *state = next;
        crate::metrics::circuit_state(&self.pool, gauge);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn circuit() -> Circuit {
        Circuit::new(Some(CircuitBreaker::new(3, Duration::from_secs(5))), "test")
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_and_admits_exactly_one_probe_after_the_cool_down() {
        let circuit = circuit();
        for _ in 0..2 {
            circuit.failed(ErrorClass::Transient);
            assert_eq!(circuit.admit(), Admission::Pass);
        }
        circuit.failed(ErrorClass::Transient);
        assert_eq!(circuit.admit(), Admission::Reject);
        tokio::time::advance(Duration::from_millis(4999)).await;
        assert_eq!(circuit.admit(), Admission::Reject);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(circuit.admit(), Admission::Probe);
        assert_eq!(circuit.admit(), Admission::Reject, "only one probe");
        circuit.succeeded();
        assert_eq!(circuit.admit(), Admission::Pass);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_it_for_another_cool_down() {
        let circuit = circuit();
        for _ in 0..3 {
            circuit.failed(ErrorClass::Transient);
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(circuit.admit(), Admission::Probe);
        circuit.failed(ErrorClass::Transient);
        assert_eq!(circuit.admit(), Admission::Reject);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(circuit.admit(), Admission::Probe);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_lets_the_next_caller_probe() {
        let circuit = circuit();
        for _ in 0..3 {
            circuit.failed(ErrorClass::Transient);
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(circuit.admit(), Admission::Probe);
        circuit.probe_abandoned();
        assert_eq!(circuit.admit(), Admission::Probe);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_and_interleaved_successes_do_not_open_it() {
        let circuit = circuit();
        for _ in 0..10 {
            circuit.failed(ErrorClass::Permanent);
        }
        circuit.failed(ErrorClass::Transient);
        circuit.failed(ErrorClass::Transient);
        circuit.succeeded();
        circuit.failed(ErrorClass::Transient);
        assert_eq!(circuit.admit(), Admission::Pass);
    }

    #[test]
    fn without_a_breaker_everything_passes() {
        let circuit = Circuit::new(None, "test");
        for _ in 0..100 {
            circuit.failed(ErrorClass::Transient);
        }
        assert_eq!(circuit.admit(), Admission::Pass);
    }
}

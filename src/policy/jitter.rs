use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// How a delay is randomised so that many clients do not retry in lockstep.
///
/// Whatever the strategy, the result is capped at the policy's `max_delay`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Jitter {
    /// No randomness: the exact exponential timeline.
    None,
    /// `delay ± delay × factor`, uniformly; the factor is in `[0, 1]`. The default, with 0.1.
    Proportional(f64),
    /// AWS "full jitter": uniform in `[0, delay]`.
    Full,
    /// AWS "equal jitter": `delay / 2` plus uniform in `[0, delay / 2]`.
    Equal,
    /// AWS "decorrelated jitter": uniform in `[initial_delay, previous × 3]`, capped. Ignores
    /// `exponential_base`: growth comes from the previous delay.
    Decorrelated,
}

/// The strategy names accepted in configuration (`jitter_strategy`, `DB_RETRY_JITTER_STRATEGY`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JitterStrategy {
    /// See [`Jitter::Proportional`]; its factor is `jitter_factor`.
    Proportional,
    /// See [`Jitter::Full`].
    Full,
    /// See [`Jitter::Equal`].
    Equal,
    /// See [`Jitter::Decorrelated`].
    Decorrelated,
}

impl JitterStrategy {
    pub(crate) const ACCEPTED: &'static str = "one of proportional, full, equal, decorrelated";

    /// The name used in configuration: `proportional`, `full`, `equal`, `decorrelated`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Proportional => "proportional",
            Self::Full => "full",
            Self::Equal => "equal",
            Self::Decorrelated => "decorrelated",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "proportional" => Some(Self::Proportional),
            "full" => Some(Self::Full),
            "equal" => Some(Self::Equal),
            "decorrelated" => Some(Self::Decorrelated),
            _ => None,
        }
    }
}

impl Jitter {
    /// Applies this jitter to `delay`, the un-jittered delay of this retry. `previous` is the
    /// delay actually slept last time (used by [`Jitter::Decorrelated`]), `initial` the policy's
    /// initial delay and `cap` its max delay.
    pub(crate) fn apply<R: Rng + ?Sized>(
        self,
        delay: Duration,
        previous: Duration,
        initial: Duration,
        cap: Duration,
        rng: &mut R,
    ) -> Duration {
        let d = delay.as_secs_f64();
        let jittered = match self {
            Self::None => d,
            Self::Proportional(factor) => {
                let spread = d * factor;
                d + uniform(rng, -spread, spread)
            }
            Self::Full => uniform(rng, 0.0, d),
            Self::Equal => d / 2.0 + uniform(rng, 0.0, d / 2.0),
            Self::Decorrelated => {
                let low = initial.as_secs_f64();
                let high = (previous.as_secs_f64() * 3.0).max(low);
                uniform(rng, low, high)
            }
        };
        clamp_to(jittered, cap)
    }
}

fn uniform<R: Rng + ?Sized>(rng: &mut R, low: f64, high: f64) -> f64 {
    if high > low {
        rng.random_range(low..=high)
    } else {
        low
    }
}

fn clamp_to(seconds: f64, cap: Duration) -> Duration {
    if seconds.is_nan() || seconds <= 0.0 {
        Duration::ZERO
    } else if seconds >= cap.as_secs_f64() {
        cap
    } else {
        Duration::from_secs_f64(seconds)
    }
}

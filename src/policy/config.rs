use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::jitter::JitterStrategy;
use super::{Jitter, RetryPolicy};
use crate::ConfigError;

/// Unvalidated retry settings: the builder for [`RetryPolicy`], and the shape of a
/// configuration-file section (serde) with the same names as the builder methods.
///
/// Every field is optional; an unset field takes the default shown. Durations are seconds as
/// numbers (`0.1` = 100 ms), as in the `DB_RETRY_*` environment variables.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use dbretry::{RetryConfig, RetryPolicy};
///
/// // In code:
/// let policy = RetryPolicy::builder()
///     .max_attempts(8)
///     .max_delay(Duration::from_secs(2))
///     .max_elapsed(Duration::from_secs(10))
///     .build()?;
///
/// // From a config file section (any serde format):
/// let from_file: RetryConfig = toml::from_str("max_attempts = 8\nmax_delay = 2.0\nmax_elapsed = 10")?;
/// assert_eq!(from_file.build()?, policy);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[must_use = "a RetryConfig does nothing until `build()` turns it into a RetryPolicy"]
pub struct RetryConfig {
    /// Tries in all, the first included: 1 or more. Default 5.
    pub max_attempts: Option<u32>,
    /// Seconds before the second try, ≥ 0. Default 0.1.
    pub initial_delay: Option<f64>,
    /// Cap in seconds on any one delay, applied after jitter; ≥ `initial_delay`. Default 30.
    pub max_delay: Option<f64>,
    /// Multiplier per retry, ≥ 1. Default 2.
    pub exponential_base: Option<f64>,
    /// Jitter on or off. Default on.
    pub jitter: Option<bool>,
    /// Proportional jitter: each delay ± delay × factor, in `[0, 1]`. Default 0.1.
    pub jitter_factor: Option<f64>,
    /// How jitter is drawn. Default `proportional`.
    pub jitter_strategy: Option<JitterStrategy>,
    /// Total deadline in seconds for all tries and sleeps together, > 0. Default none.
    pub max_elapsed: Option<f64>,
    /// Bound in seconds on any single try, > 0. Default none.
    pub attempt_timeout: Option<f64>,
    /// Seed for the jitter's random source, for reproducible schedules. Default: from the OS.
    pub seed: Option<u64>,
}

/// The name a setting goes by in an error: the builder/config field, or the environment
/// variable it was read from.
pub(super) type Namer<'a> = &'a dyn Fn(&'static str) -> String;

impl RetryConfig {
    /// Sets `max_attempts`.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Sets `initial_delay`.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = Some(delay.as_secs_f64());
        self
    }

    /// Sets `max_delay`.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = Some(delay.as_secs_f64());
        self
    }

    /// Sets `exponential_base`.
    pub fn exponential_base(mut self, base: f64) -> Self {
        self.exponential_base = Some(base);
        self
    }

    /// Turns jitter on or off.
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = Some(on);
        self
    }

    /// Sets `jitter_factor` (proportional jitter).
    pub fn jitter_factor(mut self, factor: f64) -> Self {
        self.jitter_factor = Some(factor);
        self
    }

    /// Sets `jitter_strategy`.
    pub fn jitter_strategy(mut self, strategy: JitterStrategy) -> Self {
        self.jitter_strategy = Some(strategy);
        self
    }

    /// Sets `max_elapsed`, the total deadline.
    pub fn max_elapsed(mut self, deadline: Duration) -> Self {
        self.max_elapsed = Some(deadline.as_secs_f64());
        self
    }

    /// Sets `attempt_timeout`, the bound on one try.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout.as_secs_f64());
        self
    }

    /// Sets the jitter seed, making every schedule of the policy the same sequence.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Each setting of `other` that is set replaces the one here.
    pub fn merge(self, other: RetryConfig) -> Self {
        Self {
            max_attempts: other.max_attempts.or(self.max_attempts),
            initial_delay: other.initial_delay.or(self.initial_delay),
            max_delay: other.max_delay.or(self.max_delay),
            exponential_base: other.exponential_base.or(self.exponential_base),
            jitter: other.jitter.or(self.jitter),
            jitter_factor: other.jitter_factor.or(self.jitter_factor),
            jitter_strategy: other.jitter_strategy.or(self.jitter_strategy),
            max_elapsed: other.max_elapsed.or(self.max_elapsed),
            attempt_timeout: other.attempt_timeout.or(self.attempt_timeout),
            seed: other.seed.or(self.seed),
        }
    }

    /// Validates the settings and builds the policy.
    ///
    /// # Errors
    /// The first invalid setting, named, with the accepted range: zero attempts, a negative,
    /// NaN or infinite duration, `max_delay` below `initial_delay`, `exponential_base` below 1,
    /// `jitter_factor` outside `[0, 1]`, a zero deadline or attempt timeout.
    pub fn build(&self) -> Result<RetryPolicy, ConfigError> {
        self.validate(&|field| format!("`{field}`"))
    }

    pub(super) fn validate(&self, name: Namer<'_>) -> Result<RetryPolicy, ConfigError> {
        let d = RetryPolicy::DEFAULT;
        let max_attempts = match self.max_attempts {
            Some(0) => return Err(ConfigError::new(name("max_attempts"), 0, "an integer ≥ 1")),
            Some(n) => n,
            None => d.max_attempts,
        };
        let initial_delay = seconds(self.initial_delay, "initial_delay", name, Zero::Allowed)?
            .unwrap_or(d.initial_delay);
        let max_delay =
            seconds(self.max_delay, "max_delay", name, Zero::Allowed)?.unwrap_or(d.max_delay);
        if max_delay < initial_delay {
            return Err(ConfigError::new(
                name("max_delay"),
                max_delay.as_secs_f64(),
                format!(
                    "seconds ≥ {} ({})",
                    name("initial_delay"),
                    initial_delay.as_secs_f64()
                ),
            ));
        }
        let exponential_base = match self.exponential_base {
            Some(b) if !(b.is_finite() && b >= 1.0) => {
                return Err(ConfigError::new(
                    name("exponential_base"),
                    b,
                    "a finite number ≥ 1",
                ));
            }
            Some(b) => b,
            None => d.exponential_base,
        };
        let factor = match self.jitter_factor {
            Some(f) if !(0.0..=1.0).contains(&f) => {
                return Err(ConfigError::new(
                    name("jitter_factor"),
                    f,
                    "a number in [0, 1]",
                ));
            }
            Some(f) => f,
            None => 0.1,
        };
        let jitter = match (self.jitter.unwrap_or(true), self.jitter_strategy) {
            (false, _) => Jitter::None,
            (true, None | Some(JitterStrategy::Proportional)) => Jitter::Proportional(factor),
            (true, Some(JitterStrategy::Full)) => Jitter::Full,
            (true, Some(JitterStrategy::Equal)) => Jitter::Equal,
            (true, Some(JitterStrategy::Decorrelated)) => Jitter::Decorrelated,
        };
        Ok(RetryPolicy {
            max_attempts,
            initial_delay,
            max_delay,
            exponential_base,
            jitter,
            max_elapsed: seconds(self.max_elapsed, "max_elapsed", name, Zero::Rejected)?,
            attempt_timeout: seconds(
                self.attempt_timeout,
                "attempt_timeout",
                name,
                Zero::Rejected,
            )?,
            seed: self.seed,
        })
    }
}

#[derive(PartialEq)]
enum Zero {
    Allowed,
    Rejected,
}

/// Seconds as a non-negative, finite number small enough for a `Duration`.
fn seconds(
    value: Option<f64>,
    field: &'static str,
    name: Namer<'_>,
    zero: Zero,
) -> Result<Option<Duration>, ConfigError> {
    let Some(secs) = value else { return Ok(None) };
    let positive_required = zero == Zero::Rejected;
    let valid = secs.is_finite()
        && (secs > 0.0 || (secs == 0.0 && !positive_required))
        && Duration::try_from_secs_f64(secs).is_ok();
    if valid {
        Ok(Some(Duration::from_secs_f64(secs)))
    } else {
        let expected = if positive_required {
            "a finite number of seconds > 0"
        } else {
            "a finite number of seconds ≥ 0"
        };
        Err(ConfigError::new(name(field), secs, expected))
    }
}

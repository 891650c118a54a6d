//! The retry policy: how many tries, how long to wait between them, and when to give up.

mod config;
mod duration;
mod env;
mod jitter;
mod origin;
mod schedule;
mod serialize;
mod setting;
mod suggest;

use std::time::Duration;

pub use self::config::RetryConfig;
pub use self::duration::MAX_DURATION;
pub use self::env::ENV_PREFIX;
pub use self::jitter::{Jitter, JitterStrategy};
pub use self::origin::Origin;
pub use self::schedule::Schedule;
pub use self::setting::RawValue;
pub(crate) use self::suggest::closest;
#[cfg(feature = "postgres")]
pub(crate) use self::suggest::edit_distance;

/// A validated retry policy: exponential backoff with jitter, an attempt budget, an optional
/// total deadline and an optional per-attempt timeout.
///
/// Build one with [`RetryPolicy::builder`] (or [`RetryConfig`] from a config file, or
/// [`RetryPolicy::from_env`]); every way validates the same rules and names the offending
/// setting, where it was set and the accepted range on error. Every duration is at most
/// [`MAX_DURATION`] (one year), so no accepted value can overflow a deadline.
///
/// The delay before try `k + 1` (k = 1, 2, …) is
/// `min(max_delay, initial_delay × exponential_base^(k-1))`, then jitter, then capped at
/// `max_delay` again. [`RetryPolicy::schedule`] yields those delays without sleeping, so the
/// timeline can be inspected or asserted on.
///
/// # Default
///
/// | setting | default | environment variable |
/// |---|---|---|
/// | `max_attempts` | 5 | `DB_RETRY_MAX_ATTEMPTS` |
/// | `initial_delay` | 0.1 s (or `max_delay` if smaller) | `DB_RETRY_INITIAL_DELAY` |
/// | `max_delay` | 30 s (or `initial_delay` if larger) | `DB_RETRY_MAX_DELAY` |
/// | `exponential_base` | 2.0 | `DB_RETRY_EXPONENTIAL_BASE` |
/// | `jitter` | on | `DB_RETRY_JITTER` |
/// | `jitter_factor` | 0.1 (±10 %) | `DB_RETRY_JITTER_FACTOR` |
/// | `jitter_strategy` | `proportional` | `DB_RETRY_JITTER_STRATEGY` |
/// | `max_elapsed` | none | `DB_RETRY_MAX_ELAPSED` |
/// | `attempt_timeout` | none | `DB_RETRY_ATTEMPT_TIMEOUT` |
///
/// The default timeline is 0.1, 0.2, 0.4, 0.8 s (each ±10 %), then give up.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    pub(crate) max_attempts: u32,
    pub(crate) initial_delay: Duration,
    pub(crate) max_delay: Duration,
    pub(crate) exponential_base: f64,
    pub(crate) jitter: Jitter,
    pub(crate) max_elapsed: Option<Duration>,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl RetryPolicy {
    /// The documented defaults (see the table on [`RetryPolicy`]).
    pub const DEFAULT: Self = Self {
        max_attempts: 5,
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(30),
        exponential_base: 2.0,
        jitter: Jitter::Proportional(0.1),
        max_elapsed: None,
        attempt_timeout: None,
        seed: None,
    };

    /// A policy that tries once and never retries.
    pub const NO_RETRY: Self = Self {
        max_attempts: 1,
        ..Self::DEFAULT
    };

    /// Starts a builder holding the defaults; finish it with [`RetryConfig::build`].
    pub fn builder() -> RetryConfig {
        RetryConfig::default()
    }

    /// The defaults overridden by any `DB_RETRY_*` environment variable that is set.
    ///
    /// # Errors
    /// An unknown `DB_RETRY_*` name (with the closest known one), or a variable that does not
    /// parse or is out of range, named in the error (see [`RetryConfig::from_env`]).
    pub fn from_env() -> Result<Self, crate::ConfigError> {
        RetryConfig::from_env()?.build()
    }

    /// Tries in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Delay before the second try.
    pub fn initial_delay(&self) -> Duration {
        self.initial_delay
    }

    /// Cap on any one delay, applied after jitter.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// Multiplier per retry (≥ 1).
    pub fn exponential_base(&self) -> f64 {
        self.exponential_base
    }

    /// How delays are randomised.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// Total deadline for all tries and sleeps together, if any.
    pub fn max_elapsed(&self) -> Option<Duration> {
        self.max_elapsed
    }

    /// Bound on a single try, if any.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.attempt_timeout
    }

    /// The same policy with a different total deadline, capped at [`MAX_DURATION`] (this method
    /// cannot fail, and a longer deadline could overflow the clock).
    #[must_use]
    pub fn with_max_elapsed(mut self, max_elapsed: Option<Duration>) -> Self {
        self.max_elapsed = max_elapsed.map(|limit| limit.min(MAX_DURATION));
        self
    }

    /// The same policy with a different bound on each try (`None`: unbounded).
    #[must_use]
    pub fn with_attempt_timeout(mut self, attempt_timeout: Option<Duration>) -> Self {
        self.attempt_timeout = attempt_timeout;
        self
    }

    /// The delay before retry number `retry` (1 = before the second try) without jitter:
    /// `min(max_delay, initial_delay × exponential_base^(retry-1))`. Never panics or overflows;
    /// huge retry numbers saturate at `max_delay`.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let initial = self.initial_delay.as_secs_f64();
        let cap = self.max_delay.as_secs_f64();
        if initial == 0.0 {
            return Duration::ZERO;
        }
        let delay = initial * self.exponential_base.powi(exponent);
        if delay.is_finite() && delay < cap {
            Duration::from_secs_f64(delay)
        } else {
            self.max_delay
        }
    }

    /// The delays this policy sleeps between tries, in order (`max_attempts - 1` of them), with
    /// jitter drawn from a generator seeded by the policy's seed if it has one (see
    /// [`RetryConfig::seed`]), else from the operating system.
    pub fn schedule(&self) -> Schedule<rand::rngs::SmallRng> {
        Schedule::new(self.clone(), self.rng())
    }

    /// Like [`RetryPolicy::schedule`] with the random source given by the caller.
    pub fn schedule_with_rng<R: rand::Rng>(&self, rng: R) -> Schedule<R> {
        Schedule::new(self.clone(), rng)
    }

    pub(crate) fn rng(&self) -> rand::rngs::SmallRng {
        use rand::SeedableRng;
        match self.seed {
            Some(seed) => rand::rngs::SmallRng::seed_from_u64(seed),
            None => rand::rngs::SmallRng::from_os_rng(),
        }
    }
}

#[cfg(test)]
mod tests;

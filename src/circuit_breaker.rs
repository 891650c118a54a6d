//! The optional per-pool circuit breaker's settings. Its state lives in the pool's gate
//! (one state machine with the reconnect schedule), so the two can never disagree.

use std::time::Duration;

use crate::ConfigError;

/// Circuit breaker settings for a pool.
///
/// After `failure_threshold` consecutive transient connect failures the circuit *opens*: for
/// `cool_down`, creating a connection fails at once with
/// [`ErrorKind::CircuitOpen`](crate::ErrorKind::CircuitOpen), without touching the database.
/// Then it is *half-open*: exactly one caller's connect attempt goes through; success closes
/// the circuit, a transient failure opens it for another `cool_down`, a permanent one (the
/// server answered, say with a wrong-password error) closes it and goes to that caller.
/// Permanent errors do not count towards the threshold: they already fail fast.
///
/// ```
/// use std::time::Duration;
/// use dbretry::CircuitBreaker;
///
/// let breaker = CircuitBreaker::new(5, Duration::from_secs(30))?;
/// assert_eq!(breaker.failure_threshold(), 5);
/// assert!(CircuitBreaker::new(0, Duration::from_secs(30)).is_err());
/// # Ok::<(), dbretry::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitBreaker {
    failure_threshold: u32,
    cool_down: Duration,
}

impl CircuitBreaker {
    /// The longest accepted cool-down: a day.
    pub const MAX_COOL_DOWN: Duration = Duration::from_secs(24 * 60 * 60);

    /// A breaker opening after `failure_threshold` consecutive transient failures for
    /// `cool_down`.
    ///
    /// # Errors
    /// A threshold of 0, or a cool-down of 0 or longer than [`CircuitBreaker::MAX_COOL_DOWN`],
    /// named with the accepted range.
    pub fn new(failure_threshold: u32, cool_down: Duration) -> Result<Self, ConfigError> {
        if failure_threshold == 0 {
            return Err(ConfigError::new(
                "`circuit_breaker.failure_threshold`",
                0,
                "an integer ≥ 1",
            ));
        }
        if cool_down.is_zero() || cool_down > Self::MAX_COOL_DOWN {
            return Err(ConfigError::new(
                "`circuit_breaker.cool_down`",
                format!("{cool_down:?}"),
                "a duration > 0 and ≤ 1 day",
            ));
        }
        Ok(Self {
            failure_threshold,
            cool_down,
        })
    }

    /// Consecutive transient failures that open the circuit.
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }

    /// How long the circuit stays open before admitting one probe.
    pub fn cool_down(&self) -> Duration {
        self.cool_down
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 10, item 4: `CircuitBreaker::cool_down` was not validated at all.
    #[test]
    fn breaker_settings_outside_their_range_are_refused_naming_the_setting_and_range() {
        let refused = [
            (0, Duration::from_secs(30), "failure_threshold", "≥ 1"),
            (3, Duration::ZERO, "cool_down", "≤ 1 day"),
            (
                3,
                CircuitBreaker::MAX_COOL_DOWN + Duration::from_nanos(1),
                "cool_down",
                "≤ 1 day",
            ),
            (3, Duration::MAX, "cool_down", "≤ 1 day"),
        ];
        for (threshold, cool_down, setting, range) in refused {
            let message = CircuitBreaker::new(threshold, cool_down)
                .unwrap_err()
                .to_string();
            assert!(message.contains(setting), "{message}");
            assert!(message.contains(range), "{message}");
        }
        let longest = CircuitBreaker::new(1, CircuitBreaker::MAX_COOL_DOWN).unwrap();
        assert_eq!(longest.cool_down(), CircuitBreaker::MAX_COOL_DOWN);
    }
}

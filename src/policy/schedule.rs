use std::time::Duration;

use rand::Rng;

use super::RetryPolicy;

/// The delays a [`RetryPolicy`] sleeps between tries, as an iterator: pure computation, no
/// clock, no sleeping. It yields `max_attempts - 1` delays; [`Schedule::next_delay`] keeps
/// going past that for callers that bound retries by time instead.
///
/// ```
/// use std::time::Duration;
/// use dbretry::RetryPolicy;
///
/// let policy = RetryPolicy::builder().jitter(false).build()?;
/// let delays: Vec<Duration> = policy.schedule().collect();
/// assert_eq!(delays, [100, 200, 400, 800].map(Duration::from_millis));
/// # Ok::<(), dbretry::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Schedule<R> {
    policy: RetryPolicy,
    rng: R,
    retries: u32,
    previous: Duration,
}

impl<R: Rng> Schedule<R> {
    pub(crate) fn new(policy: RetryPolicy, rng: R) -> Self {
        let previous = policy.initial_delay;
        Self {
            policy,
            rng,
            retries: 0,
            previous,
        }
    }

    /// The next delay, ignoring `max_attempts` (saturates at `max_delay`, never panics).
    pub fn next_delay(&mut self) -> Duration {
        self.retries = self.retries.saturating_add(1);
        let p = &self.policy;
        let delay = p.jitter.apply(
            p.base_delay(self.retries),
            self.previous,
            p.initial_delay,
            p.max_delay,
            &mut self.rng,
        );
        self.previous = delay;
        delay
    }

    /// How many delays have been taken so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Starts over from the first delay (after a success, say).
    pub fn reset(&mut self) {
        self.retries = 0;
        self.previous = self.policy.initial_delay;
    }
}

impl<R: Rng> Iterator for Schedule<R> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        (self.retries.saturating_add(1) < self.policy.max_attempts).then(|| self.next_delay())
    }
}

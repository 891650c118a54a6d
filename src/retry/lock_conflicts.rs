//! A policy sized for lock conflicts (SQLite `BUSY`, PostgreSQL serialization failures and
//! deadlocks): conflicts clear in milliseconds, so the first retries come that soon.

use std::time::Duration;

use crate::{Jitter, RetryPolicy};

impl RetryPolicy {
    /// For transactions that conflict with each other: first delays of milliseconds, full
    /// jitter (so writers that collided do not collide again in step), bounded by a deadline
    /// rather than a count.
    ///
    /// | setting | value |
    /// |---|---|
    /// | `max_attempts` | unlimited (`u32::MAX`) |
    /// | `initial_delay` | 2 ms |
    /// | `max_delay` | 100 ms |
    /// | `exponential_base` | 2.0 |
    /// | `jitter` | full: uniform in `[0, delay]` |
    /// | `max_elapsed` | 10 s |
    /// | `attempt_timeout` | none |
    ///
    /// With SQLite, a try also waits for a lock inside SQLite (`busy_timeout`); the
    /// transaction helper bounds that wait by what is left of the try's bound, so waits do not
    /// stack past the deadline.
    pub const LOCK_CONFLICTS: Self = Self {
        max_attempts: u32::MAX,
        initial_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(100),
        exponential_base: 2.0,
        jitter: Jitter::Full,
        max_elapsed: Some(Duration::from_secs(10)),
        attempt_timeout: None,
        seed: None,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_conflict_delays_start_in_milliseconds_and_stay_under_100_ms() {
        let delays: Vec<Duration> = RetryPolicy::LOCK_CONFLICTS.schedule().take(20).collect();
        assert!(delays[0] <= Duration::from_millis(2));
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(100)));
        assert_eq!(
            RetryPolicy::LOCK_CONFLICTS.max_elapsed(),
            Some(Duration::from_secs(10))
        );
    }
}

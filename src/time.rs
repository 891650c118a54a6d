//! Time arithmetic that cannot panic: every accepted setting, however large, yields an
//! instant (clamped far in the future) instead of "overflow when adding duration to instant".

use std::time::Duration;

use tokio::time::Instant;

/// Far enough that nothing waits that long, near enough that adding it never overflows.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

/// `at + delay`, clamped to about 30 years after `at`.
pub(crate) fn later(at: Instant, delay: Duration) -> Instant {
    at.checked_add(delay.min(FAR_FUTURE))
        .or_else(|| at.checked_add(Duration::from_secs(24 * 60 * 60)))
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_delays_clamp_instead_of_panicking() {
        let now = Instant::now();
        assert!(later(now, Duration::MAX) > now);
        assert!(later(now, Duration::from_secs_f64(1e19)) > now);
        assert_eq!(
            later(now, Duration::from_millis(5)),
            now + Duration::from_millis(5)
        );
    }
}

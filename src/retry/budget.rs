//! A retry budget: retries as a share of recent first attempts, with a floor per second, over
//! a sliding window (tower's `TpsBudget` idea). While a database fails, every caller retrying
//! multiplies its load; a budget caps the retries all callers of one [`Retrier`](crate::Retrier)
//! make together, so that a storm of failures costs at most `1 + ratio` times the load of the
//! first attempts.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::ConfigError;

/// The window is kept in this many slots; a slot's counts leave the window together.
const SLOTS: usize = 10;

/// How many retries the callers of a [`Retrier`](crate::Retrier) may make: at most
/// `ratio × first attempts + min_per_second × window` over the last `window`. First attempts
/// are never refused; a refused retry ends its run with
/// [`ErrorKind::BudgetExhausted`](crate::ErrorKind::BudgetExhausted) (the `budget` reason of
/// `dbretry_give_ups_total`) and the last real error.
///
/// Clones share one ledger: give the same budget (or clones of one [`Retrier`](crate::Retrier))
/// to everything that should share it. Time comes from tokio's clock.
///
/// ```
/// use std::time::Duration;
/// use dbretry::{Retrier, RetryBudget, RetryPolicy};
///
/// // Retries may add 10 % to the first attempts of the last 10 s, and 1 per second besides.
/// let budget = RetryBudget::new(0.1, 1, Duration::from_secs(10))?;
/// let retrier = Retrier::new(RetryPolicy::default()).budget(budget);
/// # Ok::<(), dbretry::ConfigError>(())
/// ```
///
/// # Default
///
/// A [`Retrier`](crate::Retrier) has no budget unless given one: every retry its policy allows
/// is made.
#[derive(Clone)]
pub struct RetryBudget {
    ratio: f64,
    min_per_second: u32,
    window: Duration,
    ledger: Arc<Mutex<Ledger>>,
}

impl RetryBudget {
    /// A budget allowing `ratio` retries per first attempt (0.1 = 10 %) plus `min_per_second`
    /// retries per second, counted over the last `window`.
    ///
    /// # Errors
    /// `ratio` not a finite number ≥ 0, or `window` outside 1 s ..= 1 h.
    pub fn new(ratio: f64, min_per_second: u32, window: Duration) -> Result<Self, ConfigError> {
        if !ratio.is_finite() || ratio < 0.0 {
            return Err(ConfigError::new(
                "`retry budget ratio`",
                ratio,
                "a finite number ≥ 0 (0.1 = 10 % of first attempts)",
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&window) {
            return Err(ConfigError::new(
                "`retry budget window`",
                format!("{window:?}"),
                "a duration from 1 s to 1 h",
            ));
        }
        Ok(Self {
            ratio,
            min_per_second,
            window,
            ledger: Arc::new(Mutex::new(Ledger::new(
                window / SLOTS as u32,
                Instant::now(),
            ))),
        })
    }

    /// Retries allowed per first attempt.
    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    /// Retries allowed per second regardless of first attempts.
    pub fn min_per_second(&self) -> u32 {
        self.min_per_second
    }

    /// How far back first attempts and retries are counted.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Records a first attempt.
    pub(crate) fn deposit(&self) {
        self.lock().deposit(Instant::now());
    }

    /// Takes one retry from the budget; false (and nothing taken) when it is spent.
    pub(crate) fn withdraw(&self) -> bool {
        let floor = f64::from(self.min_per_second) * self.window.as_secs_f64();
        self.lock().withdraw(Instant::now(), |deposits| {
            self.ratio * deposits as f64 + floor
        })
    }

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ratio", &self.ratio)
            .field("min_per_second", &self.min_per_second)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// First attempts and retries per slot of the window, the newest slot at `current`.
#[derive(Debug)]
struct Ledger {
    slots: [Slot; SLOTS],
    slot_length: Duration,
    current: usize,
    current_began: Instant,
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    deposits: u64,
    withdrawals: u64,
}

impl Ledger {
    fn new(slot_length: Duration, now: Instant) -> Self {
        Self {
            slots: [Slot::default(); SLOTS],
            slot_length,
            current: 0,
            current_began: now,
        }
    }

    fn deposit(&mut self, now: Instant) {
        self.advance(now);
        self.slots[self.current].deposits += 1;
    }

    /// Takes a retry if the retries in the window stay within `allowed(first attempts)`.
    fn withdraw(&mut self, now: Instant, allowed: impl Fn(u64) -> f64) -> bool {
        self.advance(now);
        let (deposits, withdrawals) = self.slots.iter().fold((0, 0), |(d, w), slot| {
            (d + slot.deposits, w + slot.withdrawals)
        });
        if (withdrawals + 1) as f64 > allowed(deposits) {
            return false;
        }
        self.slots[self.current].withdrawals += 1;
        true
    }

    /// Moves the newest slot up to `now`, emptying the slots that left the window.
    fn advance(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.current_began);
        let steps = (elapsed.as_nanos() / self.slot_length.as_nanos().max(1)) as usize;
        if steps == 0 {
            return;
        }
        for _ in 0..steps.min(SLOTS) {
            self.current = (self.current + 1) % SLOTS;
            self.slots[self.current] = Slot::default();
        }
        self.current_began = crate::time::later(
            self.current_began,
            self.slot_length
                .saturating_mul(u32::try_from(steps).unwrap_or(u32::MAX)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn ten_percent(deposits: u64) -> f64 {
        0.1 * deposits as f64
    }

    #[test]
    fn retries_are_a_share_of_first_attempts() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(SECOND, t0);
        for _ in 0..100 {
            ledger.deposit(t0);
        }
        let granted = (0..50).filter(|_| ledger.withdraw(t0, ten_percent)).count();
        assert_eq!(granted, 10);
        // Each further first attempt earns a tenth of a retry.
        for _ in 0..10 {
            ledger.deposit(t0);
        }
        assert!(ledger.withdraw(t0, ten_percent));
        assert!(!ledger.withdraw(t0, ten_percent));
    }

    #[test]
    fn the_floor_allows_retries_without_first_attempts() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(SECOND, t0);
        // 2 per second over a 10 s window.
        let granted = (0..50).filter(|_| ledger.withdraw(t0, |_| 20.0)).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn counts_leave_the_window_slot_by_slot() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(SECOND, t0);
        for _ in 0..10 {
            ledger.deposit(t0);
        }
        assert!(ledger.withdraw(t0, ten_percent));
        assert!(!ledger.withdraw(t0 + 9 * SECOND, ten_percent));
        // At 10 s the slot of t0 (its deposits and its withdrawal) has left the window.
        assert!(!ledger.withdraw(t0 + 10 * SECOND, ten_percent));
        for _ in 0..10 {
            ledger.deposit(t0 + 10 * SECOND);
        }
        assert!(ledger.withdraw(t0 + 10 * SECOND, ten_percent));
    }

    #[test]
    fn a_long_pause_empties_the_window_without_overflow() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(SECOND, t0);
        ledger.deposit(t0);
        ledger.deposit(t0 + Duration::from_secs(1_000_000_000));
        assert_eq!(
            ledger.slots.iter().map(|slot| slot.deposits).sum::<u64>(),
            1
        );
    }

    #[test]
    fn invalid_settings_are_named() {
        let error = RetryBudget::new(f64::NAN, 1, Duration::from_secs(10)).unwrap_err();
        assert_eq!(error.setting(), "`retry budget ratio`");
        let error = RetryBudget::new(0.1, 1, Duration::from_millis(10)).unwrap_err();
        assert_eq!(error.setting(), "`retry budget window`");
        assert!(RetryBudget::new(0.0, 0, Duration::from_secs(1)).is_ok());
    }
}

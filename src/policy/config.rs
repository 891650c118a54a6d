use std::fmt;
use std::time::Duration;

use super::duration::Shown;
use super::jitter::JitterStrategy;
use super::origin::Origin;
use super::setting::{Field, RawValue, Value};
use super::{Jitter, RetryPolicy};
use crate::ConfigError;

/// Unvalidated retry settings, each remembering where it was set: the builder for
/// [`RetryPolicy`], and the shape of a configuration-file section (serde) with the same names as
/// the builder methods.
///
/// Every setting is optional; an unset one takes the default of the table on [`RetryPolicy`].
/// In files and variables, durations are seconds (`0.1`) or a number with a unit (`"500ms"`,
/// `"2s"`, `"1m"`, `"1h"`), up to [`MAX_DURATION`](crate::policy::MAX_DURATION).
///
/// Layers are combined with [`merge`](RetryConfig::merge), later ones winning, and checked once
/// by [`build`](RetryConfig::build): the usual order is code (the builder) < configuration file
/// < environment.
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
/// let from_file: RetryConfig = toml::from_str("max_attempts = 8\nmax_delay = \"2s\"\nmax_elapsed = 10")?;
/// assert_eq!(from_file.build()?, policy);
/// # Ok(()) }
/// ```
#[derive(Clone, Default, PartialEq)]
#[must_use = "a RetryConfig does nothing until `build()` turns it into a RetryPolicy"]
pub struct RetryConfig {
    settings: [Option<Set>; Field::ALL.len()],
}

/// A setting's value and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Set {
    pub(crate) value: Value,
    pub(crate) origin: Origin,
}

impl RetryConfig {
    /// Sets `max_attempts`: tries in all, the first included.
    pub fn max_attempts(self, attempts: u32) -> Self {
        self.put(Field::MaxAttempts, Value::Count(attempts))
    }

    /// Sets `initial_delay`, the delay before the second try.
    pub fn initial_delay(self, delay: Duration) -> Self {
        self.put(Field::InitialDelay, Value::Duration(delay))
    }

    /// Sets `max_delay`, the cap on any one delay.
    pub fn max_delay(self, delay: Duration) -> Self {
        self.put(Field::MaxDelay, Value::Duration(delay))
    }

    /// Sets `exponential_base`.
    pub fn exponential_base(self, base: f64) -> Self {
        self.put(Field::ExponentialBase, Value::Number(base))
    }

    /// Turns jitter on or off.
    pub fn jitter(self, on: bool) -> Self {
        self.put(Field::Jitter, Value::Bool(on))
    }

    /// Sets `jitter_factor` (proportional jitter).
    pub fn jitter_factor(self, factor: f64) -> Self {
        self.put(Field::JitterFactor, Value::Number(factor))
    }

    /// Sets `jitter_strategy`.
    pub fn jitter_strategy(self, strategy: JitterStrategy) -> Self {
        self.put(Field::JitterStrategy, Value::Strategy(strategy))
    }

    /// Sets `max_elapsed`, the total deadline.
    pub fn max_elapsed(self, deadline: Duration) -> Self {
        self.put(Field::MaxElapsed, Value::Duration(deadline))
    }

    /// Sets `attempt_timeout`, the bound on one try.
    pub fn attempt_timeout(self, timeout: Duration) -> Self {
        self.put(Field::AttemptTimeout, Value::Duration(timeout))
    }

    /// Sets the jitter seed, making every schedule of the policy the same sequence.
    pub fn seed(self, seed: u64) -> Self {
        self.put(Field::Seed, Value::Seed(seed))
    }

    fn put(mut self, field: Field, value: Value) -> Self {
        self.settings[field.index()] = Some(Set {
            value,
            origin: Origin::Builder,
        });
        self
    }

    /// Sets the setting named `key` (a builder name: `max_delay`, `jitter`, …) from a raw value,
    /// remembering `origin` for messages. This is how files, variables and flags are read; the
    /// value is checked at once (its range does not depend on other settings), and again with
    /// the others by [`build`](RetryConfig::build).
    ///
    /// # Errors
    /// An unknown key (naming the closest known one), or a value that does not parse or is out
    /// of range — named as `origin` spells it, the value shown only if it parsed.
    pub fn set(
        &mut self,
        key: &str,
        value: RawValue<'_>,
        origin: Origin,
    ) -> Result<(), ConfigError> {
        let Some(field) = Field::from_key(key) else {
            let known: Vec<&str> = Field::ALL.iter().map(|f| f.key()).collect();
            // A key is named only if it looks like one: a quoted key can hold anything,
            // a misplaced secret included.
            let name = if is_plain_key(key) {
                origin.name(key)
            } else {
                "(not shown: not a plain name)".to_owned()
            };
            let error = ConfigError::unknown("key", key, &known).named(name);
            return Err(match origin.place(key) {
                Some(place) => error.at(place),
                None => error,
            });
        };
        let value = field.parse(value, &origin)?;
        self.settings[field.index()] = Some(Set { value, origin });
        Ok(())
    }

    /// Each setting of `other` that is set replaces the one here: `code.merge(file).merge(env)`.
    pub fn merge(mut self, other: RetryConfig) -> Self {
        for (mine, theirs) in self.settings.iter_mut().zip(other.settings) {
            if theirs.is_some() {
                *mine = theirs;
            }
        }
        self
    }

    /// Marks every setting made so far as a default: one that gives way, instead of failing,
    /// when a later layer sets a conflicting value. Today that is the pair `initial_delay` ≤
    /// `max_delay`: a default `max_delay` rises to a larger `initial_delay` set elsewhere, a
    /// default `initial_delay` falls to a smaller `max_delay`. The documented defaults behave
    /// this way already.
    pub fn as_defaults(mut self) -> Self {
        for set in self.settings.iter_mut().flatten() {
            set.origin = Origin::Default;
        }
        self
    }

    pub(crate) fn get(&self, field: Field) -> Option<&Set> {
        self.settings[field.index()].as_ref()
    }

    /// Validates the settings together and builds the policy.
    ///
    /// Each setting is checked in the order of the table on [`RetryPolicy`], then their
    /// relation: `max_delay` ≥ `initial_delay`. An unset setting does not conflict: the default
    /// `max_delay` (30 s) rises to a larger `initial_delay`, the default `initial_delay` (0.1 s)
    /// falls to a smaller `max_delay`; two conflicting settings that were both set are an error
    /// naming both and where each came from.
    ///
    /// # Errors
    /// The first invalid setting, named as it was set (builder method, `file:line` key,
    /// `DB_RETRY_*` variable, flag), with the accepted range: zero attempts, a negative,
    /// non-finite or too long duration (over a year), a zero deadline or attempt timeout,
    /// `exponential_base` below 1, `jitter_factor` outside `[0, 1]`, `max_delay` below
    /// `initial_delay`.
    pub fn build(&self) -> Result<RetryPolicy, ConfigError> {
        for field in Field::ALL {
            if let Some(set) = self.get(field) {
                field.check(set.value, &set.origin)?;
            }
        }
        let d = RetryPolicy::DEFAULT;
        let (initial_delay, max_delay) = self.delays()?;
        let jitter = match (self.boolean(Field::Jitter), self.strategy()) {
            (Some(false), _) => Jitter::None,
            (_, None | Some(JitterStrategy::Proportional)) => {
                Jitter::Proportional(self.number(Field::JitterFactor).unwrap_or(0.1))
            }
            (_, Some(JitterStrategy::Full)) => Jitter::Full,
            (_, Some(JitterStrategy::Equal)) => Jitter::Equal,
            (_, Some(JitterStrategy::Decorrelated)) => Jitter::Decorrelated,
        };
        Ok(RetryPolicy {
            max_attempts: match self.get(Field::MaxAttempts).map(|s| s.value) {
                Some(Value::Count(n)) => n,
                _ => d.max_attempts,
            },
            initial_delay,
            max_delay,
            exponential_base: self
                .number(Field::ExponentialBase)
                .unwrap_or(d.exponential_base),
            jitter,
            max_elapsed: self.duration(Field::MaxElapsed),
            attempt_timeout: self.duration(Field::AttemptTimeout),
            seed: match self.get(Field::Seed).map(|s| s.value) {
                Some(Value::Seed(seed)) => Some(seed),
                _ => None,
            },
        })
    }

    /// `initial_delay` and `max_delay`, reconciled as [`build`](RetryConfig::build) describes.
    fn delays(&self) -> Result<(Duration, Duration), ConfigError> {
        let d = RetryPolicy::DEFAULT;
        let initial = self
            .get(Field::InitialDelay)
            .map(|s| (self.delay(s), &s.origin));
        let max = self
            .get(Field::MaxDelay)
            .map(|s| (self.delay(s), &s.origin));
        let (initial, max) = match (initial, max) {
            (None, None) => return Ok((d.initial_delay, d.max_delay)),
            (Some((i, _)), None) => return Ok((i, d.max_delay.max(i))),
            (None, Some((m, _))) => return Ok((d.initial_delay.min(m), m)),
            (Some(initial), Some(max)) => (initial, max),
        };
        let ((i, i_origin), (m, m_origin)) = (initial, max);
        if i <= m {
            return Ok((i, m));
        }
        match (i_origin == &Origin::Default, m_origin == &Origin::Default) {
            (false, true) | (true, true) => return Ok((i, i)),
            (true, false) => return Ok((m, m)),
            (false, false) => {}
        }
        let (field, value, origin, expected) = if i_origin.rank() > m_origin.rank() {
            let other = format!(
                "a duration ≤ the maximum delay, {} from {}",
                Shown(m),
                m_origin.describe("max_delay")
            );
            ("initial_delay", i, i_origin, other)
        } else {
            let other = format!(
                "a duration ≥ the initial delay, {} from {}",
                Shown(i),
                i_origin.describe("initial_delay")
            );
            ("max_delay", m, m_origin, other)
        };
        let error = ConfigError::new(origin.name(field), Shown(value), expected);
        Err(match origin.place(field) {
            Some(place) => error.at(place),
            None => error,
        })
    }

    fn delay(&self, set: &Set) -> Duration {
        match set.value {
            Value::Duration(d) => d,
            _ => Duration::ZERO,
        }
    }

    fn duration(&self, field: Field) -> Option<Duration> {
        match self.get(field)?.value {
            Value::Duration(d) => Some(d),
            _ => None,
        }
    }

    fn number(&self, field: Field) -> Option<f64> {
        match self.get(field)?.value {
            Value::Number(x) => Some(x),
            _ => None,
        }
    }

    fn boolean(&self, field: Field) -> Option<bool> {
        match self.get(field)?.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    fn strategy(&self) -> Option<JitterStrategy> {
        match self.get(Field::JitterStrategy)?.value {
            Value::Strategy(s) => Some(s),
            _ => None,
        }
    }
}

/// A bare TOML key: letters, digits, `_` and `-` (and `.` between parts).
fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

impl fmt::Debug for RetryConfig {
    /// The settings that are set, each with where it came from:
    /// `RetryConfig { max_attempts: 3 (RetryConfig::max_attempts), max_delay: 2 s (DB_RETRY_MAX_DELAY) }`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("RetryConfig");
        for field in Field::ALL {
            if let Some(set) = self.get(field) {
                let from = set.origin.source(field.key());
                debug.field(field.key(), &format_args!("{} ({from})", set.value));
            }
        }
        debug.finish()
    }
}

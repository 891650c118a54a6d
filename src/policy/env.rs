//! `DB_RETRY_*` environment variables.

use super::RetryConfig;
use super::jitter::JitterStrategy;
use crate::ConfigError;

/// The prefix of every variable read by [`RetryConfig::from_env`].
pub const ENV_PREFIX: &str = "DB_RETRY_";

impl RetryConfig {
    /// Reads the `DB_RETRY_*` variables that are set (`DB_RETRY_MAX_ATTEMPTS`,
    /// `DB_RETRY_INITIAL_DELAY`, `DB_RETRY_MAX_DELAY`, `DB_RETRY_EXPONENTIAL_BASE`,
    /// `DB_RETRY_JITTER`, `DB_RETRY_JITTER_FACTOR`, `DB_RETRY_JITTER_STRATEGY`,
    /// `DB_RETRY_MAX_ELAPSED`, `DB_RETRY_ATTEMPT_TIMEOUT`, `DB_RETRY_SEED`) and validates them
    /// together with the defaults. Durations are seconds (`0.1`); booleans are
    /// `true`/`false`/`1`/`0`/`yes`/`no`/`on`/`off`.
    ///
    /// # Errors
    /// The first variable that does not parse or is out of range, named with its value and the
    /// accepted range.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`RetryConfig::from_env`], reading variables through `lookup` (a map in tests, a
    /// secrets store, …) instead of the process environment.
    ///
    /// # Errors
    /// As [`RetryConfig::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |field: &'static str| {
            let var = env_name(field);
            lookup(&var).map(|raw| (var, raw))
        };
        let config = Self {
            max_attempts: parse(get("max_attempts"), "an integer ≥ 1", |s| s.parse().ok())?,
            initial_delay: parse(get("initial_delay"), SECONDS, number)?,
            max_delay: parse(get("max_delay"), SECONDS, number)?,
            exponential_base: parse(get("exponential_base"), "a finite number ≥ 1", number)?,
            jitter: parse(get("jitter"), "true or false", boolean)?,
            jitter_factor: parse(get("jitter_factor"), "a number in [0, 1]", number)?,
            jitter_strategy: parse(
                get("jitter_strategy"),
                JitterStrategy::ACCEPTED,
                JitterStrategy::parse,
            )?,
            max_elapsed: parse(get("max_elapsed"), SECONDS, number)?,
            attempt_timeout: parse(get("attempt_timeout"), SECONDS, number)?,
            seed: parse(get("seed"), "an unsigned integer", |s| s.parse().ok())?,
        };
        config.validate(&env_name)?;
        Ok(config)
    }
}

const SECONDS: &str = "a number of seconds";

fn env_name(field: &'static str) -> String {
    format!("{ENV_PREFIX}{}", field.to_ascii_uppercase())
}

fn parse<T>(
    var: Option<(String, String)>,
    expected: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, ConfigError> {
    match var {
        None => Ok(None),
        Some((name, raw)) => match parse(raw.trim()) {
            Some(value) => Ok(Some(value)),
            None => Err(ConfigError::new(name, format!("{raw:?}"), expected)),
        },
    }
}

fn number(text: &str) -> Option<f64> {
    text.parse().ok()
}

fn boolean(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

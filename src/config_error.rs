//! Invalid configuration, reported with the setting's name and what it accepts.

use std::fmt::Display;

/// A setting that is out of range or does not parse. The message names the setting (the
/// builder field, config key or `DB_RETRY_*` variable it came from), the value given and the
/// accepted range, e.g. ``invalid `exponential_base` = 0.5: expected a finite number ≥ 1``.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {setting} = {value}: expected {expected}")]
pub struct ConfigError {
    setting: String,
    value: String,
    expected: String,
}

impl ConfigError {
    pub(crate) fn new(
        setting: impl Into<String>,
        value: impl Display,
        expected: impl Into<String>,
    ) -> Self {
        Self {
            setting: setting.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    /// The setting's name as the user wrote it: a field (`` `max_delay` ``) or an environment
    /// variable (`DB_RETRY_MAX_DELAY`).
    pub fn setting(&self) -> &str {
        &self.setting
    }

    /// The rejected value, as text.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// What the setting accepts.
    pub fn expected(&self) -> &str {
        &self.expected
    }
}

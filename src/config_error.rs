//! Invalid configuration, reported with the setting's name, where its value came from and what
//! it accepts — never with a secret or a raw line of input.

use std::fmt::{self, Display};

/// A setting that is out of range, does not parse, or is not known.
///
/// The message names the setting as the user wrote it (the builder field, the config-file key
/// with its `file:line`, the `DB_RETRY_*` variable or the command-line flag), the value when it
/// parsed (a number, a duration: never raw text, which could be a misplaced secret), what is
/// wrong and the accepted range:
///
/// ```text
/// invalid DB_RETRY_MAX_DELAY = 1e20 s: expected a duration from 0 to 1 year (31536000 s): …
/// invalid `retry.max_delay` = 1 s (dbretry.toml:4): expected a duration ≥ DB_RETRY_INITIAL_DELAY (2 s)
/// invalid `max_attempts` = 0 (RetryConfig::max_attempts): expected an integer ≥ 1
/// unknown variable DB_RETRY_MAX_ATTEMPT: did you mean DB_RETRY_MAX_ATTEMPTS?
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(Box<Inner>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Inner {
    setting: String,
    value: Option<String>,
    place: Option<String>,
    problem: Option<String>,
    expected: String,
    closest: Option<String>,
}

impl ConfigError {
    /// A setting whose value is out of range: ``invalid {setting} = {value}: expected {expected}``.
    pub(crate) fn new(
        setting: impl Into<String>,
        value: impl Display,
        expected: impl Into<String>,
    ) -> Self {
        Self(Box::new(Inner {
            setting: setting.into(),
            value: Some(value.to_string()),
            place: None,
            problem: None,
            expected: expected.into(),
            closest: None,
        }))
    }

    /// A setting whose value is not shown (it did not parse, or it may hold a secret):
    /// ``invalid {setting}: {problem}; expected {expected}``.
    pub(crate) fn unshown(
        setting: impl Into<String>,
        problem: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        Self(Box::new(Inner {
            setting: setting.into(),
            value: None,
            place: None,
            problem: Some(problem.into()),
            expected: expected.into(),
            closest: None,
        }))
    }

    /// A name that is not a setting (`kind` = `variable`, `key`): the message names the
    /// closest known one.
    pub(crate) fn unknown(kind: &str, name: &str, known: &[&str]) -> Self {
        let closest = crate::policy::closest(name, known).map(str::to_owned);
        Self(Box::new(Inner {
            setting: name.to_owned(),
            value: None,
            place: None,
            problem: Some(format!("unknown {kind}")),
            expected: known.join(", "),
            closest,
        }))
    }

    /// The same error, saying where the value came from (`dbretry.toml:4`,
    /// `RetryConfig::max_delay`, …); replaces any place given before.
    #[must_use]
    pub fn at(mut self, place: impl Into<String>) -> Self {
        self.0.place = Some(place.into());
        self
    }

    /// The same error under another name for the setting (a flag, a file key, a variable).
    #[must_use]
    pub fn named(mut self, setting: impl Into<String>) -> Self {
        self.0.setting = setting.into();
        self
    }

    /// The setting's name as the user wrote it: a field (`` `max_delay` ``), a config-file
    /// key (`` `retry.max_delay` ``), an environment variable (`DB_RETRY_MAX_DELAY`) or a
    /// flag (`--timeout`).
    pub fn setting(&self) -> &str {
        &self.0.setting
    }

    /// The rejected value, when it is shown: only values that parsed (numbers, durations), never
    /// raw text.
    pub fn value(&self) -> Option<&str> {
        self.0.value.as_deref()
    }

    /// Where the value came from when the setting's name does not say it: `dbretry.toml:4`,
    /// `RetryConfig::max_delay`, `configuration`.
    pub fn place(&self) -> Option<&str> {
        self.0.place.as_deref()
    }

    /// What is wrong beyond the range, when the value is not shown: `not a duration`,
    /// `unknown variable`, …
    pub fn problem(&self) -> Option<&str> {
        self.0.problem.as_deref()
    }

    /// What the setting accepts (for an unknown name: the known names).
    pub fn expected(&self) -> &str {
        &self.0.expected
    }

    /// For an unknown name, the closest known one.
    pub fn closest(&self) -> Option<&str> {
        self.0.closest.as_deref()
    }
}

impl Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let this = &self.0;
        if let Some(closest) = &this.closest {
            let problem = self.0.problem.as_deref().unwrap_or("unknown name");
            write!(f, "{problem} {}", this.setting)?;
            if let Some(place) = &this.place {
                write!(f, " ({place})")?;
            }
            return write!(f, ": did you mean {closest}? (known: {})", this.expected);
        }
        write!(f, "invalid {}", this.setting)?;
        if let Some(value) = &this.value {
            write!(f, " = {value}")?;
        }
        if let Some(place) = &this.place {
            write!(f, " ({place})")?;
        }
        f.write_str(": ")?;
        if let Some(problem) = &this.problem {
            write!(f, "{problem}; ")?;
        }
        write!(f, "expected {}", this.expected)
    }
}

impl std::error::Error for ConfigError {}

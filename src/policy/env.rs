//! `DB_RETRY_*` environment variables.

use std::ffi::OsString;

use super::RetryConfig;
use super::origin::Origin;
use super::setting::{Field, RawValue};
use crate::ConfigError;

/// The prefix of every variable read by [`RetryConfig::from_env`].
pub const ENV_PREFIX: &str = "DB_RETRY_";

impl RetryConfig {
    /// Reads the `DB_RETRY_*` variables that are set (`DB_RETRY_MAX_ATTEMPTS`,
    /// `DB_RETRY_INITIAL_DELAY`, `DB_RETRY_MAX_DELAY`, `DB_RETRY_EXPONENTIAL_BASE`,
    /// `DB_RETRY_JITTER`, `DB_RETRY_JITTER_FACTOR`, `DB_RETRY_JITTER_STRATEGY`,
    /// `DB_RETRY_MAX_ELAPSED`, `DB_RETRY_ATTEMPT_TIMEOUT`, `DB_RETRY_SEED`). Durations are
    /// seconds (`0.1`) or a number with a unit (`500ms`, `2s`, `1m`, `1h`); booleans are
    /// `true`/`false`/`1`/`0`/`yes`/`no`/`on`/`off`.
    ///
    /// Each value is checked on its own here; how the values relate to each other and to the
    /// other layers is checked by [`build`](RetryConfig::build), once they are merged.
    ///
    /// # Errors
    /// A variable whose name starts with `DB_RETRY_` (in any case) but is not one of these,
    /// naming the closest known name; a value that does not parse or is out of range, named
    /// with the accepted range. Variables are read in name order, so the error is the same on
    /// every run.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars_os())
    }

    /// A configuration file's `retry` section with each `DB_RETRY_*` variable that is set
    /// taking its place: the deployment's word over the file's, on every `Config` path.
    #[cfg_attr(
        not(all(feature = "deadpool", any(feature = "postgres", feature = "sqlite"))),
        allow(dead_code)
    )]
    pub(crate) fn section_under_env(section: Option<&RetryConfig>) -> Result<Self, ConfigError> {
        Ok(section
            .cloned()
            .unwrap_or_default()
            .merge(Self::from_env()?))
    }

    /// Like [`RetryConfig::from_env`], from the given `(name, value)` pairs instead of the
    /// process environment; names without the `DB_RETRY_` prefix are ignored.
    ///
    /// # Errors
    /// As [`RetryConfig::from_env`].
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, ConfigError>
    where
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let mut ours: Vec<(String, OsString)> = vars
            .into_iter()
            .filter_map(|(name, value)| {
                let name = name.into().into_string().ok()?;
                has_prefix(&name).then(|| (name, value.into()))
            })
            .collect();
        ours.sort();
        let known = known_names();
        let mut config = Self::default();
        for (name, value) in ours {
            let Some(field) = Field::ALL.into_iter().find(|f| env_name(*f) == name) else {
                let known: Vec<&str> = known.iter().map(String::as_str).collect();
                return Err(ConfigError::unknown("variable", &name, &known));
            };
            let origin = Origin::Env(name);
            let Some(text) = value.to_str() else {
                return Err(ConfigError::unshown(
                    origin.name(field.key()),
                    "not valid UTF-8",
                    field.expected(),
                ));
            };
            config.set(field.key(), RawValue::Text(text), origin)?;
        }
        Ok(config)
    }

    /// Like [`RetryConfig::from_env`], reading the known variables through `lookup` (a secrets
    /// store, …) instead of the process environment. Unknown names cannot be detected this way:
    /// prefer [`RetryConfig::from_vars`] when the names can be listed.
    ///
    /// # Errors
    /// As [`RetryConfig::from_env`], except for unknown names.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        for field in Field::ALL {
            let name = env_name(field);
            if let Some(text) = lookup(&name) {
                config.set(field.key(), RawValue::Text(&text), Origin::Env(name))?;
            }
        }
        Ok(config)
    }
}

fn has_prefix(name: &str) -> bool {
    name.get(..ENV_PREFIX.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(ENV_PREFIX))
}

fn env_name(field: Field) -> String {
    format!("{ENV_PREFIX}{}", field.key().to_ascii_uppercase())
}

fn known_names() -> Vec<String> {
    Field::ALL.into_iter().map(env_name).collect()
}

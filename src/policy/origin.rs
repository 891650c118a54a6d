//! Where a setting's value came from, so that an error can point at it.

use std::fmt;

/// Where a [`RetryConfig`](crate::RetryConfig) setting was set. Errors name it; the layers rank
/// in this order (a later layer overrides an earlier one when [merged](crate::RetryConfig::merge)
/// in that order): defaults, code (builder methods), configuration (a file, serde), environment
/// (`DB_RETRY_*`), command-line flags.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// A default: a program's own (see [`RetryConfig::as_defaults`](crate::RetryConfig::as_defaults)).
    /// A default gives way to a conflicting setting from anywhere else instead of failing.
    Default,
    /// A builder method in code (`RetryConfig::max_delay`).
    Builder,
    /// A deserialized configuration section (serde), location unknown.
    Deserialized,
    /// A key of a configuration file.
    File {
        /// The file, as given.
        path: String,
        /// The line, from 1.
        line: usize,
        /// The key's full name (`retry.max_delay`).
        key: String,
    },
    /// An environment variable (`DB_RETRY_MAX_DELAY`).
    Env(String),
    /// A command-line flag (`--timeout`).
    Flag(String),
}

impl Origin {
    /// A configuration-file key at `path:line`.
    pub fn file(path: impl fmt::Display, line: usize, key: impl Into<String>) -> Self {
        Self::File {
            path: path.to_string(),
            line,
            key: key.into(),
        }
    }

    /// The setting as this origin spells it: `DB_RETRY_MAX_DELAY`, `--timeout`,
    /// `` `retry.max_delay` ``, `` `max_delay` ``.
    pub(crate) fn name(&self, field: &str) -> String {
        match self {
            Self::Env(var) | Self::Flag(var) => var.clone(),
            Self::File { key, .. } => format!("`{key}`"),
            Self::Default | Self::Builder | Self::Deserialized => format!("`{field}`"),
        }
    }

    /// Where, when the name alone does not say it: `dbretry.toml:4`, `RetryConfig::max_delay`.
    pub(crate) fn place(&self, field: &str) -> Option<String> {
        match self {
            Self::Env(_) | Self::Flag(_) => None,
            Self::File { path, line, .. } => Some(format!("{path}:{line}")),
            Self::Builder => Some(format!("RetryConfig::{field}")),
            Self::Deserialized => Some("configuration".to_owned()),
            Self::Default => Some("default".to_owned()),
        }
    }

    /// The setting's name and place together: `DB_RETRY_INITIAL_DELAY`,
    /// `` `retry.initial_delay` (dbretry.toml:3) ``.
    pub(crate) fn describe(&self, field: &str) -> String {
        match self.place(field) {
            Some(place) => format!("{} ({place})", self.name(field)),
            None => self.name(field),
        }
    }

    /// Where, in the fewest words: `DB_RETRY_MAX_DELAY`, `--timeout`, `dbretry.toml:4`,
    /// `RetryConfig::max_delay`, `default`.
    pub(crate) fn source(&self, field: &str) -> String {
        self.place(field).unwrap_or_else(|| self.name(field))
    }

    /// Precedence: a conflict between two settings is blamed on the one from the later layer.
    pub(crate) fn rank(&self) -> u8 {
        match self {
            Self::Default => 0,
            Self::Builder => 1,
            Self::Deserialized | Self::File { .. } => 2,
            Self::Env(_) => 3,
            Self::Flag(_) => 4,
        }
    }
}

//! Which databases to check, from --url / $DATABASE_URL or a config file.

use std::collections::BTreeMap;

use dbretry::{RetryConfig, RetryPolicy};
use serde::Deserialize;

use crate::args::Check;

/// A database to check.
pub(crate) struct Target {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) policy: RetryPolicy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    retry: RetryConfig,
    #[serde(default)]
    databases: BTreeMap<String, DatabaseEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseEntry {
    url: String,
}

pub(crate) fn resolve(check: &Check) -> Result<Vec<Target>, String> {
    if !(check.timeout.is_finite() && check.timeout > 0.0) {
        return Err(format!(
            "invalid --timeout {}: expected a number of seconds > 0",
            check.timeout
        ));
    }
    let env_retry = RetryConfig::from_env().map_err(|e| e.to_string())?;
    let Some(path) = &check.config else {
        let url = match &check.url {
            Some(url) => url.clone(),
            None => std::env::var("DATABASE_URL")
                .map_err(|_| "no database: give --url, --config or set DATABASE_URL".to_owned())?,
        };
        if check.all || check.database.is_some() {
            return Err("--database and --all need --config".to_owned());
        }
        let policy = cli_defaults()
            .merge(env_retry)
            .build()
            .map_err(|e| e.to_string())?;
        return Ok(vec![Target {
            name: "default".to_owned(),
            url,
            policy,
        }]);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: ConfigFile =
        toml::from_str(&text).map_err(|e| format!("invalid {}: {e}", path.display()))?;
    let policy = cli_defaults()
        .merge(file.retry)
        .merge(env_retry)
        .build()
        .map_err(|e| e.to_string())?;
    let chosen: Vec<(&String, &DatabaseEntry)> = if check.all {
        file.databases.iter().collect()
    } else {
        let name = match &check.database {
            Some(name) => name.clone(),
            None if file.databases.len() == 1 => {
                file.databases.keys().next().cloned().unwrap_or_default()
            }
            None => "default".to_owned(),
        };
        let entry = file.databases.get_key_value(&name).ok_or_else(|| {
            let known: Vec<_> = file.databases.keys().map(String::as_str).collect();
            format!(
                "no database {name:?} in {} (it has: {})",
                path.display(),
                known.join(", ")
            )
        })?;
        vec![entry]
    };
    if chosen.is_empty() {
        return Err(format!("{} names no databases", path.display()));
    }
    Ok(chosen
        .into_iter()
        .map(|(name, entry)| Target {
            name: name.clone(),
            url: entry.url.clone(),
            policy: policy.clone(),
        })
        .collect())
}

/// Waiting for a database to come up wants short steps: one second at most between tries
/// unless the config or `DB_RETRY_MAX_DELAY` says otherwise.
fn cli_defaults() -> RetryConfig {
    RetryConfig::default().max_delay(std::time::Duration::from_secs(1))
}

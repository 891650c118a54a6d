//! Which databases to check (from --url, $DATABASE_URL or a config file) and the retry policy,
//! merged from every layer and validated once.

use std::time::Duration;

use dbretry::{Origin, RawValue, RetryConfig, RetryPolicy};

use crate::args::Check;
use crate::config_file::{self, ConfigFile};

/// A database to check.
pub(crate) struct Target {
    pub(crate) name: String,
    pub(crate) url: String,
    /// Where the connection string came from: `--url`, `DATABASE_URL`, `dbretry.toml:7`.
    pub(crate) from: String,
}

/// The databases to check and the policy to check them with.
pub(crate) struct Plan {
    pub(crate) targets: Vec<Target>,
    /// The settings in effect, each with where it came from (printed with `-v`).
    pub(crate) settings: RetryConfig,
    pub(crate) policy: RetryPolicy,
}

/// The timeout when `--timeout` is not given (and, with `--wait`, the policy sets no
/// `max_elapsed`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) fn resolve(check: &Check) -> Result<Plan, String> {
    let env = RetryConfig::from_env().map_err(|e| e.to_string())?;
    let (targets, file_retry) = match &check.config {
        None => (vec![from_url(check)?], RetryConfig::default()),
        Some(path) => {
            let shown = config_file::shown_path(path, "--config");
            let text =
                std::fs::read_to_string(path).map_err(|e| config_file::read_error(&shown, &e))?;
            let file = config_file::parse(&shown, &text)?;
            let targets = choose(check, &shown, &file)?;
            (targets, file.retry)
        }
    };
    let (settings, policy) = policy(check, file_retry, env)?;
    Ok(Plan {
        targets,
        settings,
        policy,
    })
}

fn from_url(check: &Check) -> Result<Target, String> {
    if check.all || check.database.is_some() {
        return Err("--database and --all need --config".to_owned());
    }
    let (url, from) = match &check.url {
        Some(url) => (url.clone(), "--url"),
        None => match std::env::var("DATABASE_URL") {
            Ok(url) => (url, "DATABASE_URL"),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err("DATABASE_URL is not valid UTF-8".to_owned());
            }
            Err(std::env::VarError::NotPresent) => {
                return Err("no database: give --url, --config or set DATABASE_URL".to_owned());
            }
        },
    };
    Ok(Target {
        name: "default".to_owned(),
        url,
        from: from.to_owned(),
    })
}

fn choose(check: &Check, path: &str, file: &ConfigFile) -> Result<Vec<Target>, String> {
    if file.databases.is_empty() {
        return Err(format!("{path} names no databases"));
    }
    let chosen: Vec<_> = if check.all {
        file.databases.iter().collect()
    } else {
        let name = match &check.database {
            Some(name) => name.as_str(),
            None if file.databases.len() == 1 => file.databases[0].name.as_str(),
            None => "default",
        };
        let entry = file.databases.iter().find(|db| db.name == name);
        let entry = entry.ok_or_else(|| {
            let known: Vec<_> = file.databases.iter().map(|db| db.name.as_str()).collect();
            format!(
                "no database {} in {path} (it has: {})",
                config_file::shown_name(name),
                known.join(", ")
            )
        })?;
        vec![entry]
    };
    Ok(chosen
        .into_iter()
        .map(|db| Target {
            name: db.name.clone(),
            url: db.url.clone(),
            from: db.at.clone(),
        })
        .collect())
}

/// The layers, lowest first: the CLI's defaults, the config file's `[retry]`, the `DB_RETRY_*`
/// variables, then `--timeout`; validated once, together.
///
/// With `--wait` the merged policy is used whole: every setting counts (`max_attempts`,
/// jitter, `max_elapsed`, …), and `--timeout` sets `max_elapsed`. Without `--wait` there is one
/// try, bounded by `--timeout`; the retry settings are still checked, so a bad one fails
/// the same way in both modes.
fn policy(
    check: &Check,
    file: RetryConfig,
    env: RetryConfig,
) -> Result<(RetryConfig, RetryPolicy), String> {
    // Waiting for a database to come up wants short steps: at most a second between tries, and
    // tries until the deadline rather than a count.
    let defaults = RetryConfig::default()
        .max_attempts(u32::MAX)
        .max_delay(Duration::from_secs(1))
        .attempt_timeout(Duration::from_secs(5))
        .max_elapsed(DEFAULT_TIMEOUT)
        .as_defaults();
    let setting = if check.wait {
        "max_elapsed"
    } else {
        "attempt_timeout"
    };
    let mut flags = RetryConfig::default();
    if let Some(timeout) = &check.timeout {
        let origin = Origin::Flag("--timeout".to_owned());
        flags
            .set(setting, RawValue::Text(timeout), origin)
            .map_err(|e| e.to_string())?;
    }
    let merged = defaults.merge(file).merge(env);
    let settings = if check.wait {
        merged.merge(flags)
    } else {
        merged.build().map_err(|e| e.to_string())?;
        RetryConfig::default()
            .max_attempts(1)
            .attempt_timeout(DEFAULT_TIMEOUT)
            .as_defaults()
            .merge(flags)
    };
    let policy = settings.build().map_err(|e| e.to_string())?;
    Ok((settings, policy))
}

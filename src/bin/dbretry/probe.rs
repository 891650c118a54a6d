//! One database checked: connect, `SELECT 1`, retried under the policy with `--wait`.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dbretry::{Error, ErrorChain, ErrorKind, Phase, Retrier, RetryPolicy};
use serde_json::{Value, json};

use crate::sqlite_codes;
use crate::targets::Target;
use crate::tls::Tls;

pub(crate) const ACCEPTING: u8 = 0;
pub(crate) const REJECTING: u8 = 1;
pub(crate) const NO_RESPONSE: u8 = 2;
pub(crate) const BAD_PARAMETERS: u8 = 3;

/// What checking one database found.
pub(crate) struct Outcome {
    name: String,
    target: String,
    pub(crate) exit_code: u8,
    attempts: u32,
    elapsed: Duration,
    error: Option<Error>,
    problem: Option<String>,
}

enum Database {
    Postgres(Box<tokio_postgres::Config>),
    Sqlite(PathBuf),
}

pub(crate) async fn check(target: &Target, policy: &RetryPolicy, tls: &Tls) -> Outcome {
    let mut outcome = Outcome {
        name: target.name.clone(),
        target: dbretry::redact_url(&target.url),
        exit_code: ACCEPTING,
        attempts: 0,
        elapsed: Duration::ZERO,
        error: None,
        problem: None,
    };
    let database = parse(target).and_then(|database| {
        if let Database::Postgres(config) = &database {
            tls.check_supports(config)?;
        }
        Ok(database)
    });
    let database = match database {
        Ok(database) => database,
        Err(problem) => {
            outcome.exit_code = BAD_PARAMETERS;
            outcome.problem = Some(problem);
            return outcome;
        }
    };
    let succeeded_after = Arc::new(AtomicU32::new(0));
    let attempts = succeeded_after.clone();
    let retrier = Retrier::new(policy.clone())
        .phase(Phase::Connect)
        .name(&target.name)
        .on_success(move |event| attempts.store(event.attempts, Ordering::Relaxed));
    let started = tokio::time::Instant::now();
    let result = match &database {
        Database::Postgres(config) => retrier.run_boxed(|| tls.ping(config)).await,
        Database::Sqlite(path) => retrier.run_boxed(|| ping_sqlite(path.clone())).await,
    };
    outcome.elapsed = started.elapsed();
    match result {
        Ok(()) => outcome.attempts = succeeded_after.load(Ordering::Relaxed),
        Err(error) => {
            outcome.attempts = error.attempts();
            outcome.exit_code = exit_code(&error);
            outcome.error = Some(error);
        }
    }
    outcome
}

fn exit_code(error: &Error) -> u8 {
    match error.kind() {
        ErrorKind::Connection | ErrorKind::Query => BAD_PARAMETERS,
        _ if answered(error) => REJECTING,
        _ => NO_RESPONSE,
    }
}

/// The server answered (with a SQLSTATE, or SQLite with a result code) but refused.
fn answered(error: &Error) -> bool {
    error.sqlstate().is_some() || error.sqlite_code().is_some()
}

/// The connection string, parsed; errors say what is wrong and where the string came from,
/// never the string itself.
fn parse(target: &Target) -> Result<Database, String> {
    let url = target.url.as_str();
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(format!("no path in the SQLite URL ({})", target.from));
        }
        return Ok(Database::Sqlite(PathBuf::from(path)));
    }
    if let Some((scheme, _)) = url.split_once("://") {
        let lower = scheme.to_ascii_lowercase();
        if lower != "postgres" && lower != "postgresql" {
            let named = scheme.len() <= 20
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            let scheme = if named { scheme } else { "?" };
            return Err(format!(
                "unsupported URL scheme {scheme}:// ({}): expected postgres://…, \
                 postgresql://…, key=value pairs or sqlite:path",
                target.from
            ));
        }
    }
    dbretry::parse_postgres_config(url)
        .map(|config| Database::Postgres(Box::new(config)))
        .map_err(|error| error.at(target.from.clone()).to_string())
}

/// Opens the SQLite file (never creating it) and runs `SELECT 1` on a blocking thread. The
/// driver's error stays the cause, so its result code is read as usual; a blocking task that
/// did not finish (cancelled at shutdown, or a panic in the driver) is an error like another.
async fn ping_sqlite(path: PathBuf) -> Result<(), Box<dyn StdError + Send + Sync>> {
    let task = tokio::task::spawn_blocking(move || {
        // A health check must not create the database it checks.
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_URI
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(path, flags)?;
        conn.query_row("SELECT 1", [], |_| Ok(()))
    });
    match task.await {
        Ok(result) => result.map_err(Into::into),
        Err(join_error) => Err(format!("the SQLite check did not finish: {join_error}").into()),
    }
}

impl Outcome {
    fn status(&self) -> &'static str {
        match self.exit_code {
            ACCEPTING => "accepting connections",
            REJECTING => "rejecting connections",
            NO_RESPONSE => "no response",
            _ => "failed",
        }
    }

    /// One line for humans: `default (postgres://app:***@db:5432/app): accepting connections`.
    pub(crate) fn line(&self, verbose: bool) -> String {
        let mut line = format!("{} ({}): {}", self.name, self.target, self.status());
        if let Some(problem) = &self.problem {
            line.push_str(&format!(": {problem}"));
        }
        if let Some(error) = &self.error {
            match (verbose, error.cause()) {
                (true, Some(cause)) => line.push_str(&format!(
                    ": {} ({}): {}",
                    error.kind().as_str(),
                    code(error).unwrap_or_else(|| "no code".to_owned()),
                    ErrorChain(cause)
                )),
                _ => line.push_str(&format!(": {}", summary(error))),
            }
        }
        line.push_str(&format!(
            " [{} attempt(s), {} ms]",
            self.attempts,
            self.elapsed.as_millis()
        ));
        line
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "database": self.name,
            "target": self.target,
            "status": self.status(),
            "exit_code": self.exit_code,
            "attempts": self.attempts,
            "elapsed_ms": u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX),
            "problem": self.problem,
            "error": self.error.as_ref().map(|e| json!({
                "kind": e.kind().as_str(),
                "class": e.class().map(|c| c.as_str()),
                "sqlstate": e.sqlstate(),
                "sqlite_code": e.sqlite_code(),
                "sqlite_code_name": e.sqlite_code().map(sqlite_codes::name),
            })),
        })
    }
}

/// The error's code for humans: `SQLSTATE 28P01`, `SQLITE_BUSY (5)`.
fn code(error: &Error) -> Option<String> {
    error
        .sqlstate()
        .map(|s| format!("SQLSTATE {s}"))
        .or_else(|| {
            error
                .sqlite_code()
                .map(|c| format!("{} ({c})", sqlite_codes::name(c)))
        })
}

fn summary(error: &Error) -> String {
    let class = error.class().map_or("unknown", |c| c.as_str());
    match code(error) {
        Some(code) => format!("{class} error ({code}, {})", error.kind().as_str()),
        None => format!("{class} error ({})", error.kind().as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 10, item 6: the CLI re-raised a cancelled blocking task with `resume_unwind`, which
    // itself panics (exit 101).
    #[test]
    fn a_cancelled_sqlite_check_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db");
        rusqlite::Connection::open(&path).unwrap();
        // On a runtime already shut down, the blocking task is cancelled at once.
        let stopped = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let handle = stopped.handle().clone();
        stopped.shutdown_background();
        let checked = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async {
                let _on_stopped = handle.enter();
                ping_sqlite(path).await
            });
        let error = checked.unwrap_err().to_string();
        assert!(
            error.starts_with("the SQLite check did not finish"),
            "{error}"
        );
    }
}

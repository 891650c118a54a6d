//! One database checked: connect, `SELECT 1`, retried under the policy with `--wait`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dbretry::{Error, ErrorChain, ErrorKind, Phase, Retrier, RetryPolicy, redact_url};
use serde_json::{Value, json};

use crate::args::Check;
use crate::targets::Target;

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

pub(crate) async fn check(target: &Target, args: &Check) -> Outcome {
    let mut outcome = Outcome {
        name: target.name.clone(),
        target: redact_url(&target.url),
        exit_code: ACCEPTING,
        attempts: 0,
        elapsed: Duration::ZERO,
        error: None,
        problem: None,
    };
    let database = match parse(&target.url) {
        Ok(database) => database,
        Err(problem) => {
            outcome.exit_code = BAD_PARAMETERS;
            outcome.problem = Some(problem);
            return outcome;
        }
    };
    let succeeded_after = Arc::new(AtomicU32::new(0));
    let attempts = succeeded_after.clone();
    let retrier = Retrier::new(policy(&target.policy, args))
        .phase(Phase::Connect)
        .name(&target.name)
        .on_success(move |event| attempts.store(event.attempts, Ordering::Relaxed));
    let started = tokio::time::Instant::now();
    let result = match &database {
        Database::Postgres(config) => retrier
            .run(|| ping_postgres(config))
            .await
            .map_err(Error::from),
        Database::Sqlite(path) => retrier
            .run(|| ping_sqlite(path.clone()))
            .await
            .map_err(Error::from),
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

/// With `--wait`: the policy's schedule, bounded by `--timeout` only; without: one attempt
/// bounded by `--timeout`.
fn policy(base: &RetryPolicy, args: &Check) -> RetryPolicy {
    let timeout = Duration::from_secs_f64(args.timeout);
    let config = if args.wait {
        let attempt = base
            .attempt_timeout()
            .unwrap_or(Duration::from_secs(5))
            .min(timeout);
        dbretry::RetryConfig::default()
            .max_attempts(u32::MAX)
            .initial_delay(base.initial_delay())
            .max_delay(base.max_delay())
            .exponential_base(base.exponential_base())
            .max_elapsed(timeout)
            .attempt_timeout(attempt)
    } else {
        dbretry::RetryConfig::default()
            .max_attempts(1)
            .attempt_timeout(timeout)
    };
    config.build().unwrap_or(RetryPolicy::NO_RETRY)
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

fn parse(url: &str) -> Result<Database, String> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        return url
            .parse::<tokio_postgres::Config>()
            .map(|config| Database::Postgres(Box::new(config)))
            .map_err(|e| format!("invalid PostgreSQL URL {}: {e}", redact_url(url)));
    }
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(format!("no path in SQLite URL {url}"));
        }
        return Ok(Database::Sqlite(PathBuf::from(path)));
    }
    Err(format!(
        "unsupported URL {}: expected postgres://… or sqlite:…",
        redact_url(url)
    ))
}

async fn ping_postgres(config: &tokio_postgres::Config) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    let task = tokio::spawn(connection);
    let answered = client.simple_query("SELECT 1").await;
    drop(client);
    let _ = task.await;
    answered.map(drop)
}

async fn ping_sqlite(path: PathBuf) -> Result<(), rusqlite::Error> {
    tokio::task::spawn_blocking(move || {
        // A health check must not create the database it checks.
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_URI
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(path, flags)?;
        conn.query_row("SELECT 1", [], |_| Ok(()))
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
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

    /// One line for humans: `default (postgres://app:***@db/app): accepting connections`.
    pub(crate) fn line(&self, verbose: bool) -> String {
        let mut line = format!("{} ({}): {}", self.name, self.target, self.status());
        if let Some(problem) = &self.problem {
            line.push_str(&format!(": {problem}"));
        }
        if let Some(error) = &self.error {
            match (verbose, error.cause()) {
                (true, Some(cause)) => line.push_str(&format!(": {}", ErrorChain(cause))),
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
            "elapsed_ms": self.elapsed.as_millis() as u64,
            "problem": self.problem,
            "error": self.error.as_ref().map(|e| json!({
                "kind": e.kind().as_str(),
                "class": e.class().map(|c| c.as_str()),
                "sqlstate": e.sqlstate(),
                "sqlite_code": e.sqlite_code(),
            })),
        })
    }
}

fn summary(error: &Error) -> String {
    let code = error
        .sqlstate()
        .map(|s| format!("SQLSTATE {s}"))
        .or_else(|| error.sqlite_code().map(|c| format!("SQLite code {c}")));
    let class = error.class().map_or("unknown", |c| c.as_str());
    match code {
        Some(code) => format!("{class} error ({code}, {})", error.kind().as_str()),
        None => format!("{class} error ({})", error.kind().as_str()),
    }
}

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::{ConnectAttempts, Diagnostics, Error, ErrorClass, Failure};

/// Healthy or not, and why, in a sentence without host, user or password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HealthStatus {
    /// The database answered a query within the check's time bound.
    pub healthy: bool,
    /// What happened, e.g. `database answered in 2 ms` or
    /// `cannot connect: permanent error (SQLSTATE 28P01)`.
    pub message: String,
}

/// A detailed health report, serializable to JSON.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// The name the database is registered under (or the pool's name).
    pub database: String,
    /// The database answered a query within the check's time bound.
    pub healthy: bool,
    /// `"healthy"` or `"unhealthy"`.
    pub status: &'static str,
    /// What happened, in a sentence without host, user or password.
    pub message: String,
    /// How long the check took, in milliseconds.
    pub latency_ms: f64,
    /// Pool occupancy at the end of the check, if the pool reports it.
    pub pool: Option<PoolOccupancy>,
    /// The last connect error the pool recorded, by class and code.
    pub last_error: Option<LastError>,
    /// Connect attempts of the pool so far, by outcome.
    pub connect_attempts: Option<ConnectAttempts>,
}

/// How full a pool is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PoolOccupancy {
    /// Connections the pool holds.
    pub size: usize,
    /// Of which idle.
    pub idle: usize,
    /// Callers waiting for a connection.
    pub waiters: usize,
    /// The most connections the pool will hold.
    pub max_size: usize,
}

/// The last connect error of a pool, reduced to what is safe to show anyone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LastError {
    /// `transient` or `permanent`.
    pub class: ErrorClass,
    /// The SQLSTATE (`57P03`) or SQLite result code (`5`), if there is one.
    pub code: Option<String>,
    /// The kind of I/O error (`connection refused`, `timed out`), when the cause was one.
    pub io_error: Option<String>,
    /// Seconds since it happened.
    pub age_seconds: u64,
}

impl LastError {
    /// `transient, code 57P03` or `transient, connection refused`: the class and whichever
    /// cause is known.
    fn summary(&self) -> String {
        let mut text = self.class.as_str().to_owned();
        if let Some(code) = &self.code {
            text.push_str(", code ");
            text.push_str(code);
        } else if let Some(io_error) = &self.io_error {
            text.push_str(", ");
            text.push_str(io_error);
        }
        text
    }
}

impl HealthReport {
    pub(crate) fn new(
        database: &str,
        outcome: Result<Result<(), Error>, tokio::time::error::Elapsed>,
        timeout: Duration,
        latency: Duration,
        pool: Option<PoolOccupancy>,
        diagnostics: Option<Diagnostics>,
    ) -> Self {
        let last_error = diagnostics
            .as_ref()
            .and_then(Diagnostics::last_connect_error)
            .map(|e| LastError::from(&e));
        let message = match &outcome {
            Ok(Ok(())) => format!("database answered in {} ms", latency.as_millis()),
            Ok(Err(error)) => describe(error),
            Err(_) => describe_timeout(timeout, last_error.as_ref(), pool.as_ref()),
        };
        let healthy = matches!(outcome, Ok(Ok(())));
        Self {
            database: database.to_owned(),
            healthy,
            status: if healthy { "healthy" } else { "unhealthy" },
            message,
            latency_ms: latency.as_secs_f64() * 1000.0,
            pool,
            last_error,
            connect_attempts: diagnostics.map(|d| d.connect_attempts()),
        }
    }

    /// The short form: healthy and message.
    pub fn status(&self) -> HealthStatus {
        HealthStatus {
            healthy: self.healthy,
            message: self.message.clone(),
        }
    }
}

impl From<&Failure> for LastError {
    fn from(recorded: &Failure) -> Self {
        Self {
            class: recorded.class(),
            code: recorded.database_code().map(|code| code.text()),
            io_error: io_error_of(recorded.cause()),
            age_seconds: SystemTime::now()
                .duration_since(recorded.at())
                .unwrap_or_default()
                .as_secs(),
        }
    }
}

/// A sentence about `error` with no driver text (which can name the user or host).
fn describe(error: &Error) -> String {
    let what = match error.kind() {
        crate::ErrorKind::Query => "query failed",
        _ => "cannot connect",
    };
    let class = error.class().map_or("unknown", ErrorClass::as_str);
    let code = error
        .database_code()
        .map(|code| format!(", code {}", code.text()))
        .or_else(|| {
            error
                .cause()
                .and_then(|c| io_error_of(c))
                .map(|io| format!(", {io}"))
        })
        .unwrap_or_default();
    format!(
        "{what}: {class} error ({}{code}) after {} attempt(s)",
        error.kind().as_str(),
        error.attempts()
    )
}

/// A timed-out check, with the last real cause the pool saw: a timeout alone says nothing
/// about why the database did not answer.
fn describe_timeout(
    timeout: Duration,
    last_error: Option<&LastError>,
    pool: Option<&PoolOccupancy>,
) -> String {
    let mut text = format!("no answer within {timeout:?}");
    match last_error {
        Some(last) => {
            let _ = write!(
                text,
                "; last connect error {}s ago: {}",
                last.age_seconds,
                last.summary()
            );
        }
        None => text.push_str("; no connect error recorded"),
    }
    if pool.is_some_and(|p| p.max_size > 0 && p.size >= p.max_size && p.idle == 0) {
        text.push_str("; every connection of the pool is in use");
    }
    text
}

/// The kind of the first I/O error in the chain, as a phrase (`connection refused`).
pub(crate) fn io_error_of(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return Some(io.kind().to_string());
        }
        next = error.source();
    }
    None
}

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
pub struct LastError {
    /// `transient` or `permanent`.
    pub class: ErrorClass,
    /// The SQLSTATE (`57P03`) or SQLite result code (`5`), if there is one.
    pub code: Option<String>,
    /// Seconds since it happened.
    pub age_seconds: u64,
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
        let message = match &outcome {
            Ok(Ok(())) => format!("database answered in {} ms", latency.as_millis()),
            Ok(Err(error)) => describe(error),
            Err(_) => format!("no answer within {timeout:?}"),
        };
        let healthy = matches!(outcome, Ok(Ok(())));
        Self {
            database: database.to_owned(),
            healthy,
            status: if healthy { "healthy" } else { "unhealthy" },
            message,
            latency_ms: latency.as_secs_f64() * 1000.0,
            pool,
            last_error: diagnostics
                .as_ref()
                .and_then(Diagnostics::last_connect_error)
                .map(|e| LastError::from(&e)),
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
        .unwrap_or_default();
    format!(
        "{what}: {class} error ({}{code}) after {} attempt(s)",
        error.kind().as_str(),
        error.attempts()
    )
}

//! Health routes for axum, for Kubernetes probes.
//!
//! * `GET /api/health/database/` — 200 when every registered database is healthy, 503 when
//!   not, with a JSON body; `?database=NAME` checks one (404 if there is none by that name);
//!   `?details=true` adds latency, pool occupancy, the last error's class and code and connect
//!   counts — only when the service enabled details ([`HealthRoutes::details`]). `details`
//!   takes `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off` in any case, and a bare `?details`
//!   means true. Once the service starts [`Draining`] it answers 503 at once, without checking,
//!   so that load balancers stop sending requests while in-flight ones finish. No host, user or
//!   password is ever in a body.
//! * `GET /api/health/live` — always 200: liveness must not fail because the database is down
//!   (restarting the service would not bring the database back).
//!
//! Checks go through the [`HealthRegistry`], so they are time-bounded and cached briefly.
//! Every answer is JSON, errors too: a query string that does not parse is a 400 and an
//! unknown database a 404, each with `status` and `message`.
//!
//! ```no_run
//! # fn pool() -> dbretry::deadpool_postgres::Pool { todo!() }
//! # async fn run() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use dbretry::health::HealthRegistry;
//! use dbretry::http::HealthRoutes;
//!
//! let registry = Arc::new(HealthRegistry::new().with("default", pool()));
//! let app = axum::Router::new().merge(HealthRoutes::new(registry).router());
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};

use crate::health::{HealthRegistry, HealthReport};

/// The path of the readiness route.
pub const DATABASE_HEALTH_PATH: &str = "/api/health/database/";
/// The path of the liveness route.
pub const LIVENESS_PATH: &str = "/api/health/live";

/// Builds the health routes; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct HealthRoutes {
    registry: Arc<HealthRegistry>,
    details: bool,
    draining: Draining,
}

/// A switch that turns readiness off for a graceful shutdown: once [`Draining::start`] is
/// called, the readiness route answers 503 without checking the databases, while the rest of
/// the service keeps serving. Cheap to clone; every clone is the same switch.
///
/// ```no_run
/// # fn registry() -> std::sync::Arc<dbretry::health::HealthRegistry> { todo!() }
/// use dbretry::http::{Draining, HealthRoutes};
///
/// let draining = Draining::new();
/// let routes = HealthRoutes::new(registry()).draining(draining.clone()).router::<()>();
/// // On SIGTERM:
/// draining.start();
/// ```
#[derive(Clone, Debug, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// A switch that is off.
    pub fn new() -> Self {
        Self::default()
    }

    /// Turns readiness off, for good.
    pub fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`Draining::start`] was called.
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthQuery {
    #[serde(default, deserialize_with = "flag")]
    details: bool,
    database: Option<String>,
}

/// The spellings of yes and no that people and tools use in query strings.
fn parse_flag(value: &str) -> Option<bool> {
    const TRUE: [&str; 4] = ["true", "1", "yes", "on"];
    const FALSE: [&str; 4] = ["false", "0", "no", "off"];
    if value.is_empty() || TRUE.iter().any(|t| value.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if FALSE.iter().any(|f| value.eq_ignore_ascii_case(f)) {
        Some(false)
    } else {
        None
    }
}

fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    let value = Cow::<str>::deserialize(deserializer)?;
    parse_flag(&value).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "expected true/false, 1/0, yes/no or on/off, got {value:?}"
        ))
    })
}

impl HealthRoutes {
    /// Routes over `registry`, details off, not draining.
    pub fn new(registry: Arc<HealthRegistry>) -> Self {
        Self {
            registry,
            details: false,
            draining: Draining::new(),
        }
    }

    /// Whether `?details=true` may add detail to bodies. Default off: details show pool sizes
    /// and error codes that a public endpoint may not want to reveal.
    #[must_use]
    pub fn details(mut self, enabled: bool) -> Self {
        self.details = enabled;
        self
    }

    /// Makes readiness answer 503 once `draining` is started (see [`Draining`]).
    #[must_use]
    pub fn draining(mut self, draining: Draining) -> Self {
        self.draining = draining;
        self
    }

    /// The axum router with both routes.
    pub fn router<S>(self) -> axum::Router<S> {
        axum::Router::new()
            .route(DATABASE_HEALTH_PATH, get(database_health))
            .route(
                DATABASE_HEALTH_PATH.trim_end_matches('/'),
                get(database_health),
            )
            .route(LIVENESS_PATH, get(liveness))
            .with_state(Arc::new(self))
    }
}

async fn liveness() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

async fn database_health(
    State(routes): State<Arc<HealthRoutes>>,
    query: Result<Query<HealthQuery>, QueryRejection>,
) -> (StatusCode, Json<Value>) {
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => return error(rejection.status(), "bad_request", rejection.body_text()),
    };
    if routes.draining.is_draining() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the service is shutting down".to_owned(),
        );
    }
    let details = query.details && routes.details;
    match query.database {
        Some(name) => match routes.registry.check(&name).await {
            Some(report) => (status_code(report.healthy), Json(body(&report, details))),
            None => {
                let (status, Json(mut body)) = error(
                    StatusCode::NOT_FOUND,
                    "unknown_database",
                    format!("no database named {name:?} is registered"),
                );
                body["databases"] = json!(routes.registry.names().collect::<Vec<_>>());
                (status, Json(body))
            }
        },
        None => {
            let reports = routes.registry.check_all().await;
            let healthy = reports.iter().all(|r| r.healthy);
            let databases: Map<String, Value> = reports
                .iter()
                .map(|r| (r.database.clone(), body(r, details)))
                .collect();
            let status = if healthy { "healthy" } else { "unhealthy" };
            (
                status_code(healthy),
                Json(json!({ "status": status, "databases": databases })),
            )
        }
    }
}

/// An error body: what went wrong in `status`, a sentence in `message`.
fn error(code: StatusCode, status: &str, message: String) -> (StatusCode, Json<Value>) {
    (code, Json(json!({ "status": status, "message": message })))
}

fn status_code(healthy: bool) -> StatusCode {
    if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn body(report: &HealthReport, details: bool) -> Value {
    if details {
        serde_json::to_value(report).unwrap_or(Value::Null)
    } else {
        json!({
            "database": report.database,
            "status": report.status,
            "message": report.message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_flag;

    #[test]
    fn flags_accept_the_usual_spellings_in_any_case() {
        for yes in ["", "true", "TRUE", "True", "1", "yes", "Yes", "on", "ON"] {
            assert_eq!(parse_flag(yes), Some(true), "{yes:?}");
        }
        for no in ["false", "FALSE", "0", "no", "NO", "off", "Off"] {
            assert_eq!(parse_flag(no), Some(false), "{no:?}");
        }
        for neither in ["2", "y", "n", "maybe", " true", "truee", "-1"] {
            assert_eq!(parse_flag(neither), None, "{neither:?}");
        }
    }
}

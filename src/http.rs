//! Health routes for axum, for Kubernetes probes.
//!
//! * `GET /api/health/database/` — 200 when every registered database is healthy, 503 when
//!   not, with a JSON body; `?database=NAME` checks one (404 if there is none by that name);
//!   `?details=true` adds latency, pool occupancy, the last error's class and code and connect
//!   counts — only when the service enabled details ([`HealthRoutes::details`]). No host, user
//!   or password is ever in a body.
//! * `GET /api/health/live` — always 200: liveness must not fail because the database is down
//!   (restarting the service would not bring the database back).
//!
//! Checks go through the [`HealthRegistry`], so they are time-bounded and cached briefly.
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

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde::Deserialize;
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
}

#[derive(Debug, Deserialize)]
struct HealthQuery {
    #[serde(default)]
    details: bool,
    database: Option<String>,
}

impl HealthRoutes {
    /// Routes over `registry`, details off.
    pub fn new(registry: Arc<HealthRegistry>) -> Self {
        Self {
            registry,
            details: false,
        }
    }

    /// Whether `?details=true` may add detail to bodies. Default off: details show pool sizes
    /// and error codes that a public endpoint may not want to reveal.
    #[must_use]
    pub fn details(mut self, enabled: bool) -> Self {
        self.details = enabled;
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
    Query(query): Query<HealthQuery>,
) -> (StatusCode, Json<Value>) {
    let details = query.details && routes.details;
    match query.database {
        Some(name) => match routes.registry.check(&name).await {
            Some(report) => (status_code(report.healthy), Json(body(&report, details))),
            None => (
                StatusCode::NOT_FOUND,
                Json(json!({
                    "status": "unknown_database",
                    "message": format!("no database named {name:?} is registered"),
                    "databases": routes.registry.names().collect::<Vec<_>>(),
                })),
            ),
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

//! Health checks: is the database answering, how busy is the pool, what went wrong last.
//!
//! [`check`] answers yes or no with a message; [`check_detailed`] adds latency, pool occupancy,
//! the last error's class and code, and connect attempt counts, serializable to JSON. A
//! [`HealthRegistry`] names several databases (`default`, `replica`, …), bounds each check in
//! time and caches the answer briefly, so that probes cannot stampede a database.
//!
//! A check takes a connection from the pool and runs `SELECT 1` — the same ping the managers
//! use to validate connections. Reports never contain a host, user, password or driver
//! message: only classes, SQLSTATE / SQLite codes, I/O error kinds and counts. A check that
//! times out says why the pool could not answer: its message carries the last connect
//! error's class and code (`no answer within 2s; last connect error 1s ago: transient,
//! connection refused`), and the timeout is counted in `dbretry_health_check_timeouts_total`.
//!
//! Every check sets `dbretry_health_status` and the pool occupancy gauges, labelled `pool`
//! with the name the check is made under: the registry name in a [`HealthRegistry`], the
//! pool's own name otherwise. Name each pool as you register it (`.name("replica")` on the
//! manager, `.with("replica", pool)` on the registry) so that all its series share one label.

mod registry;
mod report;
mod target;

use std::time::Duration;

use tokio::time::Instant;

pub use self::registry::{HealthConfig, HealthRegistry};
pub use self::report::{HealthReport, HealthStatus, LastError, PoolOccupancy};
pub use self::target::{HealthTarget, PingFuture};

/// The bound on one check when none is configured.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks `pool` once: healthy or not, with a message.
pub async fn check(pool: &(impl HealthTarget + ?Sized)) -> HealthStatus {
    let report = check_detailed(pool, DEFAULT_CHECK_TIMEOUT).await;
    HealthStatus {
        healthy: report.healthy,
        message: report.message,
    }
}

/// Checks `pool` once, bounded by `timeout`, and reports in detail. Its health metrics are
/// labelled with the pool's own name.
pub async fn check_detailed(
    pool: &(impl HealthTarget + ?Sized),
    timeout: Duration,
) -> HealthReport {
    check_as(pool.pool_name(), pool, timeout).await
}

/// Checks `pool` under the name `name`: the report's `database` and the `pool` label of the
/// metrics the check emits (see the [metrics docs](crate::metrics#health-series-and-registry-names)).
async fn check_as(
    name: &str,
    pool: &(impl HealthTarget + ?Sized),
    timeout: Duration,
) -> HealthReport {
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, pool.ping()).await;
    let latency = started.elapsed();
    if outcome.is_err() {
        crate::metrics::health_check_timed_out(name);
    }
    let occupancy = pool.occupancy();
    let diagnostics = pool.diagnostics();
    let report = HealthReport::new(name, outcome, timeout, latency, occupancy, diagnostics);
    crate::metrics::health(name, report.healthy);
    if let Some(pool) = &report.pool {
        crate::metrics::pool_occupancy(name, pool.size, pool.idle, pool.waiters);
        crate::metrics::pool_max_size(name, pool.max_size);
    }
    report
}

#[cfg(all(test, feature = "sqlite", feature = "deadpool", feature = "metrics"))]
mod tests;

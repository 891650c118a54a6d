//! Health checks: is the database answering, how busy is the pool, what went wrong last.
//!
//! [`check`] answers yes or no with a message; [`check_detailed`] adds latency, pool occupancy,
//! the last error's class and code, and connect attempt counts, serializable to JSON. A
//! [`HealthRegistry`] names several databases (`default`, `replica`, …), bounds each check in
//! time and caches the answer briefly, so that probes cannot stampede a database.
//!
//! A check takes a connection from the pool and runs `SELECT 1` — the same ping the managers
//! use to validate connections. Reports never contain a host, user, password or driver
//! message: only classes, SQLSTATE / SQLite codes and counts.

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

/// Checks `pool` once, bounded by `timeout`, and reports in detail.
pub async fn check_detailed(
    pool: &(impl HealthTarget + ?Sized),
    timeout: Duration,
) -> HealthReport {
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, pool.ping()).await;
    let latency = started.elapsed();
    let occupancy = pool.occupancy();
    let diagnostics = pool.diagnostics();
    let report = HealthReport::new(
        pool.pool_name(),
        outcome,
        timeout,
        latency,
        occupancy,
        diagnostics,
    );
    crate::metrics::health(&report.database, report.healthy);
    if let Some(pool) = &report.pool {
        crate::metrics::pool_occupancy(&report.database, pool.size, pool.idle, pool.waiters);
    }
    report
}

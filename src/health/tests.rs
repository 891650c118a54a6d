//! Health checks of a real SQLite pool, their reports and the metrics they emit.

use std::collections::BTreeMap;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

use super::{HealthRegistry, check_detailed};
use crate::deadpool_sqlite::{Manager, Pool};
use crate::metrics as m;
use crate::sqlite::SqliteOptions;

fn pool(dir: &tempfile::TempDir, name: &str) -> Pool {
    let manager = Manager::builder(SqliteOptions::new(dir.path().join("app.sqlite3")))
        .name(name)
        .build();
    Pool::builder(manager).max_size(1).build().unwrap()
}

/// Runs `test` on a current-thread runtime under a recorder local to this thread.
fn with_recorder<F: Future>(test: impl FnOnce() -> F) -> (F::Output, Snapshotter) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let output = ::metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(test())
    });
    (output, snapshotter)
}

/// Every series labelled only `pool`, as (name, pool) → value. A snapshot resets the
/// recorder's values, so take one per test.
fn by_pool(snapshotter: &Snapshotter) -> BTreeMap<(String, String), f64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let key = key.key();
            let labels: Vec<_> = key.labels().collect();
            let [label] = labels[..] else { return None };
            let value = match value {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(_) => return None,
            };
            (label.key() == "pool")
                .then(|| ((key.name().to_owned(), label.value().to_owned()), value))
        })
        .collect()
}

fn series(name: &str, pool: &str) -> (String, String) {
    (name.to_owned(), pool.to_owned())
}

#[test]
fn a_registry_labels_health_series_with_the_name_it_checks_under() {
    let dir = tempfile::tempdir().unwrap();
    let (report, snapshotter) = with_recorder(|| async {
        let registry = HealthRegistry::new().with("replica", pool(&dir, "default"));
        registry.check("replica").await.unwrap()
    });
    assert!(report.healthy, "{report:?}");
    assert_eq!(report.database, "replica");
    let metrics = by_pool(&snapshotter);
    assert_eq!(
        metrics.get(&series(m::HEALTH_STATUS, "replica")),
        Some(&1.0)
    );
    assert_eq!(metrics.get(&series(m::HEALTH_STATUS, "default")), None);
    assert_eq!(
        metrics.get(&series(m::POOL_MAX_SIZE, "replica")),
        Some(&1.0)
    );
}

#[test]
fn a_check_that_times_out_on_a_busy_pool_says_so_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (report, snapshotter) = with_recorder(|| async {
        let pool = pool(&dir, "orders");
        // The pool's only connection stays busy: the check cannot get one, however long.
        let _held = pool.get().await.unwrap();
        check_detailed(&pool, Duration::from_millis(50)).await
    });
    assert!(!report.healthy);
    assert_eq!(
        report.message,
        "no answer within 50ms; no connect error recorded; every connection of the pool is in use"
    );
    let metrics = by_pool(&snapshotter);
    assert_eq!(
        metrics.get(&series(m::HEALTH_CHECK_TIMEOUTS_TOTAL, "orders")),
        Some(&1.0)
    );
    assert_eq!(metrics.get(&series(m::HEALTH_STATUS, "orders")), Some(&0.0));
}

#[test]
fn a_check_that_answers_counts_no_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (report, snapshotter) = with_recorder(|| async {
        check_detailed(&pool(&dir, "orders"), Duration::from_secs(5)).await
    });
    assert!(report.healthy, "{report:?}");
    let metrics = by_pool(&snapshotter);
    assert_eq!(metrics.get(&series(m::HEALTH_STATUS, "orders")), Some(&1.0));
    // Absent, or registered at zero with the pool.
    let timeouts = metrics.get(&series(m::HEALTH_CHECK_TIMEOUTS_TOTAL, "orders"));
    assert_eq!(timeouts.copied().unwrap_or(0.0), 0.0);
}

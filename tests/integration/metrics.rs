//! Metrics read back with metrics-util's debugging recorder after real failures.

use std::future::Future;
use std::time::Duration;

use dbretry::deadpool_postgres::{Manager, Pool, PoolError};
use dbretry::{RetryPolicy, metrics as m};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio_postgres::NoTls;

use crate::support::{self, PgCluster};

/// Runs `test` on a current-thread runtime with a recorder local to this thread, so that
/// tests running in parallel do not see each other's metrics.
pub(crate) fn with_recorder<F: Future>(test: impl FnOnce() -> F) -> (F::Output, Snapshotter) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let output = metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(test())
    });
    (output, snapshotter)
}

/// One metric: name, labels, value.
type Metric = (String, Vec<(String, String)>, DebugValue);

/// What a debugging recorder holds, taken at once (taking it resets the counters).
pub(crate) struct Snapshot(Vec<Metric>);

impl Snapshot {
    pub(crate) fn take(snapshotter: &Snapshotter) -> Self {
        Self(
            snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, _, _, value)| {
                    let key = key.key();
                    let labels = key
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned()))
                        .collect();
                    (key.name().to_owned(), labels, value)
                })
                .collect(),
        )
    }

    /// The counter `name` with exactly these labels (0 if never incremented).
    pub(crate) fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.find(name, labels)
            .map(|value| match value {
                DebugValue::Counter(n) => *n,
                other => panic!("{name} is not a counter: {other:?}"),
            })
            .unwrap_or(0)
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.find(name, labels).map(|value| match value {
            DebugValue::Gauge(g) => g.into_inner(),
            other => panic!("{name} is not a gauge: {other:?}"),
        })
    }

    fn histogram_len(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        self.find(name, labels).map_or(0, |value| match value {
            DebugValue::Histogram(samples) => samples.len(),
            other => panic!("{name} is not a histogram: {other:?}"),
        })
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        self.0.iter().find_map(|(n, l, value)| {
            let same = n == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v));
            same.then_some(value)
        })
    }

    fn all_label_values(&self) -> Vec<&str> {
        self.0
            .iter()
            .flat_map(|(_, labels, _)| labels.iter().map(|(_, v)| v.as_str()))
            .collect()
    }
}

fn pool(config: tokio_postgres::Config, policy: RetryPolicy) -> Pool {
    let manager = Manager::builder(config, NoTls)
        .policy(policy)
        .name("orders")
        .build();
    Pool::builder(manager).max_size(2).build().unwrap()
}

const CONNECT: (&str, &str) = ("phase", "connect");
const ORDERS: (&str, &str) = ("pool", "orders");

#[test]
fn refused_connects_count_each_attempt_retry_and_the_give_up() {
    let (error, snapshotter) = with_recorder(|| async {
        let port = support::free_port();
        let config = format!("postgres://app:pw@127.0.0.1:{port}/app")
            .parse()
            .unwrap();
        let policy = RetryPolicy::builder()
            .max_attempts(4)
            .initial_delay(Duration::from_millis(10))
            .build()
            .unwrap();
        match pool(config, policy).get().await {
            Err(PoolError::Backend(error)) => error,
            other => panic!("{:?}", other.map(drop)),
        }
    });
    let snapshot = Snapshot::take(&snapshotter);
    assert_eq!(error.attempts(), 4);
    let transient = [ORDERS, CONNECT, ("outcome", "transient")];
    assert_eq!(snapshot.counter(m::ATTEMPTS_TOTAL, &transient), 4);
    assert_eq!(
        snapshot.counter(
            m::ATTEMPTS_TOTAL,
            &[ORDERS, CONNECT, ("outcome", "success")]
        ),
        0
    );
    assert_eq!(snapshot.counter(m::RETRIES_TOTAL, &[ORDERS, CONNECT]), 3);
    assert_eq!(
        snapshot.histogram_len(m::BACKOFF_SECONDS, &[ORDERS, CONNECT]),
        3
    );
    assert_eq!(
        snapshot.histogram_len(m::ATTEMPT_DURATION_SECONDS, &[ORDERS, CONNECT]),
        4
    );
    assert_eq!(
        snapshot.counter(
            m::GIVE_UPS_TOTAL,
            &[ORDERS, CONNECT, ("reason", "attempts")]
        ),
        1
    );
}

#[test]
fn a_wrong_password_counts_one_permanent_attempt_and_no_retry() {
    let pg = std::thread::scope(|_| {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(PgCluster::start())
    });
    let url = pg.url_with(support::SUPERUSER, "wrong-password", support::DATABASE);
    let (_, snapshotter) = with_recorder(|| async {
        let error = pool(url.parse().unwrap(), RetryPolicy::default())
            .get()
            .await;
        assert!(error.is_err());
    });
    let snapshot = Snapshot::take(&snapshotter);
    assert_eq!(
        snapshot.counter(
            m::ATTEMPTS_TOTAL,
            &[ORDERS, CONNECT, ("outcome", "permanent")]
        ),
        1
    );
    assert_eq!(snapshot.counter(m::RETRIES_TOTAL, &[ORDERS, CONNECT]), 0);
    assert_eq!(
        snapshot.counter(
            m::GIVE_UPS_TOTAL,
            &[ORDERS, CONNECT, ("reason", "permanent")]
        ),
        1
    );
    for value in snapshot.all_label_values() {
        assert!(
            !value.contains("wrong-password") && !value.contains("127.0.0.1"),
            "{value}"
        );
        assert!(!value.contains(support::SUPERUSER), "{value}");
    }
    drop(pg);
}

#[test]
fn a_restart_counts_the_discarded_connection_the_lost_session_and_the_reconnect() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pg = runtime.block_on(PgCluster::start());
    let (_, snapshotter) = with_recorder(|| async {
        let pool = pool(pg.config(), RetryPolicy::default());
        drop(pool.get().await.unwrap());
        pg.restart_fast().await;
        // Let the connection task see the server's goodbye.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let client = pool.get().await.unwrap();
        client.simple_query("SELECT 1").await.unwrap();
        drop(client);
        let report = dbretry::health::check_detailed(&pool, Duration::from_secs(2)).await;
        assert!(report.healthy);
    });
    let snapshot = Snapshot::take(&snapshotter);
    assert_eq!(
        snapshot.counter(
            m::ATTEMPTS_TOTAL,
            &[ORDERS, CONNECT, ("outcome", "success")]
        ),
        2
    );
    assert_eq!(snapshot.counter(m::RECYCLE_FAILURES_TOTAL, &[ORDERS]), 1);
    assert_eq!(
        snapshot.counter(
            m::CONNECTIONS_CLOSED_TOTAL,
            &[ORDERS, ("class", "transient")]
        ),
        1
    );
    assert_eq!(snapshot.gauge(m::HEALTH_STATUS, &[ORDERS]), Some(1.0));
    assert_eq!(snapshot.gauge(m::POOL_SIZE, &[ORDERS]), Some(1.0));
    assert_eq!(snapshot.gauge(m::POOL_IDLE, &[ORDERS]), Some(1.0));
    drop(pg);
}

#[test]
fn the_retry_helper_counts_operation_attempts_under_its_name() {
    let (_, snapshotter) = with_recorder(|| async {
        let mut calls = 0;
        let policy = RetryPolicy::builder()
            .initial_delay(Duration::ZERO)
            .build()
            .unwrap();
        dbretry::Retrier::new(policy)
            .name("nightly-job")
            .run(|| {
                calls += 1;
                let fail = calls < 3;
                async move {
                    if fail {
                        Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
                    } else {
                        Ok(())
                    }
                }
            })
            .await
            .unwrap();
    });
    let snapshot = Snapshot::take(&snapshotter);
    let job = ("pool", "nightly-job");
    let op = ("phase", "operation");
    assert_eq!(
        snapshot.counter(m::ATTEMPTS_TOTAL, &[job, op, ("outcome", "transient")]),
        2
    );
    assert_eq!(
        snapshot.counter(m::ATTEMPTS_TOTAL, &[job, op, ("outcome", "success")]),
        1
    );
    assert_eq!(snapshot.counter(m::RETRIES_TOTAL, &[job, op]), 2);
}

use std::collections::BTreeMap;

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;

use ::metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

use super::*;

/// A series: its name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// Runs `emit` under a debugging recorder local to this thread and returns every series it
/// registered, with its value (histograms as their sample count).
fn series_after(emit: impl FnOnce()) -> BTreeMap<Series, f64> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    ::metrics::with_local_recorder(&recorder, emit);
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<_> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let value = match value {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(samples) => samples.len() as f64,
            };
            ((key.name().to_owned(), labels), value)
        })
        .collect()
}

fn series(name: &str, labels: &[(&str, &str)]) -> Series {
    let mut labels: Vec<_> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    (name.to_owned(), labels)
}

/// What `register_pool("orders")` must register: every closed-set combination.
fn expected_pool_series() -> BTreeMap<Series, f64> {
    let pool = ("pool", "orders");
    let connect = ("phase", "connect");
    let mut expected = BTreeMap::new();
    for &outcome in labels::OUTCOMES {
        expected.insert(
            series(ATTEMPTS_TOTAL, &[pool, connect, ("outcome", outcome)]),
            0.0,
        );
    }
    expected.insert(series(RETRIES_TOTAL, &[pool, connect]), 0.0);
    for &reason in labels::GIVE_UP_REASONS {
        expected.insert(
            series(GIVE_UPS_TOTAL, &[pool, connect, ("reason", reason)]),
            0.0,
        );
    }
    expected.insert(series(ATTEMPT_DURATION_SECONDS, &[pool, connect]), 0.0);
    expected.insert(series(BACKOFF_SECONDS, &[pool, connect]), 0.0);
    expected.insert(series(RECYCLE_FAILURES_TOTAL, &[pool]), 0.0);
    for &class in labels::CLASSES {
        expected.insert(
            series(CONNECTIONS_CLOSED_TOTAL, &[pool, ("class", class)]),
            0.0,
        );
    }
    for &cause in labels::CHECKOUT_TIMEOUT_CAUSES {
        expected.insert(
            series(CHECKOUT_TIMEOUTS_TOTAL, &[pool, ("cause", cause)]),
            0.0,
        );
    }
    expected.insert(series(HEALTH_CHECK_TIMEOUTS_TOTAL, &[pool]), 0.0);
    expected.insert(series(CIRCUIT_STATE, &[pool, ("state", "closed")]), 1.0);
    expected.insert(series(CIRCUIT_STATE, &[pool, ("state", "open")]), 0.0);
    expected.insert(series(CIRCUIT_STATE, &[pool, ("state", "half_open")]), 0.0);
    for gauge in [POOL_SIZE, POOL_IDLE, POOL_WAITERS] {
        expected.insert(series(gauge, &[pool]), 0.0);
    }
    expected
}

#[test]
fn register_pool_registers_every_connect_and_pool_series_at_its_initial_value() {
    let registered = series_after(|| register_pool("orders"));
    assert_eq!(registered, expected_pool_series());
}

#[test]
fn register_pool_leaves_out_the_series_whose_zero_would_be_a_lie() {
    let registered = series_after(|| register_pool("orders"));
    let names: Vec<&str> = registered.keys().map(|(name, _)| name.as_str()).collect();
    assert!(!names.contains(&HEALTH_STATUS), "{names:?}");
    assert!(!names.contains(&POOL_MAX_SIZE), "{names:?}");
}

#[test]
fn every_metric_of_the_table_is_registered_by_a_pool_or_set_by_a_check() {
    let registered = series_after(|| {
        register_pool("orders");
        register_operations("orders");
        health("orders", true);
        pool_max_size("orders", 8);
    });
    for name in ALL {
        assert!(
            registered.keys().any(|(n, _)| n == name),
            "{name} missing from {registered:?}"
        );
    }
}

#[test]
fn register_operations_registers_the_operation_phase_only() {
    let registered = series_after(|| register_operations("jobs"));
    assert!(!registered.is_empty());
    for ((name, labels), value) in &registered {
        assert!(
            labels.contains(&("phase".to_owned(), "operation".to_owned())),
            "{name} {labels:?}"
        );
        assert!(
            labels.contains(&("pool".to_owned(), "jobs".to_owned())),
            "{name} {labels:?}"
        );
        assert_eq!(*value, 0.0, "{name} {labels:?}");
    }
    let give_ups = registered
        .keys()
        .filter(|(name, _)| name == GIVE_UPS_TOTAL)
        .count();
    assert_eq!(give_ups, labels::GIVE_UP_REASONS.len());
}

#[test]
fn registering_again_keeps_the_counts_so_far() {
    let registered = series_after(|| {
        register_pool("orders");
        give_up("orders", "connect", "deadline");
        register_pool("orders");
    });
    let deadline = series(
        GIVE_UPS_TOTAL,
        &[
            ("pool", "orders"),
            ("phase", "connect"),
            ("reason", "deadline"),
        ],
    );
    assert_eq!(registered[&deadline], 1.0);
}

#[test]
fn the_circuit_gauge_marks_exactly_the_current_state() {
    for current in CircuitState::ALL {
        let registered = series_after(|| {
            circuit_state("orders", CircuitState::Open);
            circuit_state("orders", current);
        });
        for state in CircuitState::ALL {
            let key = series(
                CIRCUIT_STATE,
                &[("pool", "orders"), ("state", state.as_str())],
            );
            let want = if state == current { 1.0 } else { 0.0 };
            assert_eq!(registered[&key], want, "{current:?}: {state:?}");
        }
    }
}

#[test]
fn registered_histograms_render_in_prometheus_format_as_empty_buckets() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[0.1, 1.0])
        .unwrap()
        .build_recorder();
    let handle = recorder.handle();
    ::metrics::with_local_recorder(&recorder, || register_pool("orders"));
    let text = handle.render();
    for line in [
        r#"dbretry_backoff_seconds_bucket{pool="orders",phase="connect",le="0.1"} 0"#,
        r#"dbretry_backoff_seconds_bucket{pool="orders",phase="connect",le="+Inf"} 0"#,
        r#"dbretry_backoff_seconds_count{pool="orders",phase="connect"} 0"#,
        r#"dbretry_attempt_duration_seconds_sum{pool="orders",phase="connect"} 0"#,
        r#"dbretry_give_ups_total{pool="orders",phase="connect",reason="deadline"} 0"#,
        r#"dbretry_circuit_state{pool="orders",state="closed"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
    }
}

/// A recorder that counts the descriptions it is given and records nothing.
#[derive(Default)]
struct CountingDescriptions(AtomicUsize);

impl CountingDescriptions {
    fn count(&self) -> usize {
        self.0.load(SeqCst)
    }
}

impl Recorder for CountingDescriptions {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {
        self.0.fetch_add(1, SeqCst);
    }
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {
        self.0.fetch_add(1, SeqCst);
    }
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {
        self.0.fetch_add(1, SeqCst);
    }
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

// Issue 10, item 7: `describe()` ran on every `Retrier::new`, i.e. on every
// `execute_with_retry` call.
#[test]
fn retriers_built_again_and_again_describe_the_metrics_once_per_process() {
    let recorder = CountingDescriptions::default();
    ::metrics::with_local_recorder(&recorder, describe);
    assert_eq!(
        recorder.count(),
        ALL.len(),
        "describe() describes every metric"
    );

    let recorder = CountingDescriptions::default();
    ::metrics::with_local_recorder(&recorder, || {
        for _ in 0..100 {
            drop(crate::Retrier::new(crate::RetryPolicy::default()));
        }
    });
    // Once per process: here, or already by an earlier test of this process.
    assert!(
        recorder.count() <= ALL.len(),
        "100 retriers described {} times ({} metrics)",
        recorder.count(),
        ALL.len()
    );
}

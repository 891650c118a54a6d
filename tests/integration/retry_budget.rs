//! A retry budget under a storm of failing operations, counted from the metrics: retries stay
//! within the budget, and no first attempt is refused.

use std::future::Future;
use std::time::Duration;

use dbretry::deadpool_sqlite::{Manager, Pool};
use dbretry::sqlite::SqliteOptions;
use dbretry::{ErrorKind, Retrier, RetryBudget, RetryPolicy, metrics as m};
use futures_util::StreamExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use rusqlite::Connection;

/// Runs `test` on a current-thread runtime with a recorder local to this thread.
fn with_recorder<F: Future>(test: impl FnOnce() -> F) -> (F::Output, Snapshotter) {
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

/// Sorted label pairs.
type Labels = Vec<(String, String)>;

/// One snapshot of the counters (taking it resets them): name, sorted labels, value.
struct Counters(Vec<(String, Labels, u64)>);

impl Counters {
    fn take(snapshotter: &Snapshotter) -> Self {
        Self(
            snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .filter_map(|(key, _, _, value)| {
                    let key = key.key();
                    let mut labels: Labels = key
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned()))
                        .collect();
                    labels.sort();
                    match value {
                        DebugValue::Counter(n) => Some((key.name().to_owned(), labels, n)),
                        _ => None,
                    }
                })
                .collect(),
        )
    }

    /// The counter `name` of pool `pool` in the operation phase with `extra` labels (0 if
    /// never incremented).
    fn get(&self, name: &str, pool: &str, extra: &[(&str, &str)]) -> u64 {
        let mut wanted: Labels = [("pool", pool), ("phase", "operation")]
            .iter()
            .chain(extra)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        wanted.sort();
        self.0
            .iter()
            .find(|(known, labels, _)| known == name && *labels == wanted)
            .map_or(0, |(_, _, n)| *n)
    }
}

const OPERATIONS: usize = 200;
const MAX_ATTEMPTS: u32 = 4;

/// `OPERATIONS` write transactions, 8 at a time, on a database another connection keeps
/// locked: every try fails with `SQLITE_BUSY` at once (`busy_timeout` 0). Returns what the
/// callers got.
async fn storm(retrier: Retrier) -> Vec<ErrorKind> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sqlite3");
    let locker = Connection::open(&path).unwrap();
    locker
        .execute_batch("CREATE TABLE t (n INTEGER); BEGIN EXCLUSIVE")
        .unwrap();
    let options = SqliteOptions::new(&path).busy_timeout(Duration::ZERO);
    let pool = Pool::builder(Manager::builder(options).build())
        .max_size(8)
        .build()
        .unwrap();
    let (retrier, pool) = (&retrier, &pool);
    futures_util::stream::iter(0..OPERATIONS)
        .map(|_| async move {
            retrier
                .transaction(pool)
                .run(|tx| tx.execute("INSERT INTO t VALUES (1)", []))
                .await
                .unwrap_err()
                .kind()
        })
        .buffer_unordered(8)
        .collect()
        .await
}

fn policy() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(MAX_ATTEMPTS)
        .initial_delay(Duration::ZERO)
        .build()
        .unwrap()
}

#[test]
fn a_ten_percent_budget_caps_retries_in_a_storm_and_refuses_no_first_attempt() {
    // A window longer than the test: the cap is then exactly 10 % of the first attempts.
    let budget = RetryBudget::new(0.1, 0, Duration::from_secs(3600)).unwrap();
    let retrier = Retrier::new(policy()).name("storm").budget(budget);
    let (kinds, snapshotter) = with_recorder(|| storm(retrier));
    let counters = Counters::take(&snapshotter);
    let tries = counters.get(m::ATTEMPTS_TOTAL, "storm", &[("outcome", "transient")]);
    let retries = counters.get(m::RETRIES_TOTAL, "storm", &[]);
    let refused = counters.get(m::GIVE_UPS_TOTAL, "storm", &[("reason", "budget")]);
    let exhausted = counters.get(m::GIVE_UPS_TOTAL, "storm", &[("reason", "attempts")]);
    eprintln!(
        "budget 10 %: {OPERATIONS} operations, {tries} tries, {retries} retries, \
         {refused} refused by the budget, {exhausted} out of attempts"
    );
    assert_eq!(
        tries - retries,
        OPERATIONS as u64,
        "every first attempt was made"
    );
    assert!(retries <= OPERATIONS as u64 / 10, "{retries} retries");
    assert!(retries > 0, "the budget allows some retries");
    assert_eq!(refused + exhausted, OPERATIONS as u64);
    let by_budget = kinds
        .iter()
        .filter(|kind| **kind == ErrorKind::BudgetExhausted)
        .count();
    assert_eq!(
        by_budget as u64, refused,
        "callers were told why: {kinds:?}"
    );
}

#[test]
fn without_a_budget_the_same_storm_retries_every_operation_to_its_last_attempt() {
    let retrier = Retrier::new(policy()).name("storm");
    let (kinds, snapshotter) = with_recorder(|| storm(retrier));
    let retries = Counters::take(&snapshotter).get(m::RETRIES_TOTAL, "storm", &[]);
    eprintln!("no budget: {OPERATIONS} operations, {retries} retries");
    assert_eq!(retries, OPERATIONS as u64 * u64::from(MAX_ATTEMPTS - 1));
    assert!(kinds.iter().all(|kind| *kind == ErrorKind::RetryExhausted));
}

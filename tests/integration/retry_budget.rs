//! A retry budget under a storm of failing operations, counted from the metrics: retries stay
//! within the budget, and no first attempt is refused.

use std::time::Duration;

use dbretry::deadpool_sqlite::{Manager, Pool};
use dbretry::sqlite::SqliteOptions;
use dbretry::{ErrorKind, Retrier, RetryBudget, RetryPolicy, metrics as m};
use futures_util::StreamExt;
use rusqlite::Connection;

use crate::metrics::{Snapshot, with_recorder};

/// The counter `name` of pool `storm` in the operation phase with `extra` labels (0 if never
/// incremented).
fn storm_counter(snapshot: &Snapshot, name: &str, extra: &[(&str, &str)]) -> u64 {
    let labels: Vec<(&str, &str)> = [("pool", "storm"), ("phase", "operation")]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    snapshot.counter(name, &labels)
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
    let counters = Snapshot::take(&snapshotter);
    let tries = storm_counter(&counters, m::ATTEMPTS_TOTAL, &[("outcome", "transient")]);
    let retries = storm_counter(&counters, m::RETRIES_TOTAL, &[]);
    let refused = storm_counter(&counters, m::GIVE_UPS_TOTAL, &[("reason", "budget")]);
    let exhausted = storm_counter(&counters, m::GIVE_UPS_TOTAL, &[("reason", "attempts")]);
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
    let retries = storm_counter(&Snapshot::take(&snapshotter), m::RETRIES_TOTAL, &[]);
    eprintln!("no budget: {OPERATIONS} operations, {retries} retries");
    assert_eq!(retries, OPERATIONS as u64 * u64::from(MAX_ATTEMPTS - 1));
    assert!(kinds.iter().all(|kind| *kind == ErrorKind::RetryExhausted));
}

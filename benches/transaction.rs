//! The transaction helper's cost on a healthy database: `Retrier::transaction(..).run(..)`
//! against the same transaction written by hand (checkout, BEGIN, one UPDATE, COMMIT), on the
//! same pool.
//!
//! The machine these run on is shared, so each pair is measured interleaved: every sample
//! runs the two variants in turn and times only its own, so that both see the same load and
//! their ratio means something.
//!
//! ```text
//! cargo bench --bench transaction --all-features
//! ```

#[allow(unused_imports)]
#[path = "../tests/integration/support/mod.rs"]
mod support;

use std::time::Duration;

use std::future::Future;
use std::time::Instant;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use dbretry::sqlite::SqliteOptions;
use dbretry::{Retrier, RetryPolicy};
use rusqlite::TransactionBehavior;
use support::PgCluster;
use tokio_postgres::NoTls;

const UPDATE: &str = "UPDATE counter SET n = n + 1";

/// Benchmarks `by_hand` and `helper` as `{pool} by hand` and `{pool} helper`, interleaved.
fn pair<A, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    pool: &str,
    by_hand: impl Fn() -> A,
    helper: impl Fn() -> B,
) where
    A: Future<Output = ()>,
    B: Future<Output = ()>,
{
    for timed_first in [true, false] {
        let name = if timed_first { "by hand" } else { "helper" };
        group.bench_function(format!("{pool} {name}"), |b| {
            b.to_async(runtime).iter_custom(|iters| {
                let (by_hand, helper) = (&by_hand, &helper);
                async move {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let started = Instant::now();
                        by_hand().await;
                        let hand = started.elapsed();
                        let started = Instant::now();
                        helper().await;
                        timed += if timed_first { hand } else { started.elapsed() };
                    }
                    timed
                }
            })
        });
    }
}

fn postgres(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pg = runtime.block_on(PgCluster::start());
    runtime.block_on(pg.execute("CREATE TABLE counter (n int8); INSERT INTO counter VALUES (0)"));
    let config = pg.config();
    let deadpool = dbretry::deadpool_postgres::Pool::builder(
        dbretry::deadpool_postgres::Manager::new(config.clone(), NoTls),
    )
    .max_size(4)
    .build()
    .unwrap();
    let bb8 = runtime.block_on(async {
        dbretry::bb8::Pool::new(
            bb8::Pool::builder().max_size(4),
            dbretry::bb8_postgres::PostgresConnectionManager::new(config, NoTls),
        )
        .await
        .unwrap()
    });
    let retrier = Retrier::new(RetryPolicy::default());

    let mut group = c.benchmark_group("postgres transaction");
    group.measurement_time(Duration::from_secs(4));
    pair(
        &mut group,
        &runtime,
        "deadpool",
        || async {
            let mut client = deadpool.get().await.unwrap();
            let tx = client.transaction().await.unwrap();
            tx.execute(UPDATE, &[]).await.unwrap();
            tx.commit().await.unwrap();
        },
        || async {
            retrier
                .transaction(&deadpool)
                .run(async |tx| tx.execute(UPDATE, &[]).await)
                .await
                .unwrap();
        },
    );
    pair(
        &mut group,
        &runtime,
        "bb8",
        || async {
            let mut client = bb8.get().await.unwrap();
            let tx = client.transaction().await.unwrap();
            tx.execute(UPDATE, &[]).await.unwrap();
            tx.commit().await.unwrap();
        },
        || async {
            retrier
                .transaction(&bb8)
                .run(async |tx| tx.execute(UPDATE, &[]).await)
                .await
                .unwrap();
        },
    );
    group.finish();
    drop(pg);
}

fn sqlite(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The pool's connections are dropped on the runtime's blocking threads.
    let _runtime = runtime.enter();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.sqlite3");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE counter (n INTEGER); INSERT INTO counter VALUES (0)")
        .unwrap();
    // WAL with synchronous = NORMAL, as services run SQLite: commits without an fsync each.
    let options = SqliteOptions::new(&path)
        .wal(true)
        .pragma("synchronous", "NORMAL");
    let pool = dbretry::deadpool_sqlite::Pool::builder(
        dbretry::deadpool_sqlite::Manager::builder(options).build(),
    )
    .max_size(4)
    .build()
    .unwrap();
    let retrier = Retrier::new(RetryPolicy::LOCK_CONFLICTS);

    let mut group = c.benchmark_group("sqlite transaction");
    group.measurement_time(Duration::from_secs(4));
    pair(
        &mut group,
        &runtime,
        "deadpool",
        || async {
            let conn = pool.get().await.unwrap();
            conn.interact(|c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.execute(UPDATE, [])?;
                tx.commit()
            })
            .await
            .unwrap()
            .unwrap();
        },
        || async {
            retrier
                .transaction(&pool)
                .run(|tx| tx.execute(UPDATE, []))
                .await
                .unwrap();
        },
    );
    group.finish();
}

criterion_group!(benches, postgres, sqlite);
criterion_main!(benches);

//! Checkout overhead on a healthy server: `get()` and drop of a pooled connection, dbretry's
//! managers against the plain ones of the same pool crate, same recycling (Fast).
//!
//! ```text
//! cargo bench --bench checkout --all-features
//! ```

#[allow(unused_imports)]
#[path = "../tests/integration/support/mod.rs"]
mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use deadpool_postgres::{ManagerConfig, RecyclingMethod};
use support::PgCluster;
use tokio_postgres::NoTls;

fn checkout(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pg = runtime.block_on(PgCluster::start());
    let config = pg.config();
    let fast = || ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };

    let plain_deadpool = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::from_config(
        config.clone(),
        NoTls,
        fast(),
    ))
    .max_size(4)
    .build()
    .unwrap();
    let ours_deadpool = dbretry::deadpool_postgres::Pool::builder(
        dbretry::deadpool_postgres::Manager::from_config(config.clone(), NoTls, fast()),
    )
    .max_size(4)
    .build()
    .unwrap();
    let plain_bb8 = runtime.block_on(async {
        bb8::Pool::builder()
            .max_size(4)
            .build(bb8_postgres::PostgresConnectionManager::new(
                config.clone(),
                NoTls,
            ))
            .await
            .unwrap()
    });
    let ours_bb8 = runtime.block_on(async {
        dbretry::bb8::Pool::new(
            bb8::Pool::builder().max_size(4),
            dbretry::bb8_postgres::PostgresConnectionManager::new(config.clone(), NoTls),
        )
        .await
        .unwrap()
    });

    let mut group = c.benchmark_group("checkout");
    group.bench_function("deadpool-postgres", |b| {
        b.to_async(&runtime)
            .iter(|| async { drop(plain_deadpool.get().await.unwrap()) })
    });
    group.bench_function("dbretry deadpool", |b| {
        b.to_async(&runtime)
            .iter(|| async { drop(ours_deadpool.get().await.unwrap()) })
    });
    group.bench_function("bb8-postgres", |b| {
        b.to_async(&runtime)
            .iter(|| async { drop(plain_bb8.get().await.unwrap()) })
    });
    group.bench_function("dbretry bb8", |b| {
        b.to_async(&runtime)
            .iter(|| async { drop(ours_bb8.get().await.unwrap()) })
    });
    group.finish();
    drop(pg);
}

criterion_group!(benches, checkout);
criterion_main!(benches);

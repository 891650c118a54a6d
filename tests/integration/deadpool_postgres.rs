//! The deadpool manager for PostgreSQL against real servers.

use std::time::Duration;

use dbretry::deadpool_postgres::{Manager, Pool, PoolError, RecyclingMethod};
use dbretry::{ErrorKind, RetryPolicy};
use tokio_postgres::NoTls;

use crate::load::{Load, Step};
use crate::support::{self, PgCluster};

/// A pool policy: retries bounded by time, probing at least every 100 ms.
pub(crate) fn pool_policy(budget: Duration) -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(u32::MAX)
        .max_delay(Duration::from_millis(100))
        .max_elapsed(budget)
        .build()
        .unwrap()
}

fn pool(config: tokio_postgres::Config, policy: RetryPolicy, max_size: usize) -> Pool {
    let manager = Manager::builder(config, NoTls)
        .policy(policy)
        .recycling_method(RecyclingMethod::Fast)
        .build();
    Pool::builder(manager).max_size(max_size).build().unwrap()
}

async fn select_one(pool: &Pool) -> Result<i32, String> {
    let client = pool.get().await.map_err(|e| format!("get: {e}"))?;
    let row = client
        .query_one("SELECT 1", &[])
        .await
        .map_err(|e| format!("query: {e}"))?;
    Ok(row.get(0))
}

fn backend_error(error: PoolError) -> dbretry::Error {
    match error {
        PoolError::Backend(error) => error,
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_wait_for_a_server_that_is_not_up_yet_and_none_errors() {
    let pg = PgCluster::init().await;
    let pool = pool(pg.config(), pool_policy(Duration::from_secs(20)), 4);
    let diagnostics = pool.manager().diagnostics();
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { select_one(&pool).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pg.start_server().await;
    for caller in callers {
        assert_eq!(caller.await.unwrap(), Ok(1));
    }
    let attempts = diagnostics.connect_attempts();
    assert_eq!(attempts.permanent, 0);
    assert!(
        attempts.succeeded >= 1 && attempts.succeeded <= 4,
        "{attempts:?}"
    );
    // One shared probe per ~100 ms while the server was down, not one per caller.
    assert!(attempts.transient <= 40, "{attempts:?}");
    assert!(attempts.transient >= 5, "{attempts:?}");
}

#[tokio::test]
async fn every_caller_fails_at_its_deadline_with_the_last_real_cause_when_the_server_never_comes() {
    let port = support::free_port();
    let config: tokio_postgres::Config = format!("postgres://app:pw@127.0.0.1:{port}/app")
        .parse()
        .unwrap();
    let pool = pool(config, pool_policy(Duration::from_millis(800)), 4);
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.get().await.map(drop) })
        })
        .collect();
    for caller in callers {
        let error = backend_error(caller.await.unwrap().unwrap_err());
        assert_eq!(error.kind(), ErrorKind::Timeout);
        assert!(error.attempts() >= 2, "{error:?}");
        let io = error.find_cause::<std::io::Error>();
        assert_eq!(
            io.map(|e| e.kind()),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
        assert!(error.to_string().contains("Connection refused"), "{error}");
    }
}

#[tokio::test]
async fn a_wrong_password_fails_after_one_attempt_with_28p01() {
    let pg = PgCluster::start().await;
    let config: tokio_postgres::Config = pg
        .url_with(support::SUPERUSER, "wrong", support::DATABASE)
        .parse()
        .unwrap();
    let pool = pool(config, pool_policy(Duration::from_secs(30)), 4);
    let seen = pg.connection_count_seen();
    let error = backend_error(pool.get().await.unwrap_err());
    assert_eq!(error.kind(), ErrorKind::Connection);
    assert_eq!(error.attempts(), 1);
    assert_eq!(error.sqlstate(), Some("28P01"));
    assert_eq!(pg.connection_count_seen() - seen, 1);
}

#[tokio::test]
async fn a_missing_database_fails_after_one_attempt_with_3d000() {
    let pg = PgCluster::start().await;
    let config: tokio_postgres::Config = pg
        .url_with(support::SUPERUSER, support::PASSWORD, "no_such_db")
        .parse()
        .unwrap();
    let pool = pool(config, pool_policy(Duration::from_secs(30)), 4);
    let error = backend_error(pool.get().await.unwrap_err());
    assert_eq!(error.kind(), ErrorKind::Connection);
    assert_eq!(error.attempts(), 1);
    assert_eq!(error.sqlstate(), Some("3D000"));
    assert!(
        error.to_string().contains("hint: check the database name"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_restart_under_load_gives_no_get_error_and_no_dead_connection_afterwards() {
    let pg = PgCluster::start().await;
    const BUDGET: Duration = Duration::from_secs(20);
    let pool = pool(pg.config(), pool_policy(BUDGET), 10);
    let load = Load::start(32, {
        let pool = pool.clone();
        move || {
            let pool = pool.clone();
            async move {
                match pool.get().await {
                    Ok(client) if client.simple_query("SELECT 1").await.is_ok() => Step::Ok,
                    Ok(_) => Step::QueryFailed,
                    Err(_) => Step::GetFailed,
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let old_postmaster = pg.postmaster_pid();
    pg.restart_fast().await;
    assert_ne!(pg.postmaster_pid(), old_postmaster, "the server restarted");
    let ok_at_restart = load.ok();
    load.wait_for_more_than(ok_at_restart, BUDGET).await;
    let (ok, get_errors) = load.stop().await;
    assert_eq!(get_errors, 0);
    assert!(ok_at_restart > 0);
    assert!(ok > ok_at_restart, "work resumed after the restart");

    // Every connection the pool hands out now works.
    let clients: Vec<_> = futures_all(&pool, 10).await;
    for client in &clients {
        client
            .simple_query("SELECT 1")
            .await
            .expect("a live connection");
    }
}

async fn futures_all(pool: &Pool, n: usize) -> Vec<dbretry::deadpool_postgres::Client> {
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(pool.get().await.unwrap());
    }
    clients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_waiting_gets_leak_no_permit_or_connection() {
    let pg = PgCluster::start().await;
    let pool = pool(pg.config(), pool_policy(Duration::from_secs(20)), 4);
    drop(pool.get().await.unwrap());
    pg.stop_fast().await;
    // 20 callers give up (their futures are dropped) while the pool is backing off.
    let waiting: Vec<_> = (0..20)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_millis(300), pool.get())
                    .await
                    .is_err()
            })
        })
        .collect();
    for waiter in waiting {
        assert!(
            waiter.await.unwrap(),
            "the get should still have been waiting"
        );
    }
    pg.start_server().await;
    let status = pool.status();
    assert_eq!(status.waiting, 0);
    assert!(status.size <= 4, "{status:?}");
    // All four slots can be checked out at once: no permit leaked.
    let clients = futures_all(&pool, 4).await;
    assert_eq!(pool.status().size, 4);
    for client in &clients {
        client.simple_query("SELECT 1").await.unwrap();
    }
}

//! The bb8 manager for PostgreSQL against real servers.

use std::time::Duration;

use dbretry::bb8::Pool;
use dbretry::bb8_postgres::PostgresConnectionManager;
use dbretry::{ErrorKind, RetryPolicy};
use tokio_postgres::NoTls;

use crate::deadpool_postgres::pool_policy;
use crate::load::{Load, Step};
use crate::support::{self, PgCluster};

type Manager = PostgresConnectionManager<NoTls>;

fn manager(config: tokio_postgres::Config, policy: RetryPolicy) -> Manager {
    PostgresConnectionManager::builder(config, NoTls)
        .policy(policy)
        .build()
}

async fn pool(config: tokio_postgres::Config, policy: RetryPolicy, max_size: u32) -> Pool<Manager> {
    Pool::new(
        bb8::Pool::builder().max_size(max_size),
        manager(config, policy),
    )
    .await
    .unwrap()
}

async fn select_one(pool: &Pool<Manager>) -> Result<i32, String> {
    let client = pool.get().await.map_err(|e| format!("get: {e}"))?;
    let row = client
        .query_one("SELECT 1", &[])
        .await
        .map_err(|e| format!("query: {e}"))?;
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_wait_for_a_server_that_is_not_up_yet_and_none_errors() {
    let pg = PgCluster::init().await;
    let pool = pool(pg.config(), pool_policy(Duration::from_secs(20)), 4).await;
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
    let attempts = pool.diagnostics().connect_attempts();
    assert_eq!(attempts.permanent, 0);
    assert!(
        attempts.transient >= 5 && attempts.transient <= 40,
        "{attempts:?}"
    );
}

#[tokio::test]
async fn a_wrong_password_reaches_the_caller_at_once_with_28p01_not_timed_out() {
    let pg = PgCluster::start().await;
    let config: tokio_postgres::Config = pg
        .url_with(support::SUPERUSER, "wrong", support::DATABASE)
        .parse()
        .unwrap();
    let pool = pool(config, pool_policy(Duration::from_secs(30)), 4).await;
    let seen = pg.connection_count_seen();
    let error = pool.get().await.map(drop).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection);
    assert_eq!(error.attempts(), 1);
    assert_eq!(error.sqlstate(), Some("28P01"));
    assert!(error.elapsed() < Duration::from_secs(30));
    assert_eq!(pg.connection_count_seen() - seen, 1);
}

#[tokio::test]
async fn a_plain_bb8_pool_times_out_but_the_diagnostics_keep_the_real_cause() {
    let pg = PgCluster::start().await;
    let config: tokio_postgres::Config = pg
        .url_with(support::SUPERUSER, support::PASSWORD, "no_such_db")
        .parse()
        .unwrap();
    let manager = manager(config, pool_policy(Duration::from_millis(500)));
    let diagnostics = manager.diagnostics();
    let pool = bb8::Pool::builder()
        .retry_connection(false)
        .connection_timeout(Duration::from_millis(500))
        .build(manager)
        .await
        .unwrap();
    assert!(matches!(pool.get().await, Err(bb8::RunError::TimedOut)));
    let last = diagnostics
        .last_connect_error()
        .expect("the connect error was recorded");
    assert_eq!(last.sqlstate(), Some("3D000"));
    assert_eq!(last.class(), dbretry::ErrorClass::Permanent);
}

#[tokio::test]
async fn every_caller_fails_at_its_deadline_with_the_last_real_cause_when_the_server_never_comes() {
    let port = support::free_port();
    let config: tokio_postgres::Config = format!("postgres://app:pw@127.0.0.1:{port}/app")
        .parse()
        .unwrap();
    let pool = pool(config, pool_policy(Duration::from_millis(800)), 4).await;
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.get().await.map(drop) })
        })
        .collect();
    for caller in callers {
        let error = caller.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Timeout);
        let io = error.find_cause::<std::io::Error>();
        assert_eq!(
            io.map(|e| e.kind()),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_restart_under_load_gives_no_get_error_and_no_dead_connection_afterwards() {
    let pg = PgCluster::start().await;
    const BUDGET: Duration = Duration::from_secs(20);
    let pool = pool(pg.config(), pool_policy(BUDGET), 10).await;
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
    assert!(ok > ok_at_restart, "work resumed after the restart");
    for _ in 0..20 {
        let client = pool.get().await.unwrap();
        client
            .simple_query("SELECT 1")
            .await
            .expect("a live connection");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_waiting_gets_leak_no_connection() {
    let pg = PgCluster::start().await;
    let pool = pool(pg.config(), pool_policy(Duration::from_secs(20)), 4).await;
    drop(pool.get().await.unwrap());
    pg.stop_fast().await;
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
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(pool.get().await.unwrap());
    }
    for client in &clients {
        client.simple_query("SELECT 1").await.unwrap();
    }
    assert_eq!(pool.state().connections, 4);
}

//! The per-pool circuit breaker against a real server that is down, then back.

use std::time::Duration;

use dbretry::deadpool_postgres::{Manager, Pool, PoolError};
use dbretry::{CircuitBreaker, ErrorKind, RetryPolicy};
use tokio_postgres::NoTls;

use crate::support::PgCluster;

fn get_error(result: Result<dbretry::deadpool_postgres::Client, PoolError>) -> dbretry::Error {
    match result {
        Err(PoolError::Backend(error)) => error,
        other => panic!("expected a backend error, got {:?}", other.map(drop)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_fails_fast_without_connecting_then_admits_one_probe() {
    let pg = PgCluster::start().await;
    pg.stop_fast().await;
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .initial_delay(Duration::from_millis(10))
        .build()
        .unwrap();
    let cool_down = Duration::from_millis(800);
    let manager = Manager::builder(pg.config(), NoTls)
        .policy(policy)
        .circuit_breaker(CircuitBreaker::new(3, cool_down).unwrap())
        .build();
    let diagnostics = manager.diagnostics();
    let pool = Pool::builder(manager).max_size(4).build().unwrap();

    // Three transient failures open the circuit.
    let first = get_error(pool.get().await);
    assert_eq!(first.kind(), ErrorKind::RetryExhausted);
    assert_eq!(diagnostics.connect_attempts().transient, 3);

    // While open: fail fast, distinct error, the real cause kept, no attempt made.
    for _ in 0..5 {
        let error = get_error(pool.get().await);
        assert_eq!(error.kind(), ErrorKind::CircuitOpen);
        assert_eq!(error.attempts(), 0);
        assert!(error.find_cause::<std::io::Error>().is_some(), "{error:?}");
        assert!(
            error.to_string().contains("circuit breaker is open"),
            "{error}"
        );
    }
    assert_eq!(diagnostics.connect_attempts().total(), 3);

    // After the cool-down, with the server back, exactly one probe closes the circuit.
    pg.start_server().await;
    tokio::time::sleep(cool_down).await;
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.get().await.map(drop) })
        })
        .collect();
    let mut served = 0;
    for caller in callers {
        match caller.await.unwrap() {
            Ok(()) => served += 1,
            Err(error) => assert_eq!(get_error(Err(error)).kind(), ErrorKind::CircuitOpen),
        }
    }
    assert!(served >= 1, "the probe went through");
    let client = pool
        .get()
        .await
        .expect("the circuit closed after the probe");
    client.simple_query("SELECT 1").await.unwrap();
    assert_eq!(diagnostics.connect_attempts().transient, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_probe_opens_the_circuit_again() {
    let pg = PgCluster::start().await;
    pg.stop_fast().await;
    let cool_down = Duration::from_millis(300);
    let manager = Manager::builder(pg.config(), NoTls)
        .policy(
            RetryPolicy::builder()
                .max_attempts(2)
                .initial_delay(Duration::ZERO)
                .build()
                .unwrap(),
        )
        .circuit_breaker(CircuitBreaker::new(2, cool_down).unwrap())
        .build();
    let diagnostics = manager.diagnostics();
    let pool = Pool::builder(manager).max_size(2).build().unwrap();
    get_error(pool.get().await);
    assert_eq!(get_error(pool.get().await).kind(), ErrorKind::CircuitOpen);
    tokio::time::sleep(cool_down).await;
    // The one probe fails (the server is still down): its caller is told the circuit is open
    // and it stays open for another cool-down.
    let probe = get_error(pool.get().await);
    assert_eq!(probe.kind(), ErrorKind::CircuitOpen);
    assert_eq!(probe.attempts(), 1);
    assert_eq!(diagnostics.connect_attempts().transient, 3);
    assert_eq!(get_error(pool.get().await).attempts(), 0);
}

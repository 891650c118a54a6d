//! PostgreSQL errors produced by real servers, classified.

use std::time::Duration;

use dbretry::{Classify, ErrorClass, ErrorKind, Phase, Retrier, RetryPolicy};
use tokio_postgres::NoTls;

use crate::support::{self, PgCluster};

async fn connect_error(url: &str) -> tokio_postgres::Error {
    let config: tokio_postgres::Config = url.parse().unwrap();
    config
        .connect(NoTls)
        .await
        .map(drop)
        .expect_err("the connect should fail")
}

fn one_attempt_policy() -> RetryPolicy {
    RetryPolicy::builder().jitter(false).build().unwrap()
}

#[tokio::test]
async fn nothing_listening_is_transient() {
    let port = support::free_port();
    let error = connect_error(&format!("postgres://u:p@127.0.0.1:{port}/db")).await;
    assert_eq!(
        support::io_error_kind(&error),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
    assert_eq!(error.classify(Phase::Connect), ErrorClass::Transient);
}

#[tokio::test]
async fn wrong_password_is_permanent_and_fails_after_one_attempt_with_its_sqlstate() {
    let pg = PgCluster::start().await;
    let url = pg.url_with(support::SUPERUSER, "not-the-password", support::DATABASE);
    let error = connect_error(&url).await;
    assert_eq!(support::sqlstate(&error), Some("28P01"));
    assert_eq!(error.classify(Phase::Connect), ErrorClass::Permanent);

    let seen_before = pg.connection_count_seen();
    let retrier = Retrier::new(one_attempt_policy()).phase(Phase::Connect);
    let error = retrier
        .run(|| {
            let url = url.clone();
            async move { connect_error_result(&url).await }
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection);
    assert_eq!(error.attempts(), 1);
    assert_eq!(error.sqlstate(), Some("28P01"));
    assert_eq!(pg.connection_count_seen() - seen_before, 1);
    let message = error.to_string();
    assert!(
        message.contains("password authentication failed"),
        "{message}"
    );
    assert!(
        message.contains("hint: check the user name and password"),
        "{message}"
    );
    assert!(!message.contains("not-the-password"), "{message}");
}

async fn connect_error_result(url: &str) -> Result<(), tokio_postgres::Error> {
    support::connect_url(url).await.map(drop)
}

#[tokio::test]
async fn missing_database_is_permanent() {
    let pg = PgCluster::start().await;
    let error = connect_error(&pg.url_with(support::SUPERUSER, support::PASSWORD, "nope")).await;
    assert_eq!(support::sqlstate(&error), Some("3D000"));
    assert_eq!(error.classify(Phase::Connect), ErrorClass::Permanent);
}

#[tokio::test]
async fn a_server_that_is_starting_up_is_transient() {
    let pg = PgCluster::init().await;
    pg.start_as_not_ready_standby().await;
    let error = connect_error(&pg.url()).await;
    assert_eq!(support::sqlstate(&error), Some("57P03"));
    assert_eq!(error.classify(Phase::Connect), ErrorClass::Transient);
}

#[tokio::test]
async fn a_stopped_server_is_transient() {
    let pg = PgCluster::start().await;
    pg.stop_fast().await;
    let error = connect_error(&pg.url()).await;
    assert_eq!(error.classify(Phase::Connect), ErrorClass::Transient);
}

#[tokio::test]
async fn a_role_out_of_connection_slots_is_transient() {
    let pg = PgCluster::start().await;
    pg.execute("CREATE ROLE limited LOGIN PASSWORD 'limited-pw' CONNECTION LIMIT 1")
        .await;
    let url = pg.url_with("limited", "limited-pw", support::DATABASE);
    let _held = support::connect_url(&url).await.unwrap();
    let error = connect_error(&url).await;
    assert_eq!(support::sqlstate(&error), Some("53300"));
    assert_eq!(error.classify(Phase::Connect), ErrorClass::Transient);
}

#[tokio::test]
async fn a_session_terminated_by_the_server_is_transient_and_broken() {
    let pg = PgCluster::start().await;
    let client = support::connect(&pg.config()).await.unwrap();
    assert_eq!(pg.terminate_backends().await, 1);
    let error = client.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(error.classify(Phase::Operation), ErrorClass::Transient);
    assert!(error.breaks_connection());
}

#[tokio::test]
async fn serialization_failures_are_retryable_by_the_caller_only() {
    let pg = PgCluster::start().await;
    pg.execute("CREATE TABLE doctors (name text, on_call bool); INSERT INTO doctors VALUES ('a', true), ('b', true)")
        .await;
    let a = support::connect(&pg.config()).await.unwrap();
    let b = support::connect(&pg.config()).await.unwrap();
    let begin = "BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT count(*) FROM doctors WHERE on_call";
    a.batch_execute(begin).await.unwrap();
    b.batch_execute(begin).await.unwrap();
    a.batch_execute("UPDATE doctors SET on_call = false WHERE name = 'a'")
        .await
        .unwrap();
    b.batch_execute("UPDATE doctors SET on_call = false WHERE name = 'b'")
        .await
        .unwrap();
    a.batch_execute("COMMIT").await.unwrap();
    let error = b.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(support::sqlstate(&error), Some("40001"));
    assert_eq!(error.classify(Phase::Operation), ErrorClass::Transient);
    assert_eq!(error.classify(Phase::Connect), ErrorClass::Permanent);
}

#[tokio::test]
async fn deadlocks_are_retryable_by_the_caller_only() {
    let pg = PgCluster::start().await;
    pg.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)")
        .await;
    let a = support::connect(&pg.config()).await.unwrap();
    let b = support::connect(&pg.config()).await.unwrap();
    for client in [&a, &b] {
        client
            .batch_execute("SET deadlock_timeout = '50ms'; BEGIN")
            .await
            .unwrap();
    }
    a.batch_execute("UPDATE t SET id = id WHERE id = 1")
        .await
        .unwrap();
    b.batch_execute("UPDATE t SET id = id WHERE id = 2")
        .await
        .unwrap();
    let (ra, rb) = tokio::join!(
        a.batch_execute("UPDATE t SET id = id WHERE id = 2"),
        b.batch_execute("UPDATE t SET id = id WHERE id = 1"),
    );
    let error = ra
        .err()
        .or(rb.err())
        .expect("one side is chosen as the deadlock victim");
    assert_eq!(support::sqlstate(&error), Some("40P01"));
    assert_eq!(error.classify(Phase::Operation), ErrorClass::Transient);
    assert_eq!(error.classify(Phase::Connect), ErrorClass::Permanent);
}

#[tokio::test]
async fn bad_sql_is_permanent() {
    let pg = PgCluster::start().await;
    let client = support::connect(&pg.config()).await.unwrap();
    let error = client.simple_query("SELEC 1").await.unwrap_err();
    assert_eq!(support::sqlstate(&error), Some("42601"));
    assert_eq!(error.classify(Phase::Operation), ErrorClass::Permanent);
}

#[tokio::test]
async fn the_retry_helper_re_runs_a_transaction_after_a_lost_session() {
    let pg = PgCluster::start().await;
    pg.execute("CREATE TABLE visits (n int)").await;
    let first = support::connect(&pg.config()).await.unwrap();
    pg.terminate_backends().await;
    let mut clients = vec![first];
    let config = pg.config();
    let policy = RetryPolicy::builder()
        .initial_delay(Duration::from_millis(10))
        .build()
        .unwrap();
    let attempts = std::sync::Mutex::new(0);
    let inserted = dbretry::execute_with_retry(&policy, || {
        *attempts.lock().unwrap() += 1;
        let client = clients.pop();
        let config = config.clone();
        async move {
            let client = match client {
                Some(client) => client,
                None => support::connect(&config).await?,
            };
            client.execute("INSERT INTO visits VALUES (1)", &[]).await
        }
    })
    .await
    .unwrap();
    assert_eq!(inserted, 1);
    assert_eq!(*attempts.lock().unwrap(), 2);
}

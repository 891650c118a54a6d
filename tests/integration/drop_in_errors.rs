//! The pools' backend error is `dbretry::Error`, not the driver's; it answers the driver's
//! questions (`code()`, `as_db_error()`, `is_closed()`, `sqlite_error_code()`), and converts
//! from the driver's error with `into()` where `?` cannot (the orphan rule).

use dbretry::{Classify, ErrorClass, ErrorKind, RetryConfig};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::support::{PgCluster, SUPERUSER};

/// Inspecting a failed checkout, as written for deadpool-postgres; expanded once per crate.
macro_rules! inspect_checkout_code {
    ($pool_crate:ident) => {
        use $pool_crate::{Pool, PoolError};

        /// The SQLSTATE and server message of a failed checkout.
        pub async fn why_not(pool: &Pool) -> Option<(SqlState, String)> {
            match pool.get().await {
                Ok(_) => None,
                Err(PoolError::Backend(e)) => {
                    assert!(!e.is_closed());
                    let message = e.as_db_error().map(|db| db.message().to_owned());
                    Some((e.code()?.clone(), message?))
                }
                Err(other) => panic!("not a backend error: {other}"),
            }
        }
    };
}

mod inspect_on_deadpool_postgres {
    use super::*;
    inspect_checkout_code!(deadpool_postgres);
}

mod inspect_on_dbretry {
    use super::*;
    inspect_checkout_code!(dbretry_deadpool_postgres);
    use dbretry::deadpool_postgres as dbretry_deadpool_postgres;
}

#[tokio::test]
async fn a_failed_checkout_answers_code_and_as_db_error_as_deadpool_postgres_does() {
    let pg = PgCluster::start().await;
    let mut wrong = pg.config();
    wrong.password("not-the-password");
    let ours = dbretry::deadpool_postgres::Pool::builder(dbretry::deadpool_postgres::Manager::new(
        wrong.clone(),
        NoTls,
    ))
    .build()
    .unwrap();
    let theirs = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(wrong, NoTls))
        .build()
        .unwrap();
    let answer = inspect_on_dbretry::why_not(&ours).await;
    assert_eq!(answer, inspect_on_deadpool_postgres::why_not(&theirs).await);
    let (code, message) = answer.expect("the wrong password was refused");
    assert_eq!(code, SqlState::INVALID_PASSWORD);
    assert!(message.contains(SUPERUSER), "{message}");
}

#[tokio::test]
async fn a_closed_connection_error_says_is_closed_after_conversion() {
    let pg = PgCluster::start().await;
    let (client, connection) = pg.config().connect(NoTls).await.unwrap();
    let task = tokio::spawn(connection);
    assert_eq!(pg.terminate_backends().await, 1);
    let _ = task.await; // the connection has ended: the next request finds it closed
    let error = client.simple_query("SELECT 1").await.unwrap_err();
    assert!(error.is_closed());
    let ours = dbretry::Error::from(error);
    assert!(ours.is_closed());
    assert!(ours.breaks_connection());
    assert_eq!(ours.code(), None);
}

/// deadpool's postgres-actix-web example returns `PoolError` and uses `?` on the driver's
/// errors; with dbretry that `?` is the listed exception, written `.map_err(…into())`.
mod actix_example_shape {
    use dbretry::deadpool_postgres::{Client, Pool, PoolError};

    pub async fn titles(pool: &Pool, sql: &str) -> Result<Vec<String>, PoolError> {
        let client: Client = pool.get().await?;
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(|e| PoolError::Backend(e.into()))?;
        let rows = client
            .query(&stmt, &[])
            .await
            .map_err(|e| PoolError::Backend(e.into()))?;
        Ok(rows.into_iter().map(|row| row.get(0)).collect())
    }

    /// Code returning dbretry's error takes `?` on the driver's error directly.
    pub async fn count(client: &Client) -> Result<i64, dbretry::Error> {
        Ok(client
            .query_one("SELECT count(*) FROM t", &[])
            .await?
            .get(0))
    }
}

#[tokio::test]
async fn driver_errors_convert_into_the_backend_error_keeping_their_sqlstate() {
    let pg = PgCluster::start().await;
    pg.execute("CREATE TABLE t (title text); INSERT INTO t VALUES ('a')")
        .await;
    let pool = dbretry::deadpool_postgres::Pool::builder(dbretry::deadpool_postgres::Manager::new(
        pg.config(),
        NoTls,
    ))
    .build()
    .unwrap();
    assert_eq!(
        actix_example_shape::titles(&pool, "SELECT title FROM t")
            .await
            .unwrap(),
        ["a"]
    );
    let Err(dbretry::deadpool_postgres::PoolError::Backend(error)) =
        actix_example_shape::titles(&pool, "SELEC title FROM t").await
    else {
        panic!("bad SQL was accepted");
    };
    assert_eq!(error.code(), Some(&SqlState::SYNTAX_ERROR));
    assert_eq!(error.kind(), ErrorKind::Query);
    assert_eq!(error.class(), Some(ErrorClass::Permanent));
    let client = pool.get().await.unwrap();
    assert_eq!(actix_example_shape::count(&client).await.unwrap(), 1);
    pg.execute("DROP TABLE t").await;
    let error = actix_example_shape::count(&client).await.unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::UNDEFINED_TABLE));
}

#[tokio::test]
async fn a_failing_post_create_hook_reports_the_server_code() {
    use dbretry::deadpool_postgres::{
        ClientWrapper, Hook, HookError, Manager, Metrics, Pool, PoolError,
    };
    let pg = PgCluster::start().await;
    let pool = Pool::builder(Manager::new(pg.config(), NoTls))
        .post_create(Hook::async_fn(|client: &mut ClientWrapper, _: &Metrics| {
            Box::pin(async move {
                client
                    .batch_execute("SET no_such_setting = 1")
                    .await
                    .map_err(|e| HookError::Backend(e.into()))
            })
        }))
        .build()
        .unwrap();
    let Err(PoolError::PostCreateHook(HookError::Backend(error))) = pool.get().await else {
        panic!("the hook's error was lost");
    };
    assert_eq!(error.code(), Some(&SqlState::UNDEFINED_OBJECT));
    assert!(
        error
            .as_db_error()
            .unwrap()
            .message()
            .contains("no_such_setting")
    );
}

#[tokio::test]
async fn a_failed_sqlite_checkout_answers_sqlite_error_code_as_rusqlite_does() {
    let dir = tempfile::tempdir().unwrap();
    let unopenable = dir.path().join("no-such-dir").join("db.sqlite3");
    let theirs = deadpool_sqlite::Config::new(&unopenable)
        .create_pool(deadpool_sqlite::Runtime::Tokio1)
        .unwrap();
    let Err(deadpool_sqlite::PoolError::Backend(their_error)) = theirs.get().await else {
        panic!("deadpool-sqlite opened {unopenable:?}");
    };
    let ours = dbretry::deadpool_sqlite::Config {
        path: unopenable.clone(),
        retry: Some(RetryConfig::default().max_attempts(1)),
        ..Default::default()
    }
    .create_pool(dbretry::deadpool_sqlite::Runtime::Tokio1)
    .unwrap();
    let Err(dbretry::deadpool_sqlite::PoolError::Backend(error)) = ours.get().await else {
        panic!("dbretry opened {unopenable:?}");
    };
    assert_eq!(error.sqlite_error_code(), their_error.sqlite_error_code());
    assert_eq!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::CannotOpen)
    );
    assert_eq!(error.sqlite_error(), their_error.sqlite_error());
}

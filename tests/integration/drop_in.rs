//! Call-site code written for deadpool-postgres and bb8-postgres compiles unchanged against
//! dbretry's managers: each body below is expanded twice, once per crate, and only the import
//! differs. The dbretry expansion then runs against a real server.

use crate::support::PgCluster;

/// A service's data-access code, as written for deadpool-postgres.
macro_rules! deadpool_service_code {
    ($pool_crate:ident) => {
        use $pool_crate::{Client, Pool, PoolError};

        #[derive(Debug)]
        #[allow(dead_code)]
        pub enum AppError {
            Pool(PoolError),
            Db(tokio_postgres::Error),
        }

        impl From<PoolError> for AppError {
            fn from(error: PoolError) -> Self {
                Self::Pool(error)
            }
        }

        impl From<tokio_postgres::Error> for AppError {
            fn from(error: tokio_postgres::Error) -> Self {
                Self::Db(error)
            }
        }

        pub async fn count_users(pool: &Pool) -> Result<i64, AppError> {
            let client: Client = pool.get().await?;
            let stmt = client.prepare_cached("SELECT count(*) FROM users").await?;
            Ok(client.query_one(&stmt, &[]).await?.get(0))
        }

        #[allow(dead_code)]
        pub async fn add_user(pool: &Pool, name: &str) -> Result<(), AppError> {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            let stmt = tx
                .prepare_cached("INSERT INTO users (name) VALUES ($1)")
                .await?;
            tx.execute(&stmt, &[&name]).await?;
            tx.commit().await?;
            Ok(())
        }

        #[allow(dead_code)]
        pub async fn rename_serializable(
            pool: &Pool,
            from: &str,
            to: &str,
        ) -> Result<u64, AppError> {
            let mut client = pool.get().await?;
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::Serializable)
                .start()
                .await?;
            let changed = tx
                .execute("UPDATE users SET name = $2 WHERE name = $1", &[&from, &to])
                .await?;
            tx.commit().await?;
            Ok(changed)
        }
    };
}

/// A service's data-access code, as written for bb8-postgres.
macro_rules! bb8_service_code {
    ($manager_path:path) => {
        use bb8::{Pool, RunError};
        use tokio_postgres::NoTls;

        pub type ConnectionPool = Pool<$manager_path>;

        pub async fn count_users<E: std::fmt::Debug>(
            pool: &Pool<impl bb8::ManageConnection<Connection = tokio_postgres::Client, Error = E>>,
        ) -> Result<i64, String> {
            let client = pool
                .get()
                .await
                .map_err(|e: RunError<E>| format!("{e:?}"))?;
            let row = client
                .query_one("SELECT count(*) FROM users", &[])
                .await
                .map_err(|e| e.to_string())?;
            Ok(row.get(0))
        }

        #[allow(dead_code)]
        pub fn manager(url: &str) -> $manager_path {
            <$manager_path>::new_from_stringlike(url, NoTls).unwrap()
        }
    };
}

mod on_deadpool_postgres {
    deadpool_service_code!(deadpool_postgres);
}

mod on_dbretry_deadpool {
    deadpool_service_code!(dbretry_deadpool_postgres);
    use dbretry::deadpool_postgres as dbretry_deadpool_postgres;
}

mod on_bb8_postgres {
    bb8_service_code!(bb8_postgres::PostgresConnectionManager<tokio_postgres::NoTls>);
}

mod on_dbretry_bb8 {
    bb8_service_code!(dbretry::bb8_postgres::PostgresConnectionManager<tokio_postgres::NoTls>);
}

#[tokio::test]
async fn deadpool_postgres_call_sites_run_unchanged_on_the_dbretry_manager() {
    let pg = PgCluster::start().await;
    pg.execute("CREATE TABLE users (name text)").await;
    let manager = dbretry::deadpool_postgres::Manager::new(pg.config(), tokio_postgres::NoTls);
    let pool = dbretry::deadpool_postgres::Pool::builder(manager)
        .max_size(2)
        .build()
        .unwrap();
    on_dbretry_deadpool::add_user(&pool, "ada").await.unwrap();
    on_dbretry_deadpool::add_user(&pool, "bob").await.unwrap();
    assert_eq!(on_dbretry_deadpool::count_users(&pool).await.unwrap(), 2);
    assert_eq!(
        on_dbretry_deadpool::rename_serializable(&pool, "bob", "rob")
            .await
            .unwrap(),
        1
    );
    // The same code, on deadpool-postgres itself, for comparison.
    let plain = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(
        pg.config(),
        tokio_postgres::NoTls,
    ))
    .build()
    .unwrap();
    assert_eq!(on_deadpool_postgres::count_users(&plain).await.unwrap(), 2);
}

#[tokio::test]
async fn bb8_postgres_call_sites_run_unchanged_on_the_dbretry_manager() {
    let pg = PgCluster::start().await;
    pg.execute("CREATE TABLE users (name text); INSERT INTO users VALUES ('ada')")
        .await;
    let ours: on_dbretry_bb8::ConnectionPool = bb8::Pool::builder()
        .build(on_dbretry_bb8::manager(&pg.url()))
        .await
        .unwrap();
    assert_eq!(on_dbretry_bb8::count_users(&ours).await.unwrap(), 1);
    let theirs: on_bb8_postgres::ConnectionPool = bb8::Pool::builder()
        .build(on_bb8_postgres::manager(&pg.url()))
        .await
        .unwrap();
    assert_eq!(on_bb8_postgres::count_users(&theirs).await.unwrap(), 1);
}

#[tokio::test]
async fn deadpool_postgres_config_code_runs_unchanged_and_applies_every_setting() {
    let pg = PgCluster::start().await;
    // As written for deadpool_postgres::Config, with only the import changed.
    use dbretry::deadpool_postgres::{Config, Runtime, TargetSessionAttrs};
    let mut cfg = Config::new();
    cfg.url = Some(pg.url());
    cfg.target_session_attrs = Some(TargetSessionAttrs::ReadWrite);
    let pool = cfg
        .create_pool(Some(Runtime::Tokio1), tokio_postgres::NoTls)
        .unwrap();
    let client = pool.get().await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    // deadpool-postgres 0.14 drops target_session_attrs; dbretry applies it.
    assert_eq!(
        cfg.get_pg_config().unwrap().get_target_session_attrs(),
        tokio_postgres::config::TargetSessionAttrs::ReadWrite
    );
    let theirs = cfg.postgres.get_pg_config().unwrap();
    assert_eq!(
        theirs.get_target_session_attrs(),
        tokio_postgres::config::TargetSessionAttrs::Any
    );
    let invalid = Config {
        postgres: deadpool_postgres::Config {
            url: Some("postgres://u:hunter2@h/db?sslmode=bogus".into()),
            ..Default::default()
        },
        ..Config::default()
    };
    let error = invalid.get_pg_config().unwrap_err().to_string();
    assert!(
        error.starts_with("invalid `url`: invalid value for option `sslmode`"),
        "{error}"
    );
    assert!(!error.contains("hunter2"), "{error}");
}

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
    use dbretry::deadpool_postgres::{
        ChannelBinding, Config, LoadBalanceHosts, Runtime, TargetSessionAttrs,
    };
    let mut cfg = Config::new();
    cfg.url = Some(pg.url());
    cfg.target_session_attrs = Some(TargetSessionAttrs::ReadWrite);
    cfg.channel_binding = Some(ChannelBinding::Disable);
    cfg.load_balance_hosts = Some(LoadBalanceHosts::Random);
    let pool = cfg
        .create_pool(Some(Runtime::Tokio1), tokio_postgres::NoTls)
        .unwrap();
    let client = pool.get().await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    // deadpool-postgres 0.14 drops target_session_attrs; dbretry applies it.
    let applied = cfg.get_pg_config().unwrap();
    assert_eq!(
        applied.get_target_session_attrs(),
        tokio_postgres::config::TargetSessionAttrs::ReadWrite
    );
    assert_eq!(
        applied.get_channel_binding(),
        tokio_postgres::config::ChannelBinding::Disable
    );
    assert_eq!(
        applied.get_load_balance_hosts(),
        tokio_postgres::config::LoadBalanceHosts::Random
    );
    let theirs = deadpool_postgres::Config {
        url: Some(pg.url()),
        target_session_attrs: Some(TargetSessionAttrs::ReadWrite),
        ..Default::default()
    };
    assert_eq!(
        theirs.get_pg_config().unwrap().get_target_session_attrs(),
        tokio_postgres::config::TargetSessionAttrs::Any
    );
}

/// Code generic over deadpool-postgres's `GenericClient`, expanded once per crate: only the
/// import differs.
macro_rules! generic_client_code {
    ($pool_crate:ident) => {
        use tokio_postgres::Error;
        use $pool_crate::GenericClient;

        pub async fn count_users<C: GenericClient>(client: &C) -> Result<i64, Error> {
            let stmt = client.prepare_cached("SELECT count(*) FROM users").await?;
            Ok(client.query_one(&stmt, &[]).await?.get(0))
        }

        /// Inserts and counts inside a transaction, itself a `GenericClient`.
        pub async fn add_user<C: GenericClient>(client: &mut C, name: &str) -> Result<i64, Error> {
            let tx = client.transaction().await?;
            tx.execute("INSERT INTO users (name) VALUES ($1)", &[&name])
                .await?;
            let count = count_users(&tx).await?;
            tx.commit().await?;
            Ok(count)
        }

        /// Generic code may spawn: the trait's futures are `Send`.
        pub fn spawn_count<C: GenericClient + Send + 'static>(
            client: C,
        ) -> tokio::task::JoinHandle<Result<i64, Error>> {
            tokio::spawn(async move { count_users(&client).await })
        }
    };
}

mod generic_on_deadpool_postgres {
    generic_client_code!(deadpool_postgres);
}

mod generic_on_dbretry {
    generic_client_code!(dbretry_deadpool_postgres);
    use dbretry::deadpool_postgres as dbretry_deadpool_postgres;
}

#[tokio::test]
async fn code_generic_over_deadpool_postgres_generic_client_runs_on_dbretry_clients() {
    let pg = PgCluster::start().await;
    pg.execute("CREATE TABLE users (name text)").await;
    let manager = dbretry::deadpool_postgres::Manager::new(pg.config(), tokio_postgres::NoTls);
    let pool = dbretry::deadpool_postgres::Pool::builder(manager)
        .build()
        .unwrap();
    let mut client = pool.get().await.unwrap();
    assert_eq!(
        generic_on_dbretry::add_user(&mut client, "ada")
            .await
            .unwrap(),
        1
    );
    assert_eq!(generic_on_dbretry::count_users(&client).await.unwrap(), 1);
    assert_eq!(
        client.statement_cache.size(),
        1,
        "prepare_cached used the cache"
    );
    assert_eq!(
        generic_on_dbretry::spawn_count(client)
            .await
            .unwrap()
            .unwrap(),
        1
    );
    // The same code on deadpool-postgres itself, for comparison.
    let theirs = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(
        pg.config(),
        tokio_postgres::NoTls,
    ))
    .build()
    .unwrap();
    let mut client = theirs.get().await.unwrap();
    assert_eq!(
        generic_on_deadpool_postgres::add_user(&mut client, "bob")
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        generic_on_deadpool_postgres::spawn_count(client)
            .await
            .unwrap()
            .unwrap(),
        2
    );
}

/// Every public item of deadpool-postgres 0.14, deadpool-sqlite 0.14 and bb8-postgres 0.9 has
/// its namesake: these imports are the check.
#[allow(unused_imports)]
mod every_public_item_has_its_namesake {
    use dbretry::bb8_postgres::{PostgresConnectionManager, bb8, tokio_postgres};
    use dbretry::deadpool_postgres::{
        BuildError, ChannelBinding, Client, ClientWrapper, Config, ConfigConnectImpl, ConfigError,
        Connect, CreatePoolError, GenericClient, Hook, HookError, LoadBalanceHosts, Manager,
        ManagerConfig, Metrics, Object, ObjectId, Pool, PoolBuilder, PoolConfig, PoolError,
        QueueMode, RecyclingMethod, Runtime, SslMode, StatementCache, StatementCaches, Status,
        TargetSessionAttrs, TimeoutType, Timeouts, Transaction, TransactionBuilder, WeakPool,
    };
    use dbretry::deadpool_sqlite::{
        BuildError as _, Config as _, ConfigError as _, Connection, CreatePoolError as _,
        Hook as _, HookError as _, InteractError, Manager as _, Metrics as _, Object as _,
        ObjectId as _, Pool as _, PoolBuilder as _, PoolConfig as _, PoolError as _,
        QueueMode as _, Runtime as _, Status as _, SyncGuard, SyncWrapper, TimeoutType as _,
        Timeouts as _, WeakPool as _, rusqlite,
    };
}

/// A deadpool-postgres `Connect` of the user's, as its docs describe: counts its connects.
struct CountingConnect {
    inner: dbretry::deadpool_postgres::ConfigConnectImpl<tokio_postgres::NoTls>,
    connects: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl dbretry::deadpool_postgres::Connect for CountingConnect {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<
                        (tokio_postgres::Client, tokio::task::JoinHandle<()>),
                        tokio_postgres::Error,
                    >,
                > + Send
                + '_,
        >,
    > {
        self.connects
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.connect(pg_config)
    }
}

#[tokio::test]
async fn manager_from_connect_hooks_weak_pools_and_statement_caches_work_as_in_deadpool_postgres() {
    use dbretry::deadpool_postgres::{
        ClientWrapper, ConfigConnectImpl, Hook, HookError, Manager, ManagerConfig, Metrics, Pool,
    };
    let pg = PgCluster::start().await;
    let connects = std::sync::Arc::default();
    let connect = CountingConnect {
        inner: ConfigConnectImpl {
            tls: tokio_postgres::NoTls,
        },
        connects: std::sync::Arc::clone(&connects),
    };
    let manager = Manager::from_connect(pg.config(), connect, ManagerConfig::default());
    let pool = Pool::builder(manager)
        .max_size(2)
        .post_create(Hook::async_fn(|client: &mut ClientWrapper, _: &Metrics| {
            Box::pin(async move {
                client
                    .batch_execute("SET application_name = 'hooked'")
                    .await
                    .map_err(|e| HookError::Backend(e.into()))
            })
        }))
        .build()
        .unwrap();
    let first = pool.get().await.unwrap();
    let second = pool.get().await.unwrap();
    let row = first.query_one("SHOW application_name", &[]).await.unwrap();
    assert_eq!(row.get::<_, &str>(0), "hooked");
    assert_eq!(connects.load(std::sync::atomic::Ordering::SeqCst), 2);
    // deadpool-postgres's `statement_caches_clear` test.
    first.prepare_cached("SELECT 1").await.unwrap();
    second.prepare_cached("SELECT 1").await.unwrap();
    pool.manager().statement_caches.clear();
    assert_eq!(
        first.statement_cache.size() + second.statement_cache.size(),
        0
    );
    drop((first, second));
    let weak = pool.weak();
    assert_eq!(weak.upgrade().unwrap().status().size, 2);
    drop(pool);
    assert!(weak.upgrade().is_none());
}

/// bb8-postgres's `custom_state` example: a manager wrapping `PostgresConnectionManager` with
/// bb8-postgres's TLS bounds and a connection customizer. Changed: the imports, and (the
/// listed exception) its `Error` is dbretry's, so `is_valid` converts the driver's error.
mod bb8_custom_state {
    use std::collections::BTreeMap;
    use std::future::Future;
    use std::ops::Deref;
    use std::pin::Pin;

    use bb8::{CustomizeConnection, Pool};
    use dbretry::Error;
    use dbretry::bb8_postgres::PostgresConnectionManager;
    use tokio_postgres::config::Config;
    use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
    use tokio_postgres::{Client, Socket, Statement};

    pub async fn main(config: Config) -> i32 {
        let pg_mgr = CustomPostgresConnectionManager::new(config, tokio_postgres::NoTls);
        let pool = Pool::builder()
            .connection_customizer(Box::new(Customizer))
            .build(pg_mgr)
            .await
            .expect("build error");
        let connection = pool.get().await.expect("pool error");
        let row = connection
            .query_one(
                connection
                    .custom_state
                    .get(&QueryName::Addition)
                    .expect("statement not predefined"),
                &[],
            )
            .await
            .expect("query failed");
        row.get::<usize, i32>(0)
    }

    #[derive(Debug)]
    struct Customizer;

    impl CustomizeConnection<CustomPostgresConnection, Error> for Customizer {
        fn on_acquire<'a>(
            &'a self,
            conn: &'a mut CustomPostgresConnection,
        ) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>> {
            Box::pin(async {
                conn.custom_state
                    .insert(QueryName::BasicSelect, conn.prepare("SELECT 1").await?);
                conn.custom_state
                    .insert(QueryName::Addition, conn.prepare("SELECT 1 + 1 + 1").await?);
                Ok(())
            })
        }
    }

    struct CustomPostgresConnection {
        inner: Client,
        custom_state: BTreeMap<QueryName, Statement>,
    }

    impl CustomPostgresConnection {
        fn new(inner: Client) -> Self {
            Self {
                inner,
                custom_state: Default::default(),
            }
        }
    }

    impl Deref for CustomPostgresConnection {
        type Target = Client;

        fn deref(&self) -> &Self::Target {
            &self.inner
        }
    }

    struct CustomPostgresConnectionManager<Tls>
    where
        Tls: MakeTlsConnect<Socket>,
    {
        inner: PostgresConnectionManager<Tls>,
    }

    impl<Tls> CustomPostgresConnectionManager<Tls>
    where
        Tls: MakeTlsConnect<Socket>,
    {
        pub fn new(config: Config, tls: Tls) -> Self {
            Self {
                inner: PostgresConnectionManager::new(config, tls),
            }
        }
    }

    impl<Tls> bb8::ManageConnection for CustomPostgresConnectionManager<Tls>
    where
        Tls: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        <Tls as MakeTlsConnect<Socket>>::Stream: Send + Sync,
        <Tls as MakeTlsConnect<Socket>>::TlsConnect: Send,
        <<Tls as MakeTlsConnect<Socket>>::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        type Connection = CustomPostgresConnection;
        type Error = Error;

        async fn connect(&self) -> Result<Self::Connection, Self::Error> {
            let conn = self.inner.connect().await?;
            Ok(CustomPostgresConnection::new(conn))
        }

        async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
            Ok(conn.simple_query("").await.map(|_| ())?)
        }

        fn has_broken(&self, conn: &mut Self::Connection) -> bool {
            self.inner.has_broken(&mut conn.inner)
        }
    }

    #[derive(Debug, Ord, PartialOrd, Eq, PartialEq)]
    enum QueryName {
        BasicSelect,
        Addition,
    }
}

#[tokio::test]
async fn bb8_postgres_custom_state_example_runs_on_the_dbretry_manager() {
    let pg = PgCluster::start().await;
    assert_eq!(bb8_custom_state::main(pg.config()).await, 3);
}

#[tokio::test]
async fn bb8_postgres_manager_clones_into_independent_pools_as_bb8_postgres_does() {
    let pg = PgCluster::start().await;
    let manager =
        dbretry::bb8_postgres::PostgresConnectionManager::new(pg.config(), tokio_postgres::NoTls);
    let copy = manager.clone();
    let first = bb8::Pool::builder()
        .max_size(1)
        .build(manager)
        .await
        .unwrap();
    let second = bb8::Pool::builder().max_size(1).build(copy).await.unwrap();
    let (a, b) = (first.get().await.unwrap(), second.get().await.unwrap());
    a.simple_query("SELECT 1").await.unwrap();
    b.simple_query("SELECT 1").await.unwrap();
    assert_eq!(first.state().connections + second.state().connections, 2);
}

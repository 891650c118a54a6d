//! A drop-in for [deadpool-postgres](https://docs.rs/deadpool-postgres) whose connection creation
//! and recycling go through a retry policy.
//!
//! Every public name of deadpool-postgres 0.14 is here (`Config`, `ConfigError`, `Manager`,
//! `ManagerConfig`, `RecyclingMethod`, `Connect`, `ConfigConnectImpl`, `GenericClient`, `Pool`,
//! `Client`, `PoolError`, `Transaction`, `Runtime`, `Timeouts`, …), so swapping is a change of
//! `use deadpool_postgres::…` to `use dbretry::deadpool_postgres::…`. Pooled objects are
//! deadpool-postgres's own [`ClientWrapper`]: `prepare_cached`, transactions and the statement
//! cache behave exactly as before. The backend error is [`dbretry::Error`](crate::Error), which
//! answers `code()`, `as_db_error()` and `is_closed()` as `tokio_postgres::Error` does; the
//! crate README lists what that changes.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use dbretry::RetryPolicy;
//! use dbretry::deadpool_postgres::{Manager, Pool, RecyclingMethod};
//! use dbretry::deadpool_postgres::tokio_postgres::NoTls;
//!
//! let pg_config: tokio_postgres::Config = "postgres://app@db.internal/app".parse()?;
//! let manager = Manager::builder(pg_config, NoTls)
//!     .policy(RetryPolicy::from_env()?)
//!     .recycling_method(RecyclingMethod::Fast)
//!     .build();
//! let pool = Pool::builder(manager).max_size(16).build()?;
//!
//! let client = pool.get().await?; // waits out a restart instead of failing
//! let stmt = client.prepare_cached("SELECT 1").await?;
//! client.query(&stmt, &[]).await?;
//! # Ok(()) }
//! ```

mod config;
mod generic_client;
mod statement_caches;

use std::fmt;
use std::future::Future;

use deadpool::managed;
pub use deadpool::managed::reexports::*;
pub use deadpool_postgres::{
    ChannelBinding, ClientWrapper, ConfigConnectImpl, Connect, LoadBalanceHosts, ManagerConfig,
    RecyclingMethod, SslMode, StatementCache, TargetSessionAttrs, Transaction, TransactionBuilder,
};
pub use tokio_postgres;
use tokio_postgres::Config as PgConfig;

use crate::Error;
use crate::manager::{Backend, PoolContext, RetryingManager, backend::sealed};
use crate::postgres::{ConnectError, DeadPeerDetection, ErasedTls, MakeTls, PgTarget};

pub use self::config::{Config, ConfigError};
pub use self::generic_client::GenericClient;
pub use self::statement_caches::StatementCaches;

deadpool::managed_reexports!(
    "dbretry",
    Manager,
    managed::Object<Manager>,
    Error,
    ConfigError
);

/// A pooled PostgreSQL client, as deadpool-postgres's `Client`.
pub type Client = Object;

/// Creates and recycles PostgreSQL connections for a deadpool [`Pool`], retrying transient
/// connect failures under a [`RetryPolicy`](crate::RetryPolicy) with one shared reconnect
/// effort per pool. Derefs to its [`Connector`] (`manager.statement_caches`, as in
/// deadpool-postgres).
pub type Manager = RetryingManager<Connector>;

/// Builds a [`Manager`]; see [`Manager::builder`](RetryingManager::builder).
pub type ManagerBuilder = crate::ManagerBuilder<Connector>;

/// How deadpool-postgres connections are opened and recycled: the tokio-postgres config, the
/// connector, deadpool-postgres's [`ManagerConfig`], and the statement caches of the clients
/// handed out.
pub struct Connector {
    target: PgTarget,
    connect: ConnectWith,
    config: ManagerConfig,
    /// The statement caches of the clients handed out by the pool (as deadpool-postgres).
    pub statement_caches: StatementCaches,
}

enum ConnectWith {
    /// Ours: the connection task's error is recorded.
    Tls(Box<dyn ErasedTls>),
    /// A deadpool-postgres [`Connect`] of the user's.
    Custom(Box<dyn Connect>),
}

impl RetryingManager<Connector> {
    /// A manager with the default [`RetryPolicy`](crate::RetryPolicy) and [`ManagerConfig`]:
    /// the same signature as `deadpool_postgres::Manager::new`.
    pub fn new<T: MakeTls>(pg_config: PgConfig, tls: T) -> Self {
        Self::builder(pg_config, tls).build()
    }

    /// A manager with the default [`RetryPolicy`](crate::RetryPolicy): the same signature as
    /// `deadpool_postgres::Manager::from_config`.
    pub fn from_config<T: MakeTls>(pg_config: PgConfig, tls: T, config: ManagerConfig) -> Self {
        Self::builder(pg_config, tls).manager_config(config).build()
    }

    /// A manager connecting through your own deadpool-postgres [`Connect`], with the default
    /// policy: the same signature as `deadpool_postgres::Manager::from_connect`. (dbretry's
    /// own connector also records the error a connection's task ends with; yours is not
    /// asked.)
    pub fn from_connect(
        pg_config: PgConfig,
        connect: impl Connect + 'static,
        config: ManagerConfig,
    ) -> Self {
        let connector = Connector::new(pg_config, ConnectWith::Custom(Box::new(connect)));
        crate::ManagerBuilder::new(connector)
            .manager_config(config)
            .build()
    }

    /// Starts a builder for a manager connecting with `pg_config` and `tls`.
    pub fn builder<T: MakeTls>(pg_config: PgConfig, tls: T) -> ManagerBuilder {
        crate::ManagerBuilder::new(Connector::new(pg_config, ConnectWith::Tls(Box::new(tls))))
    }

    /// The tokio-postgres configuration connections are made with.
    pub fn pg_config(&self) -> &PgConfig {
        self.backend().target.given()
    }
}

impl crate::ManagerBuilder<Connector> {
    /// How connections are checked before reuse. Default: [`RecyclingMethod::Fast`].
    pub fn recycling_method(mut self, method: RecyclingMethod) -> Self {
        self.backend.config.recycling_method = method;
        self
    }

    /// deadpool-postgres's manager configuration as a whole.
    pub fn manager_config(mut self, config: ManagerConfig) -> Self {
        self.backend.config = config;
        self
    }

    /// TCP keepalive and `tcp_user_timeout` for finding silently dropped peers, where the
    /// tokio-postgres config leaves them unset; `None` leaves the config as it is. Default:
    /// [`DeadPeerDetection::default`].
    pub fn dead_peer_detection(mut self, detection: Option<DeadPeerDetection>) -> Self {
        self.backend.target.set_dead_peer_detection(detection);
        self
    }
}

impl Connector {
    fn new(pg_config: PgConfig, connect: ConnectWith) -> Self {
        Self {
            target: PgTarget::new(pg_config),
            connect,
            config: ManagerConfig::default(),
            statement_caches: StatementCaches::default(),
        }
    }

    /// deadpool-postgres's manager configuration.
    pub fn manager_config(&self) -> &ManagerConfig {
        &self.config
    }
}

impl sealed::Sealed for Connector {}

impl Backend for Connector {
    type Connection = ClientWrapper;
    type Error = ConnectError;

    async fn connect(&self, pool: &PoolContext) -> Result<ClientWrapper, ConnectError> {
        let config = self.target.effective();
        let (client, task) = match &self.connect {
            ConnectWith::Tls(tls) => tls.connect(config, pool).await?,
            ConnectWith::Custom(connect) => {
                let (client, task) = connect.connect(config).await?;
                // As dbretry's own connector does: a pooler reports a failing server only
                // at the first query.
                if let Err(error) = client.simple_query("").await {
                    task.abort();
                    return Err(error.into());
                }
                (client, task)
            }
        };
        Ok(ClientWrapper::new(client, task))
    }

    #[inline]
    fn is_broken(&self, client: &mut ClientWrapper) -> bool {
        client.is_closed()
    }

    async fn ping(client: &mut ClientWrapper) -> Result<(), ConnectError> {
        Ok(client.simple_query("").await.map(drop)?)
    }

    fn recycle_check(
        &self,
        client: &mut ClientWrapper,
    ) -> Option<impl Future<Output = Result<(), ConnectError>> + Send> {
        let sql = self.config.recycling_method.query()?;
        Some(async move { Ok(client.simple_query(sql).await.map(drop)?) })
    }

    fn created(&self, client: &ClientWrapper) {
        self.statement_caches.attach(&client.statement_cache);
    }

    fn detached(&self, client: &mut ClientWrapper) {
        self.statement_caches.detach(&client.statement_cache);
    }
}

impl fmt::Debug for Connector {
    /// tokio-postgres's `Config` redacts the password in its `Debug`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("pg_config", self.target.effective())
            .field("config", &self.config)
            .field(
                "connect",
                &match self.connect {
                    ConnectWith::Tls(_) => "dbretry",
                    ConnectWith::Custom(_) => "custom",
                },
            )
            .finish_non_exhaustive()
    }
}

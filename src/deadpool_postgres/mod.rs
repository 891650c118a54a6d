//! A drop-in for [deadpool-postgres](https://docs.rs/deadpool-postgres) whose connection creation
//! and recycling go through a retry policy.
//!
//! The names match deadpool-postgres's (`Manager`, `ManagerConfig`, `RecyclingMethod`, `Pool`,
//! `Client`, `PoolError`, `Transaction`, `Runtime`, `Timeouts`, …), so swapping is a change of
//! `use deadpool_postgres::…` to `use dbretry::deadpool_postgres::…` plus how the manager is
//! built. Pooled objects are deadpool-postgres's own [`ClientWrapper`]: `prepare_cached`,
//! transactions and the statement cache behave exactly as before.
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
mod statement_caches;

use std::fmt;
use std::sync::Arc;

use deadpool::managed;
pub use deadpool::managed::reexports::*;
pub use deadpool_postgres::{
    ChannelBinding, ClientWrapper, LoadBalanceHosts, ManagerConfig, RecyclingMethod, SslMode,
    StatementCache, TargetSessionAttrs, Transaction, TransactionBuilder,
};
pub use tokio_postgres;

use crate::connect_settings::{ConnectSettings, connect_settings_methods};
use crate::events::PoolEvents;
use crate::postgres::{MakeTls, PgConnector};
use crate::reconnect::Reconnector;
use crate::{ConfigError, Diagnostics, Error};

pub use self::config::Config;
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
/// connect failures under a [`RetryPolicy`](crate::RetryPolicy) with one shared reconnect effort per pool.
pub struct Manager {
    config: ManagerConfig,
    connector: PgConnector,
    reconnector: Reconnector,
    /// The statement caches of the clients handed out by the pool (as deadpool-postgres).
    pub statement_caches: StatementCaches,
}

impl Manager {
    /// A manager with the default [`RetryPolicy`](crate::RetryPolicy) and [`ManagerConfig`]: the same signature as
    /// `deadpool_postgres::Manager::new`.
    pub fn new<T: MakeTls>(pg_config: tokio_postgres::Config, tls: T) -> Self {
        Self::builder(pg_config, tls).build()
    }

    /// A manager with the default [`RetryPolicy`](crate::RetryPolicy): the same signature as
    /// `deadpool_postgres::Manager::from_config`.
    pub fn from_config<T: MakeTls>(
        pg_config: tokio_postgres::Config,
        tls: T,
        config: ManagerConfig,
    ) -> Self {
        Self::builder(pg_config, tls).manager_config(config).build()
    }

    /// Starts a builder for a manager connecting with `pg_config` and `tls`.
    pub fn builder<T: MakeTls>(pg_config: tokio_postgres::Config, tls: T) -> ManagerBuilder {
        ManagerBuilder {
            pg_config,
            tls: Box::new(move |config, events| PgConnector::new(config, tls, events)),
            config: ManagerConfig::default(),
            settings: ConnectSettings::default(),
        }
    }

    /// What this manager's pool went through: the last connect error, the last error a live
    /// connection ended with, attempt counts.
    pub fn diagnostics(&self) -> Diagnostics {
        self.reconnector.diagnostics()
    }

    /// The pool's name (its metrics' `pool` label).
    pub fn name(&self) -> &str {
        self.reconnector.retrier().label()
    }

    /// The tokio-postgres configuration connections are made with.
    pub fn pg_config(&self) -> &tokio_postgres::Config {
        self.connector.config()
    }
}

type MakeConnector = Box<dyn FnOnce(tokio_postgres::Config, Arc<PoolEvents>) -> PgConnector>;

/// Builds a [`Manager`]; see [`Manager::builder`].
#[must_use = "call `build()` to get the manager"]
pub struct ManagerBuilder {
    pg_config: tokio_postgres::Config,
    tls: MakeConnector,
    config: ManagerConfig,
    settings: ConnectSettings,
}

impl ManagerBuilder {
    connect_settings_methods!();

    /// How connections are checked before reuse. Default: [`RecyclingMethod::Fast`].
    pub fn recycling_method(mut self, method: RecyclingMethod) -> Self {
        self.config.recycling_method = method;
        self
    }

    /// deadpool-postgres's manager configuration as a whole.
    pub fn manager_config(mut self, config: ManagerConfig) -> Self {
        self.config = config;
        self
    }

    /// Builds the manager.
    pub fn build(self) -> Manager {
        let reconnector = self.settings.into_reconnector();
        Manager {
            config: self.config,
            connector: (self.tls)(self.pg_config, reconnector.events().clone()),
            reconnector,
            statement_caches: StatementCaches::default(),
        }
    }
}

impl managed::Manager for Manager {
    type Type = ClientWrapper;
    type Error = Error;

    async fn create(&self) -> Result<ClientWrapper, Error> {
        // Boxed: the reconnect future is large, and deadpool embeds `create` in every `get()`
        // future, so unboxed it would slow down every checkout, not just the rare create.
        let (client, task) = Box::pin(self.reconnector.connect(&self.connector)).await?;
        let wrapper = ClientWrapper::new(client, task);
        self.statement_caches.attach(&wrapper.statement_cache);
        Ok(wrapper)
    }

    async fn recycle(
        &self,
        client: &mut ClientWrapper,
        _: &Metrics,
    ) -> managed::RecycleResult<Error> {
        let events = self.reconnector.events();
        if client.is_closed() {
            events.recycle_failed(&"connection closed");
            return Err(managed::RecycleError::message("connection closed"));
        }
        let Some(sql) = self.config.recycling_method.query() else {
            return Ok(());
        };
        let bound = self.reconnector.attempt_timeout();
        Box::pin(Error::check(bound, client.simple_query(sql)))
            .await
            .map(drop)
            .map_err(|error| {
                events.recycle_failed(&error);
                managed::RecycleError::Backend(error)
            })
    }

    fn detach(&self, object: &mut ClientWrapper) {
        self.statement_caches.detach(&object.statement_cache);
    }
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("config", &self.config)
            .field("connector", &self.connector)
            .field("policy", self.reconnector.retrier().policy())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("pg_config", &self.pg_config)
            .field("config", &self.config)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

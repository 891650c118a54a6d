//! A drop-in for [bb8-postgres](https://docs.rs/bb8-postgres)'s `PostgresConnectionManager`
//! whose connects go through a retry policy, with one shared reconnect effort per pool.
//!
//! Same name, same constructors (`new`, `new_from_stringlike`), same connection type
//! (`tokio_postgres::Client`); the error type is [`dbretry::Error`](crate::Error). Build the
//! pool with [`bb8::Pool`](crate::bb8::Pool) to avoid stacking bb8's own connect retry on ours
//! and to get real errors from `get()`:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use dbretry::RetryPolicy;
//! use dbretry::bb8::Pool;
//! use dbretry::bb8_postgres::PostgresConnectionManager;
//! use tokio_postgres::NoTls;
//!
//! let policy = RetryPolicy::builder()
//!     .max_attempts(u32::MAX)
//!     .max_delay(Duration::from_millis(250))
//!     .max_elapsed(Duration::from_secs(5)) // also becomes the pool's connection_timeout
//!     .build()?;
//! let manager = PostgresConnectionManager::builder("postgres://app@db/app".parse()?, NoTls)
//!     .policy(policy)
//!     .build();
//! let pool = Pool::new(bb8::Pool::builder().max_size(10), manager).await?;
//! let client = pool.get().await?; // a wrong password fails at once, with SQLSTATE 28P01
//! client.simple_query("SELECT 1").await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use tokio_postgres::{Client, Config};

pub use bb8;
pub use tokio_postgres;

use crate::bb8::RetryingManager;
use crate::connect_settings::{ConnectSettings, connect_settings_methods};
use crate::postgres::{MakeTls, PgConnector};
use crate::reconnect::Reconnector;
use crate::{Diagnostics, Error, RetryPolicy};

/// A `bb8::ManageConnection` for tokio-postgres clients that retries transient connect
/// failures; see the [module docs](self).
pub struct PostgresConnectionManager<Tls> {
    connector: PgConnector,
    reconnector: Reconnector,
    tls: PhantomData<fn() -> Tls>,
}

impl<Tls: MakeTls> PostgresConnectionManager<Tls> {
    /// A manager with the default [`RetryPolicy`], as `bb8_postgres`'s.
    pub fn new(config: Config, tls: Tls) -> Self {
        Self::builder(config, tls).build()
    }

    /// A manager parsing its config from a connection string or URL, as `bb8_postgres`'s.
    ///
    /// # Errors
    /// The string does not parse as a tokio-postgres config.
    pub fn new_from_stringlike<T: ToString>(
        params: T,
        tls: Tls,
    ) -> Result<Self, tokio_postgres::Error> {
        Ok(Self::new(Config::from_str(&params.to_string())?, tls))
    }

    /// Starts a builder for a manager connecting with `config` and `tls`.
    pub fn builder(config: Config, tls: Tls) -> ManagerBuilder<Tls> {
        ManagerBuilder {
            config,
            tls,
            settings: ConnectSettings::default(),
        }
    }

    /// The tokio-postgres configuration connections are made with.
    pub fn config(&self) -> &Config {
        self.connector.config()
    }
}

/// Builds a [`PostgresConnectionManager`].
#[must_use = "call `build()` to get the manager"]
pub struct ManagerBuilder<Tls> {
    config: Config,
    tls: Tls,
    settings: ConnectSettings,
}

impl<Tls: MakeTls> ManagerBuilder<Tls> {
    connect_settings_methods!();

    /// Builds the manager.
    pub fn build(self) -> PostgresConnectionManager<Tls> {
        let reconnector = self.settings.into_reconnector();
        PostgresConnectionManager {
            connector: PgConnector::new(self.config, self.tls, reconnector.events().clone()),
            reconnector,
            tls: PhantomData,
        }
    }
}

impl<Tls: MakeTls> bb8::ManageConnection for PostgresConnectionManager<Tls> {
    type Connection = Client;
    type Error = Error;

    async fn connect(&self) -> Result<Client, Error> {
        // The task ends when the client is dropped; its error, if any, is recorded.
        let (client, _task) = self.reconnector.connect(&self.connector).await?;
        Ok(client)
    }

    async fn is_valid(&self, client: &mut Client) -> Result<(), Error> {
        let bound = self.reconnector.attempt_timeout();
        let checked = Error::check(bound, client.simple_query("")).await;
        checked
            .map(drop)
            .inspect_err(|error| self.reconnector.events().recycle_failed(error))
    }

    fn has_broken(&self, client: &mut Client) -> bool {
        let broken = client.is_closed();
        if broken {
            self.reconnector.events().connection_lost();
        }
        broken
    }
}

impl<Tls: MakeTls> RetryingManager for PostgresConnectionManager<Tls> {
    fn diagnostics(&self) -> Diagnostics {
        self.reconnector.diagnostics()
    }

    fn policy(&self) -> &RetryPolicy {
        self.reconnector.retrier().policy()
    }
}

impl<Tls> fmt::Debug for PostgresConnectionManager<Tls> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConnectionManager")
            .field("connector", &self.connector)
            .field("policy", self.reconnector.retrier().policy())
            .finish()
    }
}

impl<Tls> fmt::Debug for ManagerBuilder<Tls> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

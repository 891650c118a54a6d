//! A drop-in for [bb8-postgres](https://docs.rs/bb8-postgres)'s `PostgresConnectionManager`
//! whose connects go through a retry policy, with one shared reconnect effort per pool.
//!
//! Same name, same constructors (`new`, `new_from_stringlike`) with the same TLS bounds, same
//! connection type (`tokio_postgres::Client`), `Clone`; the error type is
//! [`dbretry::Error`](crate::Error) (it answers `code()`, `as_db_error()` and `is_closed()`, and
//! converts from `tokio_postgres::Error` with `?`). Build the pool with
//! [`bb8::Pool`](crate::bb8::Pool) to avoid stacking bb8's own connect retry on ours and to get
//! real errors from `get()`:
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
use std::future::Future;
use std::str::FromStr;

use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, Socket};

pub use bb8;
pub use tokio_postgres;

use crate::manager::{Backend, PoolContext, RetryingManager, backend::sealed};
use crate::postgres::{ConnectError, DeadPeerDetection, MakeTls, PgTarget, connect_with};

/// A `bb8::ManageConnection` for tokio-postgres clients that retries transient connect
/// failures; see the [module docs](self).
pub type PostgresConnectionManager<Tls> = RetryingManager<Connector<Tls>>;

/// Builds a [`PostgresConnectionManager`].
pub type ManagerBuilder<Tls> = crate::ManagerBuilder<Connector<Tls>>;

/// How bb8-postgres connections are opened and checked: the tokio-postgres config and the TLS
/// connector.
#[derive(Clone)]
pub struct Connector<Tls> {
    target: PgTarget,
    tls: Tls,
}

impl<Tls: MakeTlsConnect<Socket>> RetryingManager<Connector<Tls>> {
    /// A manager with the default [`RetryPolicy`](crate::RetryPolicy), as `bb8_postgres`'s.
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
        let target = PgTarget::new(config);
        crate::ManagerBuilder::new(Connector { target, tls })
    }

    /// The tokio-postgres configuration as given.
    pub fn config(&self) -> &Config {
        self.backend().target.given()
    }
}

impl<Tls> crate::ManagerBuilder<Connector<Tls>> {
    /// TCP keepalive and `tcp_user_timeout` for finding silently dropped peers, where the
    /// tokio-postgres config leaves them unset; `None` leaves the config as it is. Default:
    /// [`DeadPeerDetection::default`].
    pub fn dead_peer_detection(mut self, detection: Option<DeadPeerDetection>) -> Self {
        self.backend.target.set_dead_peer_detection(detection);
        self
    }
}

impl<Tls> sealed::Sealed for Connector<Tls> {}

impl<Tls: MakeTls> Backend for Connector<Tls> {
    type Connection = Client;
    type Error = ConnectError;

    async fn connect(&self, pool: &PoolContext) -> Result<Client, ConnectError> {
        // The task ends when the client is dropped; its error, if any, goes to the pool.
        let config = self.target.effective();
        let (client, _task) = connect_with(config, self.tls.clone(), pool).await?;
        Ok(client)
    }

    #[inline]
    fn is_broken(&self, client: &mut Client) -> bool {
        client.is_closed()
    }

    async fn ping(client: &mut Client) -> Result<(), ConnectError> {
        Ok(client.simple_query("").await.map(drop)?)
    }

    fn recycle_check(
        &self,
        client: &mut Client,
    ) -> Option<impl Future<Output = Result<(), ConnectError>> + Send> {
        Some(Self::ping(client))
    }
}

impl<Tls> fmt::Debug for Connector<Tls> {
    /// tokio-postgres's `Config` redacts the password in its `Debug`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("config", self.target.effective())
            .finish_non_exhaustive()
    }
}

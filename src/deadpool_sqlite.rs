//! A drop-in for [deadpool-sqlite](https://docs.rs/deadpool-sqlite) whose connection opening goes
//! through a retry policy, with per-connection setup (flags, `busy_timeout`, WAL, pragmas, an
//! init hook).
//!
//! Pooled objects are deadpool-sqlite's own: a `SyncWrapper<rusqlite::Connection>`, so
//! `conn.interact(|c| …)` call sites compile unchanged; it builds against the rusqlite that
//! deadpool-sqlite uses, so both can share a build. Swap `use deadpool_sqlite::…` for
//! `use dbretry::deadpool_sqlite::…`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use dbretry::deadpool_sqlite::{Config, Runtime};
//!
//! let mut config = Config::new("app.sqlite3");
//! config.wal = true;
//! let pool = config.create_pool(Runtime::Tokio1)?;
//! let conn = pool.get().await?;
//! let n: i64 = conn
//!     .interact(|c| c.query_row("SELECT 1", [], |row| row.get(0)))
//!     .await??;
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed;
pub use deadpool::managed::reexports::*;
pub use deadpool_sync::reexports::*;
pub use deadpool_sync::{InteractError, SyncWrapper};
pub use rusqlite;
use serde::{Deserialize, Serialize};

use crate::connect_settings::{ConnectSettings, connect_settings_methods};
use crate::reconnect::{ConnectOnce, Reconnector};
use crate::sqlite::SqliteOptions;
use crate::{ConfigError, Diagnostics, Error, RetryConfig};

deadpool::managed_reexports!(
    "dbretry",
    Manager,
    managed::Object<Manager>,
    Error,
    ConfigError
);

/// A pooled SQLite connection, as deadpool-sqlite's `Connection`.
pub type Connection = Object;

/// Pool configuration, as deadpool-sqlite's `Config` plus retry and per-connection settings
/// (serde: a config-file section with these names).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The database file.
    pub path: PathBuf,
    /// Pool settings (size, timeouts, queue mode). Default: deadpool's.
    pub pool: Option<PoolConfig>,
    /// Retry settings. Default: [`RetryPolicy::default`](crate::RetryPolicy::default).
    pub retry: Option<RetryConfig>,
    /// Seconds a statement waits on another connection's lock. Default 5 (rusqlite's).
    pub busy_timeout: Option<f64>,
    /// Switch the database to write-ahead logging. Default off.
    pub wal: bool,
}

impl Config {
    /// A configuration for the database at `path`, everything else default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// Creates a pool.
    ///
    /// # Errors
    /// An invalid retry setting or `busy_timeout` (named), or a pool build error.
    pub fn create_pool(&self, runtime: Runtime) -> Result<Pool, CreatePoolError> {
        self.builder(runtime)
            .map_err(CreatePoolError::Config)?
            .build()
            .map_err(CreatePoolError::Build)
    }

    /// A pool builder from this configuration.
    ///
    /// # Errors
    /// An invalid retry setting or `busy_timeout`, named with its accepted range.
    pub fn builder(&self, runtime: Runtime) -> Result<PoolBuilder, ConfigError> {
        let policy = self.retry.clone().unwrap_or_default().build()?;
        let mut options = SqliteOptions::new(&self.path).wal(self.wal);
        if let Some(secs) = self.busy_timeout {
            let timeout = Duration::try_from_secs_f64(secs).map_err(|_| {
                ConfigError::new("`busy_timeout`", secs, "a finite number of seconds ≥ 0")
            })?;
            options = options.busy_timeout(timeout);
        }
        let manager = Manager::builder(options)
            .policy(policy)
            .runtime(runtime)
            .build();
        Ok(Pool::builder(manager)
            .config(self.pool.unwrap_or_default())
            .runtime(runtime))
    }
}

/// Opens and recycles SQLite connections for a deadpool [`Pool`], retrying transient failures
/// (a lock held while switching to WAL, I/O errors) under a [`RetryPolicy`](crate::RetryPolicy).
pub struct Manager {
    opener: Opener,
    reconnector: Reconnector,
}

struct Opener {
    options: Arc<SqliteOptions>,
    runtime: Runtime,
}

impl ConnectOnce for Opener {
    type Connection = SyncWrapper<rusqlite::Connection>;
    type Error = rusqlite::Error;

    async fn connect_once(&self) -> Result<Self::Connection, rusqlite::Error> {
        let options = self.options.clone();
        SyncWrapper::new(self.runtime, move || options.open()).await
    }
}

impl Manager {
    /// A manager with the default policy, as deadpool-sqlite's `Manager::from_config`.
    pub fn from_config(config: &Config, runtime: Runtime) -> Self {
        Self::builder(SqliteOptions::new(&config.path).wal(config.wal))
            .runtime(runtime)
            .build()
    }

    /// Starts a builder for a manager opening connections with `options`.
    pub fn builder(options: SqliteOptions) -> ManagerBuilder {
        ManagerBuilder {
            options,
            runtime: Runtime::Tokio1,
            settings: ConnectSettings::default(),
        }
    }

    /// The pool's name (its metrics' `pool` label).
    pub fn name(&self) -> &str {
        self.reconnector.retrier().label()
    }

    /// What this manager's pool went through: the last open error, attempt counts.
    pub fn diagnostics(&self) -> Diagnostics {
        self.reconnector.diagnostics()
    }
}

/// Builds a deadpool SQLite [`Manager`].
#[must_use = "call `build()` to get the manager"]
pub struct ManagerBuilder {
    options: SqliteOptions,
    runtime: Runtime,
    settings: ConnectSettings,
}

impl ManagerBuilder {
    connect_settings_methods!();

    /// The runtime blocking SQLite calls run on. Default: `Runtime::Tokio1`.
    pub fn runtime(mut self, runtime: Runtime) -> Self {
        self.runtime = runtime;
        self
    }

    /// Builds the manager.
    pub fn build(self) -> Manager {
        Manager {
            opener: Opener {
                options: Arc::new(self.options),
                runtime: self.runtime,
            },
            reconnector: self.settings.into_reconnector(),
        }
    }
}

impl managed::Manager for Manager {
    type Type = SyncWrapper<rusqlite::Connection>;
    type Error = Error;

    async fn create(&self) -> Result<Self::Type, Error> {
        // Boxed so that every `get()` future stays small (see the PostgreSQL manager).
        Box::pin(self.reconnector.connect(&self.opener)).await
    }

    /// Discards a connection whose mutex was poisoned by a panic, rolls back a transaction
    /// left open, and checks the connection answers.
    async fn recycle(&self, conn: &mut Self::Type, _: &Metrics) -> managed::RecycleResult<Error> {
        let events = self.reconnector.events();
        if conn.is_mutex_poisoned() {
            events.recycle_failed(&"a panic poisoned the connection's mutex");
            return Err(managed::RecycleError::message(
                "a panic poisoned the connection's mutex",
            ));
        }
        let error = match conn.interact(crate::sqlite::reset_and_ping).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        events.recycle_failed(&error);
        Err(managed::RecycleError::message(format!(
            "recycle check failed: {error}"
        )))
    }
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("options", &self.opener.options)
            .field("policy", self.reconnector.retrier().policy())
            .finish()
    }
}

impl fmt::Debug for ManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

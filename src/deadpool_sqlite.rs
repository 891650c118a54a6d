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
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed;
pub use deadpool::managed::reexports::*;
pub use deadpool_sync::reexports::*;
pub use deadpool_sync::{InteractError, SyncWrapper};
pub use rusqlite;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::manager::{Backend, PoolContext, RetryingManager, backend::sealed};
use crate::sqlite::{InteractError as CallError, SqliteFailure, SqliteOptions, open_off_runtime};
use crate::{Error, RetryConfig};

deadpool::managed_reexports!(
    "dbretry",
    Manager,
    managed::Object<Manager>,
    Error,
    ConfigError
);

/// A pooled SQLite connection, as deadpool-sqlite's `Connection`.
pub type Connection = Object;

/// deadpool-sqlite's `Config` (`path`, `pool`, the same methods and config-file keys) plus
/// retry and per-connection settings; every constructor honours them all, `Manager::from_config`
/// included.
///
/// Retry settings are layered: [`RetryPolicy::default`](crate::RetryPolicy), then the `retry`
/// section, then each `DB_RETRY_*` variable that is set
/// ([`get_retry_config`](Self::get_retry_config)). Unknown keys are ignored, as in
/// deadpool-sqlite, with a `tracing` warning naming each.
///
/// ```
/// use dbretry::deadpool_sqlite::Config;
///
/// let literal = Config { path: "app.sqlite3".into(), pool: None, ..Default::default() };
/// let from_file: Config = toml::from_str("path = 'app.sqlite3'\nbusy_timeout = 2.5\nwal = true")?;
/// # Ok::<(), toml::de::Error>(())
/// ```
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(remote = "Self", default)]
pub struct Config {
    /// The database file.
    pub path: PathBuf,
    /// Pool settings (size, timeouts, queue mode). Default: deadpool's.
    pub pool: Option<PoolConfig>,
    /// Retry settings, under any `DB_RETRY_*` variables. Default:
    /// [`RetryPolicy::default`](crate::RetryPolicy::default).
    pub retry: Option<RetryConfig>,
    /// Seconds a statement waits on another connection's lock. Default 5 (rusqlite's).
    pub busy_timeout: Option<f64>,
    /// Switch the database to write-ahead logging. Default off.
    pub wal: bool,
    /// The pool's name (its metrics' `pool` label). Default `default`.
    pub name: Option<String>,
}

impl fmt::Debug for Config {
    /// The path with the values of key parameters (`?key=…` in a URI filename) hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field(
                "path",
                &crate::redact::redact_sqlite_path(&self.path.to_string_lossy()),
            )
            .field("pool", &self.pool)
            .field("retry", &self.retry)
            .field("busy_timeout", &self.busy_timeout)
            .field("wal", &self.wal)
            .field("name", &self.name)
            .finish()
    }
}

/// An invalid retry setting or `busy_timeout`, named. (deadpool-sqlite's is `Infallible`: it
/// checks nothing.)
pub use crate::ConfigError;

impl Config {
    /// A configuration for the database at `path`, everything else default.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// Creates a pool, as deadpool-sqlite's `Config::create_pool`.
    ///
    /// # Errors
    /// An invalid retry setting or `busy_timeout` (named), or a pool build error.
    pub fn create_pool(&self, runtime: Runtime) -> Result<Pool, CreatePoolError> {
        self.builder(runtime)
            .map_err(CreatePoolError::Config)?
            .build()
            .map_err(CreatePoolError::Build)
    }

    /// A pool builder from this configuration, as deadpool-sqlite's `Config::builder`.
    ///
    /// # Errors
    /// An invalid retry setting or `busy_timeout`, named with its accepted range.
    pub fn builder(&self, runtime: Runtime) -> Result<PoolBuilder, ConfigError> {
        let manager = self.manager_builder(runtime)?.build();
        Ok(Pool::builder(manager)
            .config(self.get_pool_config())
            .runtime(runtime))
    }

    /// The pool configuration: `pool`, or the default.
    #[must_use]
    pub fn get_pool_config(&self) -> PoolConfig {
        self.pool.unwrap_or_default()
    }

    /// The retry settings pools built from this configuration use: the `retry` section, with
    /// each `DB_RETRY_*` variable that is set taking its place (the environment is the
    /// deployment's word over the file's).
    ///
    /// # Errors
    /// A `DB_RETRY_*` variable that does not parse or is out of range, named.
    pub fn get_retry_config(&self) -> Result<RetryConfig, ConfigError> {
        RetryConfig::section_under_env(self.retry.as_ref())
    }

    fn manager_builder(&self, runtime: Runtime) -> Result<ManagerBuilder, ConfigError> {
        let policy = self.get_retry_config()?.build()?;
        let mut options = SqliteOptions::new(&self.path).wal(self.wal);
        if let Some(secs) = self.busy_timeout {
            let timeout = Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|timeout| *timeout <= SqliteOptions::MAX_BUSY_TIMEOUT)
                .ok_or_else(|| {
                    ConfigError::new(
                        "`busy_timeout`",
                        secs,
                        "a number of seconds ≥ 0 and at most 2147483.647 (SQLite's limit)",
                    )
                })?;
            options = options.busy_timeout(timeout);
        }
        let mut builder = Manager::builder(options).policy(policy).runtime(runtime);
        if let Some(name) = &self.name {
            builder = builder.name(name);
        }
        Ok(builder)
    }
}

impl<'de> Deserialize<'de> for Config {
    /// As derived, with a warning for each unknown key (deadpool-sqlite ignores them).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut warn = crate::unknown_keys::warn_ignored("deadpool_sqlite::Config");
        Config::deserialize(serde_ignored::Deserializer::new(deserializer, &mut warn))
    }
}

impl Serialize for Config {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Config::serialize(self, serializer)
    }
}

/// Opens and recycles SQLite connections for a deadpool [`Pool`], retrying transient failures
/// (a lock held while switching to WAL, I/O errors) under a [`RetryPolicy`](crate::RetryPolicy).
pub type Manager = RetryingManager<Opener>;

/// Builds a deadpool SQLite [`Manager`].
pub type ManagerBuilder = crate::ManagerBuilder<Opener>;

/// How deadpool-sqlite connections are opened and checked.
pub struct Opener {
    options: Arc<SqliteOptions>,
    runtime: Runtime,
    /// A setting [`Manager::from_config`](RetryingManager::from_config) could not use (its
    /// signature cannot return an error): every connect fails with it.
    invalid: Option<ConfigError>,
}

impl RetryingManager<Opener> {
    /// A manager with every setting of `config` (retry, `busy_timeout`, WAL, name), as
    /// deadpool-sqlite's `Manager::from_config`. An invalid setting cannot be returned from
    /// here: it is logged, and every connect fails with it at once (a permanent error);
    /// [`Config::create_pool`] reports it up front instead.
    pub fn from_config(config: &Config, runtime: Runtime) -> Self {
        match config.manager_builder(runtime) {
            Ok(builder) => builder.build(),
            Err(invalid) => {
                tracing::error!(
                    target: "dbretry::config",
                    error = %invalid,
                    "invalid SQLite pool configuration: every connect will fail"
                );
                let mut builder = Self::builder(SqliteOptions::new(&config.path)).runtime(runtime);
                builder.backend.invalid = Some(invalid);
                builder.build()
            }
        }
    }

    /// Starts a builder for a manager opening connections with `options`.
    pub fn builder(options: SqliteOptions) -> ManagerBuilder {
        crate::ManagerBuilder::new(Opener {
            options: Arc::new(options),
            runtime: Runtime::Tokio1,
            invalid: None,
        })
    }
}

impl crate::ManagerBuilder<Opener> {
    /// The runtime blocking SQLite calls run on. Default: `Runtime::Tokio1`.
    pub fn runtime(mut self, runtime: Runtime) -> Self {
        self.backend.runtime = runtime;
        self
    }
}

impl sealed::Sealed for Opener {}

impl Backend for Opener {
    type Connection = SyncWrapper<rusqlite::Connection>;
    type Error = SqliteFailure;

    async fn connect(&self, _: &PoolContext) -> Result<Self::Connection, SqliteFailure> {
        if let Some(invalid) = &self.invalid {
            return Err(Box::new(invalid.clone()));
        }
        let conn = open_off_runtime(self.options.clone()).await?;
        // Opened already: wrapping cannot fail or panic.
        let wrapped = SyncWrapper::new(self.runtime, move || Ok::<_, SqliteFailure>(conn));
        wrapped.await
    }

    /// A panic poisoned the connection's mutex.
    fn is_broken(&self, conn: &mut Self::Connection) -> bool {
        conn.is_mutex_poisoned()
    }

    /// Rolls back a transaction left open, and checks the connection answers.
    async fn ping(conn: &mut Self::Connection) -> Result<(), SqliteFailure> {
        match conn.interact(crate::sqlite::reset_and_ping).await {
            Ok(pinged) => pinged.map_err(SqliteFailure::from),
            Err(InteractError::Panic(_)) => Err(Box::new(CallError::Panic)),
            Err(InteractError::Cancelled) => Err(Box::new(CallError::Cancelled)),
        }
    }

    fn recycle_check(
        &self,
        conn: &mut Self::Connection,
    ) -> Option<impl Future<Output = Result<(), SqliteFailure>> + Send> {
        Some(Self::ping(conn))
    }
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("options", &self.options)
            .field("invalid", &self.invalid)
            .finish_non_exhaustive()
    }
}

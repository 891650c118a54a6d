//! A bb8 manager for SQLite (rusqlite), which bb8 lacks a maintained one of: opening goes
//! through a retry policy, blocking calls run off the async runtime, validity is checked with
//! a real query, and a call abandoned by its caller is interrupted.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use dbretry::bb8::Pool;
//! use dbretry::bb8_sqlite::SqliteConnectionManager;
//! use dbretry::sqlite::SqliteOptions;
//!
//! let manager = SqliteConnectionManager::new(SqliteOptions::new("app.sqlite3").wal(true));
//! let pool = Pool::new(bb8::Pool::builder().max_size(4), manager).await?;
//! let conn = pool.get().await?;
//! let one: i64 = conn.interact(|c| c.query_row("SELECT 1", [], |r| r.get(0))).await??;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;

pub use rusqlite;

use crate::bb8::RetryingManager;
use crate::connect_settings::{ConnectSettings, connect_settings_methods};
use crate::reconnect::{ConnectOnce, Reconnector};
use crate::sqlite::{SqliteConnection, SqliteOptions};
use crate::{Diagnostics, Error, RetryPolicy};

/// A `bb8::ManageConnection` for SQLite; see the [module docs](self).
pub struct SqliteConnectionManager {
    opener: Opener,
    reconnector: Reconnector,
}

struct Opener(Arc<SqliteOptions>);

impl ConnectOnce for Opener {
    type Connection = SqliteConnection;
    type Error = rusqlite::Error;

    async fn connect_once(&self) -> Result<SqliteConnection, rusqlite::Error> {
        let options = self.0.clone();
        match tokio::task::spawn_blocking(move || options.open()).await {
            Ok(opened) => opened.map(SqliteConnection::new),
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
}

impl SqliteConnectionManager {
    /// A manager with the default [`RetryPolicy`].
    pub fn new(options: SqliteOptions) -> Self {
        Self::builder(options).build()
    }

    /// Starts a builder for a manager opening connections with `options`.
    pub fn builder(options: SqliteOptions) -> ManagerBuilder {
        ManagerBuilder {
            options,
            settings: ConnectSettings::default(),
        }
    }
}

/// Builds a [`SqliteConnectionManager`].
#[derive(Debug)]
#[must_use = "call `build()` to get the manager"]
pub struct ManagerBuilder {
    options: SqliteOptions,
    settings: ConnectSettings,
}

impl ManagerBuilder {
    connect_settings_methods!();

    /// Builds the manager.
    pub fn build(self) -> SqliteConnectionManager {
        SqliteConnectionManager {
            opener: Opener(Arc::new(self.options)),
            reconnector: self.settings.into_reconnector(),
        }
    }
}

impl bb8::ManageConnection for SqliteConnectionManager {
    type Connection = SqliteConnection;
    type Error = Error;

    async fn connect(&self) -> Result<SqliteConnection, Error> {
        self.reconnector.connect(&self.opener).await
    }

    /// Rolls back a transaction left open and runs `SELECT 1`, bounded by the policy's
    /// `attempt_timeout` (the statement is interrupted past it).
    async fn is_valid(&self, conn: &mut SqliteConnection) -> Result<(), Error> {
        let bound = self.reconnector.attempt_timeout();
        type BoxError = Box<dyn std::error::Error + Send + Sync>;
        let ping = async {
            let pinged = conn.interact(crate::sqlite::reset_and_ping).await;
            pinged.map_err(BoxError::from)?.map_err(BoxError::from)
        };
        let checked = Error::check(bound, ping).await;
        checked.inspect_err(|error| self.reconnector.events().recycle_failed(error))
    }

    fn has_broken(&self, conn: &mut SqliteConnection) -> bool {
        conn.is_poisoned()
    }
}

impl RetryingManager for SqliteConnectionManager {
    fn diagnostics(&self) -> Diagnostics {
        self.reconnector.diagnostics()
    }

    fn policy(&self) -> &RetryPolicy {
        self.reconnector.retrier().policy()
    }
}

impl fmt::Debug for SqliteConnectionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteConnectionManager")
            .field("options", &self.opener.0)
            .field("policy", self.reconnector.retrier().policy())
            .finish()
    }
}

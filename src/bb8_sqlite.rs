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
use std::future::Future;
use std::sync::Arc;

pub use rusqlite;

use crate::manager::{Backend, PoolContext, RetryingManager, backend::sealed};
use crate::sqlite::{SqliteConnection, SqliteFailure, SqliteOptions, open_off_runtime};

/// A `bb8::ManageConnection` for SQLite; see the [module docs](self).
pub type SqliteConnectionManager = RetryingManager<Opener>;

/// Builds a [`SqliteConnectionManager`].
pub type ManagerBuilder = crate::ManagerBuilder<Opener>;

/// How bb8 SQLite connections are opened and checked.
pub struct Opener(Arc<SqliteOptions>);

impl RetryingManager<Opener> {
    /// A manager with the default [`RetryPolicy`](crate::RetryPolicy).
    pub fn new(options: SqliteOptions) -> Self {
        Self::builder(options).build()
    }

    /// Starts a builder for a manager opening connections with `options`.
    pub fn builder(options: SqliteOptions) -> ManagerBuilder {
        crate::ManagerBuilder::new(Opener(Arc::new(options)))
    }
}

impl sealed::Sealed for Opener {}

impl Backend for Opener {
    type Connection = SqliteConnection;
    type Error = SqliteFailure;

    async fn connect(&self, _: &PoolContext) -> Result<SqliteConnection, SqliteFailure> {
        open_off_runtime(self.0.clone())
            .await
            .map(SqliteConnection::new)
    }

    /// A panic poisoned the connection's mutex.
    fn is_broken(&self, conn: &mut SqliteConnection) -> bool {
        conn.is_poisoned()
    }

    /// Rolls back a transaction left open and runs `SELECT 1` (interrupted if its caller goes
    /// away).
    async fn ping(conn: &mut SqliteConnection) -> Result<(), SqliteFailure> {
        let pinged = conn.interact(crate::sqlite::reset_and_ping).await;
        pinged
            .map_err(SqliteFailure::from)?
            .map_err(SqliteFailure::from)
    }

    fn recycle_check(
        &self,
        conn: &mut SqliteConnection,
    ) -> Option<impl Future<Output = Result<(), SqliteFailure>> + Send> {
        Some(Self::ping(conn))
    }
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Opener").field(&self.0).finish()
    }
}

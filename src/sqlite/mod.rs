//! SQLite through rusqlite: error classification, connection setup, and the pieces the pool
//! managers share.

mod classify;
mod connection;
mod options;

pub use self::connection::{InteractError, SqliteConnection};
pub use self::options::{InitHook, SqliteOptions};

/// Makes a returning connection safe to hand out again: rolls back a transaction its last
/// user left open, then checks it answers.
#[cfg_attr(not(pools), allow(dead_code))]
pub(crate) fn reset_and_ping(conn: &mut rusqlite::Connection) -> rusqlite::Result<()> {
    if !conn.is_autocommit() {
        conn.execute_batch("ROLLBACK")?;
    }
    conn.query_row("SELECT 1", [], |_| Ok(()))
}

/// What opening or checking an SQLite connection fails with: the SQLite error, or an
/// [`InteractError`] when the blocking call panicked or was cancelled.
pub(crate) type SqliteFailure = Box<dyn std::error::Error + Send + Sync>;

/// Opens a connection with `options` on tokio's blocking pool. A panic (in an init hook, say)
/// or a cancelled task is an error, never a panic in the caller.
#[cfg_attr(not(pools), allow(dead_code))]
pub(crate) async fn open_off_runtime(
    options: std::sync::Arc<SqliteOptions>,
) -> Result<rusqlite::Connection, SqliteFailure> {
    match tokio::task::spawn_blocking(move || options.open()).await {
        Ok(opened) => opened.map_err(SqliteFailure::from),
        Err(error) if error.is_panic() => Err(Box::new(InteractError::Panic)),
        Err(_) => Err(Box::new(InteractError::Cancelled)),
    }
}

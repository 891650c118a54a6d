//! SQLite through rusqlite: error classification, connection setup, and the pieces the pool
//! managers share.

mod classify;
mod connection;
mod options;

pub use self::connection::{InteractError, SqliteConnection};
pub use self::options::{InitHook, SqliteOptions};

/// Makes a returning connection safe to hand out again: rolls back a transaction its last
/// user left open, then checks it answers.
///
/// The check does not wait for a lock: since SQLite 3.5x even `SELECT 1` reads the schema,
/// and so waits `busy_timeout` (then fails) while another connection holds an exclusive
/// lock — which would stall every checkout, and discard the connection, during a long write.
/// A connection that answers "locked" works; the lock is someone else's.
#[cfg_attr(not(pools), allow(dead_code))]
pub(crate) fn reset_and_ping(conn: &mut rusqlite::Connection) -> rusqlite::Result<()> {
    if !conn.is_autocommit() {
        conn.execute_batch("ROLLBACK")?;
    }
    let configured: i64 = conn
        .prepare_cached("PRAGMA busy_timeout")?
        .query_row([], |row| row.get(0))?;
    conn.busy_timeout(std::time::Duration::ZERO)?;
    let pinged = conn
        .prepare_cached("SELECT 1")
        .and_then(|mut statement| statement.query_row([], |_| Ok(())));
    conn.busy_timeout(std::time::Duration::from_millis(
        u64::try_from(configured).unwrap_or(0),
    ))?;
    match pinged {
        Err(error) if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
            Ok(())
        }
        other => other,
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    // Issue 10, item 6: a cancelled blocking task was re-raised with `resume_unwind` of a join
    // error that holds no panic, which itself panics.
    #[test]
    fn an_open_whose_blocking_task_is_cancelled_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let options = Arc::new(SqliteOptions::new(dir.path().join("app.db")));
        // A runtime shut down: what is spawned on it now is cancelled at once (as a runtime
        // shutting down cancels the blocking work that has not started).
        let stopped = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let handle = stopped.handle().clone();
        stopped.shutdown_background();
        let opened = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async {
                let _on_stopped = handle.enter();
                open_off_runtime(options).await
            });
        let error = opened.map(drop).unwrap_err();
        assert!(
            matches!(
                error.downcast_ref::<InteractError>(),
                Some(InteractError::Cancelled)
            ),
            "{error}"
        );
        assert!(!dir.path().join("app.db").exists(), "nothing was opened");
    }
}

//! SQLite through rusqlite: error classification, connection setup, and the pieces the pool
//! managers share.

mod classify;
mod connection;
mod options;

pub(crate) use self::classify::hint_for_code;
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

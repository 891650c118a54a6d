use std::fmt;
use std::sync::{Arc, Mutex};

use rusqlite::InterruptHandle;

/// An SQLite connection usable from async code: blocking calls run on tokio's blocking pool,
/// and a call whose caller stops waiting (its future dropped: a timeout, a cancelled request)
/// is interrupted (`sqlite3_interrupt`) instead of running on, holding the connection.
pub struct SqliteConnection {
    conn: Arc<Mutex<rusqlite::Connection>>,
    interrupt: Arc<InterruptHandle>,
}

/// Why [`SqliteConnection::interact`] could not return the closure's result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InteractError {
    /// The closure panicked (the connection is discarded by the pool afterwards).
    #[error("the closure run on the SQLite connection panicked")]
    Panic,
    /// The blocking task was cancelled (the runtime is shutting down).
    #[error("the blocking task running the SQLite call was cancelled")]
    Cancelled,
}

impl crate::Classify for InteractError {
    /// Permanent: a panic is a bug, and a cancelled task means the runtime is going away.
    fn classify(&self, _phase: crate::Phase) -> crate::ErrorClass {
        crate::ErrorClass::Permanent
    }

    fn breaks_connection(&self) -> bool {
        true
    }
}

impl SqliteConnection {
    #[cfg_attr(not(feature = "bb8"), allow(dead_code))]
    pub(crate) fn new(conn: rusqlite::Connection) -> Self {
        Self {
            interrupt: Arc::new(conn.get_interrupt_handle()),
            conn: Arc::new(Mutex::new(conn)),
        }
    }

    /// Runs `f` with the connection on the blocking pool. Dropping the returned future before
    /// it completes interrupts the running statement.
    ///
    /// # Errors
    /// [`InteractError`] if `f` panicked or the task was cancelled.
    pub async fn interact<F, R>(&self, f: F) -> Result<R, InteractError>
    where
        F: FnOnce(&mut rusqlite::Connection) -> R + Send + 'static,
        R: Send + 'static,
    {
        let conn = self.conn.clone();
        let mut guard = InterruptOnDrop(Some(self.interrupt.clone()));
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut conn)
        })
        .await;
        guard.0 = None;
        result.map_err(|error| {
            if error.is_panic() {
                InteractError::Panic
            } else {
                InteractError::Cancelled
            }
        })
    }

    /// Interrupts whatever statement is running on this connection, from any thread.
    pub fn interrupt(&self) {
        self.interrupt.interrupt();
    }

    /// True after a closure panicked while holding the connection: the pool discards it.
    pub fn is_poisoned(&self) -> bool {
        self.conn.is_poisoned()
    }
}

struct InterruptOnDrop(Option<Arc<InterruptHandle>>);

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.interrupt();
        }
    }
}

impl fmt::Debug for SqliteConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteConnection")
            .field("poisoned", &self.is_poisoned())
            .finish_non_exhaustive()
    }
}

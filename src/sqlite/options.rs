//! How an SQLite connection is opened and set up, for every pool manager alike.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// A per-connection setup function, run on every new connection after the pragmas.
pub type InitHook = Arc<dyn Fn(&mut Connection) -> rusqlite::Result<()> + Send + Sync>;

/// How the pool opens and sets up each SQLite connection.
///
/// # Default
///
/// | setting | default |
/// |---|---|
/// | open flags | rusqlite's: read-write, create, URI filenames, no mutex |
/// | `busy_timeout` | 5 s (rusqlite's) |
/// | `wal` | off |
/// | pragmas | none |
/// | init hook | none |
///
/// How long a connection waits on another's lock is SQLite's `busy_timeout`, per statement;
/// the retry policy only adds its own waits where it says so: opening (which includes
/// switching to WAL, done with no busy wait so that the policy's schedule is the only wait)
/// and operations you run through a [`Retrier`](crate::Retrier) — whose transaction helper
/// cuts each try's `busy_timeout` to what is left of the try's bound, so the two never stack
/// past the deadline. Checking a pooled connection never waits on another's lock.
#[derive(Clone)]
pub struct SqliteOptions {
    path: PathBuf,
    flags: OpenFlags,
    busy_timeout: Duration,
    wal: bool,
    pragmas: Vec<(String, String)>,
    init: Option<InitHook>,
    wal_switched: Arc<AtomicBool>,
}

impl SqliteOptions {
    /// Options for the database file at `path` (`":memory:"` for a private in-memory one).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            flags: OpenFlags::default(),
            busy_timeout: Duration::from_secs(5),
            wal: false,
            pragmas: Vec::new(),
            init: None,
            wal_switched: Arc::default(),
        }
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open flags (read-only, no create, shared cache, …).
    #[must_use]
    pub fn flags(mut self, flags: OpenFlags) -> Self {
        self.flags = flags;
        self
    }

    /// How long a statement waits on another connection's lock before failing with
    /// `SQLITE_BUSY`; at most [`SqliteOptions::MAX_BUSY_TIMEOUT`] (SQLite counts it in
    /// milliseconds in a C `int`), longer values are cut to it.
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout.min(Self::MAX_BUSY_TIMEOUT);
        self
    }

    /// The longest `busy_timeout` SQLite takes: `i32::MAX` milliseconds (about 24.8 days).
    pub const MAX_BUSY_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

    /// Switch the database to write-ahead logging (once per pool; the mode is persistent). A
    /// database the pool may only read (read-only flags or a read-only file) is left in its
    /// journal mode, with a warning, and serves reads.
    #[must_use]
    pub fn wal(mut self, on: bool) -> Self {
        self.wal = on;
        self
    }

    /// A `PRAGMA name = value` to run on every new connection (`synchronous`, `foreign_keys`,
    /// `cache_size`, …).
    #[must_use]
    pub fn pragma(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.pragmas.push((name.into(), value.into()));
        self
    }

    /// A function to run on every new connection after the pragmas (register functions,
    /// attach databases, …).
    #[must_use]
    pub fn init(
        mut self,
        hook: impl Fn(&mut Connection) -> rusqlite::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.init = Some(Arc::new(hook));
        self
    }

    /// Opens and sets up one connection (blocking).
    ///
    /// # Errors
    /// The first SQLite error: opening (`CANTOPEN`, `NOTADB`, …), switching to WAL (`BUSY`
    /// while another connection holds a lock), a pragma, or the init hook.
    pub fn open(&self) -> rusqlite::Result<Connection> {
        let mut conn = Connection::open_with_flags(&self.path, self.flags)?;
        if self.wal && !self.wal_switched.load(Ordering::Acquire) {
            self.switch_to_wal(&conn)?;
            self.wal_switched.store(true, Ordering::Release);
        }
        conn.busy_timeout(self.busy_timeout)?;
        for (name, value) in &self.pragmas {
            conn.pragma_update(None, name, value.as_str())?;
        }
        if let Some(init) = &self.init {
            init(&mut conn)?;
        }
        Ok(conn)
    }
}

impl SqliteOptions {
    /// Switches the database to WAL with no busy wait (the policy's schedule is the only
    /// wait). A database this connection may only read (opened read-only, or a read-only
    /// file) keeps its journal mode: it still serves reads.
    fn switch_to_wal(&self, conn: &Connection) -> rusqlite::Result<()> {
        if conn.is_readonly(rusqlite::MAIN_DB)? {
            tracing::warn!(
                target: "dbretry",
                path = %self.path.display(),
                "SQLite database is read-only: not switching it to WAL"
            );
            return Ok(());
        }
        conn.busy_timeout(Duration::ZERO)?;
        let switched = conn.query_row("PRAGMA journal_mode = WAL", [], |row| {
            row.get::<_, String>(0)
        });
        match switched {
            Ok(mode) if !mode.eq_ignore_ascii_case("wal") => {
                tracing::warn!(target: "dbretry", journal_mode = %mode, "SQLite database cannot use WAL");
            }
            Ok(_) => {}
            Err(error) if error.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly) => {
                tracing::warn!(
                    target: "dbretry",
                    path = %self.path.display(),
                    "SQLite database is read-only: not switching it to WAL"
                );
            }
            Err(error) => return Err(error),
        }
        Ok(())
    }
}

impl fmt::Debug for SqliteOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // An encryption key (SQLCipher's `key` pragma or URI parameter) is a secret.
        let pragmas: Vec<(&str, &str)> = self
            .pragmas
            .iter()
            .map(|(name, value)| {
                let shown = if crate::redact::is_key_parameter(name) {
                    "***"
                } else {
                    value.as_str()
                };
                (name.as_str(), shown)
            })
            .collect();
        let path = crate::redact::redact_sqlite_path(&self.path.to_string_lossy());
        f.debug_struct("SqliteOptions")
            .field("path", &path)
            .field("flags", &self.flags)
            .field("busy_timeout", &self.busy_timeout)
            .field("wal", &self.wal)
            .field("pragmas", &pragmas)
            .field("init", &self.init.is_some())
            .finish()
    }
}

//! Transient or permanent for rusqlite errors, by SQLite result code.

use rusqlite::ErrorCode;

use crate::classify::{Classify, ErrorClass, Phase};

impl Classify for rusqlite::Error {
    /// `SQLITE_BUSY` and its extended codes (`BUSY_RECOVERY`, `BUSY_SNAPSHOT`, `BUSY_TIMEOUT`)
    /// are transient: another connection holds a lock; re-run the whole transaction.
    /// `SQLITE_IOERR` is transient and breaks the connection (a fresh one may succeed).
    /// `SQLITE_LOCKED` is a conflict inside the same connection (or shared cache) that a
    /// retry cannot resolve; it is permanent, as are `CANTOPEN`, `NOTADB`, `CORRUPT`,
    /// `READONLY`, `PERM`, `FULL` and every non-SQLite error (bad parameters, no rows, …).
    fn classify(&self, _phase: Phase) -> ErrorClass {
        match self.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::SystemIoFailure) => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }

    fn breaks_connection(&self) -> bool {
        matches!(
            self.sqlite_error_code(),
            Some(ErrorCode::SystemIoFailure | ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
        )
    }
}

/// What to check, for the SQLite result codes users meet when opening a database.
pub(crate) fn hint_for_code(extended_code: i32) -> Option<&'static str> {
    Some(match extended_code & 0xff {
        rusqlite::ffi::SQLITE_BUSY => "another connection holds the lock longer than busy_timeout",
        rusqlite::ffi::SQLITE_CANTOPEN => {
            "check that the directory exists and the process may read and write it"
        }
        rusqlite::ffi::SQLITE_NOTADB => "the file is not an SQLite database",
        rusqlite::ffi::SQLITE_READONLY => "the database or its directory is read-only",
        _ => return None,
    })
}

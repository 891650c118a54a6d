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

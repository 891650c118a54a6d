//! SQLite result codes by name (`SQLITE_BUSY`, `SQLITE_BUSY_SNAPSHOT`), as SQLite's
//! documentation and logs call them. The values come from the bundled SQLite's own constants.

use rusqlite::ffi;

macro_rules! named {
    ($($name:ident),* $(,)?) => {
        [$((ffi::$name, stringify!($name))),*]
    };
}

/// Every result code of `sqlite3.h`, primary and extended.
const NAMES: [(i32, &str); 113] = named![
    SQLITE_OK,
    SQLITE_ERROR,
    SQLITE_INTERNAL,
    SQLITE_PERM,
    SQLITE_ABORT,
    SQLITE_BUSY,
    SQLITE_LOCKED,
    SQLITE_NOMEM,
    SQLITE_READONLY,
    SQLITE_INTERRUPT,
    SQLITE_IOERR,
    SQLITE_CORRUPT,
    SQLITE_NOTFOUND,
    SQLITE_FULL,
    SQLITE_CANTOPEN,
    SQLITE_PROTOCOL,
    SQLITE_EMPTY,
    SQLITE_SCHEMA,
    SQLITE_TOOBIG,
    SQLITE_CONSTRAINT,
    SQLITE_MISMATCH,
    SQLITE_MISUSE,
    SQLITE_NOLFS,
    SQLITE_AUTH,
    SQLITE_FORMAT,
    SQLITE_RANGE,
    SQLITE_NOTADB,
    SQLITE_NOTICE,
    SQLITE_WARNING,
    SQLITE_ROW,
    SQLITE_DONE,
    SQLITE_ERROR_MISSING_COLLSEQ,
    SQLITE_ERROR_RETRY,
    SQLITE_ERROR_SNAPSHOT,
    SQLITE_ERROR_RESERVESIZE,
    SQLITE_ERROR_KEY,
    SQLITE_ERROR_UNABLE,
    SQLITE_IOERR_READ,
    SQLITE_IOERR_SHORT_READ,
    SQLITE_IOERR_WRITE,
    SQLITE_IOERR_FSYNC,
    SQLITE_IOERR_DIR_FSYNC,
    SQLITE_IOERR_TRUNCATE,
    SQLITE_IOERR_FSTAT,
    SQLITE_IOERR_UNLOCK,
    SQLITE_IOERR_RDLOCK,
    SQLITE_IOERR_DELETE,
    SQLITE_IOERR_BLOCKED,
    SQLITE_IOERR_NOMEM,
    SQLITE_IOERR_ACCESS,
    SQLITE_IOERR_CHECKRESERVEDLOCK,
    SQLITE_IOERR_LOCK,
    SQLITE_IOERR_CLOSE,
    SQLITE_IOERR_DIR_CLOSE,
    SQLITE_IOERR_SHMOPEN,
    SQLITE_IOERR_SHMSIZE,
    SQLITE_IOERR_SHMLOCK,
    SQLITE_IOERR_SHMMAP,
    SQLITE_IOERR_SEEK,
    SQLITE_IOERR_DELETE_NOENT,
    SQLITE_IOERR_MMAP,
    SQLITE_IOERR_GETTEMPPATH,
    SQLITE_IOERR_CONVPATH,
    SQLITE_IOERR_VNODE,
    SQLITE_IOERR_AUTH,
    SQLITE_IOERR_BEGIN_ATOMIC,
    SQLITE_IOERR_COMMIT_ATOMIC,
    SQLITE_IOERR_ROLLBACK_ATOMIC,
    SQLITE_IOERR_DATA,
    SQLITE_IOERR_CORRUPTFS,
    SQLITE_IOERR_IN_PAGE,
    SQLITE_IOERR_BADKEY,
    SQLITE_IOERR_CODEC,
    SQLITE_LOCKED_SHAREDCACHE,
    SQLITE_LOCKED_VTAB,
    SQLITE_BUSY_RECOVERY,
    SQLITE_BUSY_SNAPSHOT,
    SQLITE_BUSY_TIMEOUT,
    SQLITE_CANTOPEN_NOTEMPDIR,
    SQLITE_CANTOPEN_ISDIR,
    SQLITE_CANTOPEN_FULLPATH,
    SQLITE_CANTOPEN_CONVPATH,
    SQLITE_CANTOPEN_DIRTYWAL,
    SQLITE_CANTOPEN_SYMLINK,
    SQLITE_CORRUPT_VTAB,
    SQLITE_CORRUPT_SEQUENCE,
    SQLITE_CORRUPT_INDEX,
    SQLITE_READONLY_RECOVERY,
    SQLITE_READONLY_CANTLOCK,
    SQLITE_READONLY_ROLLBACK,
    SQLITE_READONLY_DBMOVED,
    SQLITE_READONLY_CANTINIT,
    SQLITE_READONLY_DIRECTORY,
    SQLITE_ABORT_ROLLBACK,
    SQLITE_CONSTRAINT_CHECK,
    SQLITE_CONSTRAINT_COMMITHOOK,
    SQLITE_CONSTRAINT_FOREIGNKEY,
    SQLITE_CONSTRAINT_FUNCTION,
    SQLITE_CONSTRAINT_NOTNULL,
    SQLITE_CONSTRAINT_PRIMARYKEY,
    SQLITE_CONSTRAINT_TRIGGER,
    SQLITE_CONSTRAINT_UNIQUE,
    SQLITE_CONSTRAINT_VTAB,
    SQLITE_CONSTRAINT_ROWID,
    SQLITE_CONSTRAINT_PINNED,
    SQLITE_CONSTRAINT_DATATYPE,
    SQLITE_NOTICE_RECOVER_WAL,
    SQLITE_NOTICE_RECOVER_ROLLBACK,
    SQLITE_NOTICE_RBU,
    SQLITE_WARNING_AUTOINDEX,
    SQLITE_AUTH_USER,
    SQLITE_OK_LOAD_PERMANENTLY,
    SQLITE_OK_SYMLINK,
];

/// The name of a result code: the extended code's if known, else its primary code's
/// (the low byte), else `SQLITE_UNKNOWN`.
pub(crate) fn name(code: i32) -> &'static str {
    let find = |code: i32| {
        NAMES
            .iter()
            .find(|(value, _)| *value == code)
            .map(|(_, n)| *n)
    };
    find(code)
        .or_else(|| find(code & 0xff))
        .unwrap_or("SQLITE_UNKNOWN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_sqlite_names_them() {
        assert_eq!(name(5), "SQLITE_BUSY");
        assert_eq!(name(517), "SQLITE_BUSY_SNAPSHOT");
        assert_eq!(name(14), "SQLITE_CANTOPEN");
        assert_eq!(name(26), "SQLITE_NOTADB");
        // An extended code this table does not know falls back to its primary code.
        assert_eq!(name(10 | (200 << 8)), "SQLITE_IOERR");
        assert_eq!(name(99), "SQLITE_UNKNOWN");
    }

    #[test]
    fn every_value_has_one_name() {
        let mut values: Vec<i32> = NAMES.iter().map(|(value, _)| *value).collect();
        values.sort_unstable();
        values.dedup();
        assert_eq!(values.len(), NAMES.len());
    }
}

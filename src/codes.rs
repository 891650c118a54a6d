//! The one place that reads database codes out of an error chain and says what to check for
//! them: PostgreSQL SQLSTATEs and SQLite result codes, their names and hints.

use std::error::Error as StdError;
use std::fmt;

/// A database's own code for an error: what a user looks up in the database's manual.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code<'a> {
    /// A PostgreSQL SQLSTATE, e.g. `28P01`.
    Sqlstate(&'a str),
    /// An SQLite extended result code, e.g. 5 (`SQLITE_BUSY`) or 517 (`SQLITE_BUSY_SNAPSHOT`).
    Sqlite(i32),
}

impl Code<'_> {
    /// The code as text: the SQLSTATE, or the SQLite code's name (`SQLITE_BUSY_SNAPSHOT`, or
    /// the number when it has no name here).
    pub fn text(&self) -> String {
        match *self {
            Self::Sqlstate(state) => state.to_owned(),
            Self::Sqlite(code) => sqlite_name(code).map_or_else(|| code.to_string(), str::to_owned),
        }
    }

    /// What to check, for the codes users meet most.
    pub fn hint(&self) -> Option<&'static str> {
        match *self {
            Self::Sqlstate(state) => sqlstate_hint(state),
            Self::Sqlite(code) => sqlite_hint(code),
        }
    }

    /// What this code says is still wrong when retries run out, as (subject, state): a lock
    /// held by someone else, a conflict with another transaction. `None` for the rest (the
    /// database is then "unavailable").
    pub(crate) fn condition(&self) -> Option<(&'static str, &'static str)> {
        match *self {
            Self::Sqlite(code) if code & 0xff == 5 => {
                Some(("database", "locked by another connection or transaction"))
            }
            Self::Sqlstate("40001") => Some((
                "transaction",
                "conflicting with concurrent transactions (serialization failure)",
            )),
            Self::Sqlstate("40P01") => Some(("transaction", "deadlocked with another transaction")),
            _ => None,
        }
    }
}

impl fmt::Display for Code<'_> {
    /// `SQLSTATE 28P01`, `SQLITE_BUSY (5)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Sqlstate(state) => write!(f, "SQLSTATE {state}"),
            Self::Sqlite(code) => match sqlite_name(code) {
                Some(name) => write!(f, "{name} ({code})"),
                None => write!(f, "SQLite code {code}"),
            },
        }
    }
}

/// The code of the first error in the chain that has one.
pub(crate) fn code_in<'e>(error: &'e (dyn StdError + 'static)) -> Option<Code<'e>> {
    let mut next = Some(error);
    while let Some(error) = next {
        #[cfg(feature = "postgres")]
        if let Some(state) = error
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::code)
        {
            return Some(Code::Sqlstate(state.code()));
        }
        #[cfg(feature = "sqlite")]
        if let Some(rusqlite::Error::SqliteFailure(e, _)) = error.downcast_ref::<rusqlite::Error>()
        {
            return Some(Code::Sqlite(e.extended_code));
        }
        next = error.source();
    }
    None
}

/// What to check for the first error in the chain that has a code: PgBouncer's own errors
/// (by their text, as they all share 08P01) or the code's hint.
pub(crate) fn hint_in(error: &(dyn StdError + 'static)) -> Option<&'static str> {
    #[cfg(feature = "postgres")]
    {
        let mut next = Some(error);
        while let Some(error) = next {
            if let Some(db) = error
                .downcast_ref::<tokio_postgres::Error>()
                .and_then(tokio_postgres::Error::as_db_error)
            {
                if db.code() == &tokio_postgres::error::SqlState::PROTOCOL_VIOLATION
                    && let Some(hint) = crate::postgres::pgbouncer::hint(db.message())
                {
                    return Some(hint);
                }
                break;
            }
            next = error.source();
        }
    }
    code_in(error).and_then(|code| code.hint())
}

fn sqlstate_hint(state: &str) -> Option<&'static str> {
    Some(match state {
        "28P01" | "28000" => "check the user name and password, and pg_hba.conf",
        "3D000" => "check the database name in the connection settings",
        "53300" => {
            "the server has no free connection slots: lower pool sizes or raise max_connections"
        }
        "57P03" => "the server is starting up, shutting down or in recovery",
        "25006" => {
            "this server is read-only (a standby): connect with target_session_attrs=read-write"
        }
        "26000" => {
            "behind PgBouncer in transaction pooling, prepared statements do not survive between \
             transactions: use session pooling, PgBouncer 1.21+ with max_prepared_statements, or \
             unprepared queries"
        }
        _ => return None,
    })
}

/// SQLite's result code names (primary codes, and the extended codes users meet).
const SQLITE_NAMES: &[(i32, &str)] = &[
    (1, "SQLITE_ERROR"),
    (2, "SQLITE_INTERNAL"),
    (3, "SQLITE_PERM"),
    (4, "SQLITE_ABORT"),
    (5, "SQLITE_BUSY"),
    (6, "SQLITE_LOCKED"),
    (7, "SQLITE_NOMEM"),
    (8, "SQLITE_READONLY"),
    (9, "SQLITE_INTERRUPT"),
    (10, "SQLITE_IOERR"),
    (11, "SQLITE_CORRUPT"),
    (12, "SQLITE_NOTFOUND"),
    (13, "SQLITE_FULL"),
    (14, "SQLITE_CANTOPEN"),
    (15, "SQLITE_PROTOCOL"),
    (16, "SQLITE_EMPTY"),
    (17, "SQLITE_SCHEMA"),
    (18, "SQLITE_TOOBIG"),
    (19, "SQLITE_CONSTRAINT"),
    (20, "SQLITE_MISMATCH"),
    (21, "SQLITE_MISUSE"),
    (22, "SQLITE_NOLFS"),
    (23, "SQLITE_AUTH"),
    (24, "SQLITE_FORMAT"),
    (25, "SQLITE_RANGE"),
    (26, "SQLITE_NOTADB"),
    (261, "SQLITE_BUSY_RECOVERY"),
    (262, "SQLITE_LOCKED_SHAREDCACHE"),
    (264, "SQLITE_READONLY_RECOVERY"),
    (266, "SQLITE_IOERR_READ"),
    (270, "SQLITE_CANTOPEN_NOTEMPDIR"),
    (517, "SQLITE_BUSY_SNAPSHOT"),
    (520, "SQLITE_READONLY_CANTLOCK"),
    (522, "SQLITE_IOERR_SHORT_READ"),
    (526, "SQLITE_CANTOPEN_ISDIR"),
    (773, "SQLITE_BUSY_TIMEOUT"),
    (776, "SQLITE_READONLY_ROLLBACK"),
    (778, "SQLITE_IOERR_WRITE"),
    (782, "SQLITE_CANTOPEN_FULLPATH"),
    (1032, "SQLITE_READONLY_DBMOVED"),
    (1034, "SQLITE_IOERR_FSYNC"),
    (1555, "SQLITE_CONSTRAINT_PRIMARYKEY"),
    (2067, "SQLITE_CONSTRAINT_UNIQUE"),
    (787, "SQLITE_CONSTRAINT_FOREIGNKEY"),
    (1299, "SQLITE_CONSTRAINT_NOTNULL"),
];

/// The name of an SQLite (extended) result code, if it is one users meet.
pub(crate) fn sqlite_name(code: i32) -> Option<&'static str> {
    SQLITE_NAMES
        .iter()
        .find(|(known, _)| *known == code)
        .map(|(_, name)| *name)
}

fn sqlite_hint(code: i32) -> Option<&'static str> {
    Some(match code {
        517 => {
            "another connection committed since this transaction began reading: re-run the whole transaction (write transactions that start with BEGIN IMMEDIATE never meet this)"
        }
        261 => "another connection is recovering the write-ahead log: retry shortly",
        _ => match code & 0xff {
            5 => {
                "another connection or transaction holds the lock: each statement waits up to busy_timeout for it; re-run the whole transaction"
            }
            6 => {
                "a conflict within this connection (another statement still reading the table, or a shared cache): finish or reset that statement; retrying does not help"
            }
            9 => {
                "the statement was interrupted: its caller stopped waiting (a timeout or a cancelled request)"
            }
            14 => "check that the directory exists and the process may read and write it",
            26 => "the file is not an SQLite database",
            8 => "the database or its directory is read-only",
            _ => return None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_codes_print_by_name() {
        assert_eq!(Code::Sqlite(5).to_string(), "SQLITE_BUSY (5)");
        assert_eq!(Code::Sqlite(517).text(), "SQLITE_BUSY_SNAPSHOT");
        assert_eq!(Code::Sqlite(99_999).to_string(), "SQLite code 99999");
        assert_eq!(Code::Sqlstate("28P01").to_string(), "SQLSTATE 28P01");
    }

    #[test]
    fn lock_conflicts_are_named_as_such_not_as_an_unavailable_database() {
        for busy in [5, 261, 517, 773] {
            assert_eq!(
                Code::Sqlite(busy).condition(),
                Some(("database", "locked by another connection or transaction"))
            );
        }
        assert_eq!(Code::Sqlite(6).condition(), None);
        assert_eq!(
            Code::Sqlstate("40001").condition().unwrap().0,
            "transaction"
        );
        assert_eq!(Code::Sqlstate("57P03").condition(), None);
    }
}

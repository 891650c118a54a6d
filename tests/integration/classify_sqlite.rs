//! SQLite errors produced by real database files, classified.

use std::time::Duration;

use dbretry::{Classify, ErrorClass, ErrorKind, Phase, RetryPolicy, execute_with_retry};
use rusqlite::{Connection, OpenFlags};

fn write_locked_by_another_connection() -> (tempfile::TempDir, Connection, rusqlite::Error) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.sqlite3");
    let holder = Connection::open(&path).unwrap();
    holder
        .execute_batch("CREATE TABLE t (x); BEGIN IMMEDIATE;")
        .unwrap();
    let writer = Connection::open(&path).unwrap();
    writer.busy_timeout(Duration::ZERO).unwrap();
    let error = writer.execute("INSERT INTO t VALUES (1)", []).unwrap_err();
    (dir, holder, error)
}

#[test]
fn a_write_blocked_by_another_connections_lock_is_transient() {
    let (_dir, _holder, error) = write_locked_by_another_connection();
    assert_eq!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy)
    );
    assert_eq!(error.classify(Phase::Operation), ErrorClass::Transient);
    assert_eq!(error.classify(Phase::Connect), ErrorClass::Transient);
    assert!(!error.breaks_connection());
}

#[test]
fn opening_in_a_missing_directory_is_permanent() {
    let dir = tempfile::tempdir().unwrap();
    let error = Connection::open(dir.path().join("no/such/dir/db.sqlite3")).unwrap_err();
    assert_eq!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::CannotOpen)
    );
    assert_eq!(error.classify(Phase::Connect), ErrorClass::Permanent);
}

#[test]
fn a_file_that_is_not_a_database_is_permanent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.sqlite3");
    std::fs::write(&path, vec![0x5a; 4096]).unwrap();
    let conn = Connection::open(&path).unwrap();
    let error = conn
        .execute_batch("SELECT * FROM sqlite_master")
        .unwrap_err();
    assert_eq!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase)
    );
    assert_eq!(error.classify(Phase::Operation), ErrorClass::Permanent);
    assert!(error.breaks_connection());
}

#[test]
fn writing_through_a_read_only_connection_is_permanent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.sqlite3");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let error = conn.execute("INSERT INTO t VALUES (1)", []).unwrap_err();
    assert_eq!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::ReadOnly)
    );
    assert_eq!(error.classify(Phase::Operation), ErrorClass::Permanent);
}

#[test]
fn bad_sql_is_permanent() {
    let conn = Connection::open_in_memory().unwrap();
    let error = conn.execute_batch("SELEC 1").unwrap_err();
    assert_eq!(error.classify(Phase::Operation), ErrorClass::Permanent);
}

#[tokio::test]
async fn a_permanent_sqlite_error_is_returned_after_one_attempt_with_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing/db.sqlite3");
    let mut attempts = 0;
    let error = execute_with_retry(&RetryPolicy::default(), || {
        attempts += 1;
        let path = path.clone();
        async move { Connection::open(path) }
    })
    .await
    .unwrap_err();
    assert_eq!(attempts, 1);
    assert_eq!(error.kind(), ErrorKind::Query);
    assert_eq!(error.attempts(), 1);
    assert_eq!(error.sqlite_code(), Some(rusqlite::ffi::SQLITE_CANTOPEN));
    assert!(
        error.to_string().contains(
            "hint: check that the directory exists and the process may read and write it"
        ),
        "{error}"
    );
}

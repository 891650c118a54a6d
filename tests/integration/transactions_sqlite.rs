//! The transaction helper on real SQLite files: writers and readers ride out locks held by
//! another process, every acknowledged commit is applied exactly once (an abandoned try never
//! commits beside its retry), and lock conflicts are reported as such.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use dbretry::bb8::Pool as Bb8Pool;
use dbretry::bb8_sqlite::SqliteConnectionManager;
use dbretry::deadpool_sqlite::{Manager, Pool};
use dbretry::sqlite::SqliteOptions;
use dbretry::transaction::AttemptInterrupted;
use dbretry::{ErrorKind, Retrier, RetryError, RetryPolicy};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::time::Instant;

use crate::support::packages;

fn deadpool(options: SqliteOptions, size: usize) -> Pool {
    Pool::builder(Manager::builder(options).build())
        .max_size(size)
        .build()
        .unwrap()
}

async fn bb8(options: SqliteOptions, size: u32) -> Bb8Pool<SqliteConnectionManager> {
    Bb8Pool::new(
        bb8::Pool::builder().max_size(size),
        SqliteConnectionManager::new(options),
    )
    .await
    .unwrap()
}

/// A database with `counter(n)` at 0, in WAL or rollback-journal mode.
fn counter_database(wal: bool) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sqlite3");
    let conn = Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row(
            if wal {
                "PRAGMA journal_mode = WAL"
            } else {
                "PRAGMA journal_mode = DELETE"
            },
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(mode, if wal { "wal" } else { "delete" });
    conn.execute_batch("CREATE TABLE counter (n INTEGER NOT NULL); INSERT INTO counter VALUES (0)")
        .unwrap();
    (dir, path)
}

fn counter(path: &Path) -> u64 {
    let n: i64 = Connection::open(path)
        .unwrap()
        .query_row("SELECT n FROM counter", [], |row| row.get(0))
        .unwrap();
    u64::try_from(n).unwrap()
}

/// Read-then-write: the transactions a lost or doubled commit would show in the counter.
fn increment(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let n: i64 = tx.query_row("SELECT n FROM counter", [], |row| row.get(0))?;
    tx.execute("UPDATE counter SET n = ?1", [n + 1])?;
    Ok(())
}

/// The `sqlite3` command-line shell holding `BEGIN EXCLUSIVE` on a database: another
/// process, as in production (a migration, an operator's shell).
struct ExclusiveLock {
    shell: Child,
    stdin: ChildStdin,
}

impl ExclusiveLock {
    /// Returns once the shell holds the lock (it waits up to 30 s for writers to let go).
    fn take(path: &Path) -> Self {
        let sqlite3 = packages::require("sqlite3", "sqlite3");
        let mut shell = Command::new(sqlite3)
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sqlite3");
        let mut stdin = shell.stdin.take().unwrap();
        // `.bail on`: if BEGIN fails, the shell exits instead of printing "locked".
        stdin
            .write_all(b".bail on\n.timeout 30000\nBEGIN EXCLUSIVE;\nSELECT 'locked';\n")
            .unwrap();
        let mut line = String::new();
        BufReader::new(shell.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.trim() != "locked" {
            let output = shell.wait_with_output().unwrap();
            panic!(
                "sqlite3 did not take the lock: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Self { shell, stdin }
    }

    fn release(mut self) {
        self.stdin.write_all(b"COMMIT;\n.quit\n").unwrap();
        drop(self.stdin);
        let status = self.shell.wait().unwrap();
        assert!(status.success(), "sqlite3 failed to commit: {status}");
    }
}

/// What the writers and readers of one database did.
#[derive(Default)]
struct Tally {
    commits: AtomicU64,
    reads: AtomicU64,
    errors: std::sync::Mutex<Vec<String>>,
    slowest_ms: AtomicU64,
}

impl Tally {
    fn finished(&self, started: Instant, result: Result<(), String>) {
        let took = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.slowest_ms.fetch_max(took, Ordering::Relaxed);
        if let Err(error) = result {
            self.errors.lock().unwrap().push(error);
        }
    }

    async fn wait_for_commits(&self, at_least: u64) {
        while self.commits.load(Ordering::Relaxed) < at_least {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// 16 writers and 4 readers on one database through both pools, while another process
/// holds `BEGIN EXCLUSIVE` for 3 s and then for 7 s. Half the writers' tries are bounded at
/// 500 ms, a tenth of `busy_timeout`; two of them begin DEFERRED and so meet
/// `SQLITE_BUSY_SNAPSHOT` (WAL) or an upgrade `SQLITE_BUSY` (rollback journal).
async fn writers_and_readers_around_exclusive_locks(wal: bool) -> (Arc<Tally>, u64) {
    let (_dir, path) = counter_database(wal);
    // rusqlite's default busy_timeout (5 s) stays on: the helper bounds it per try.
    let options = SqliteOptions::new(&path).wal(wal);
    let deadpool = Arc::new(deadpool(options.clone(), 8));
    let bb8 = Arc::new(bb8(options, 8).await);
    let unbounded = Retrier::new(RetryPolicy::LOCK_CONFLICTS).name("writers");
    let bounded = Retrier::new(
        RetryPolicy::LOCK_CONFLICTS.with_attempt_timeout(Some(Duration::from_millis(500))),
    )
    .name("bounded-writers");
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for writer in 0..16 {
        let retrier = if writer % 4 < 2 {
            bounded.clone()
        } else {
            unbounded.clone()
        };
        let behavior = if writer % 8 == 7 {
            TransactionBehavior::Deferred
        } else {
            TransactionBehavior::Immediate
        };
        let (deadpool, bb8, tally, stop) =
            (deadpool.clone(), bb8.clone(), tally.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let result = if writer % 2 == 0 {
                    retrier
                        .transaction(&*deadpool)
                        .behavior(behavior)
                        .run(increment)
                        .await
                } else {
                    retrier
                        .transaction(&*bb8)
                        .behavior(behavior)
                        .run(increment)
                        .await
                };
                if result.is_ok() {
                    tally.commits.fetch_add(1, Ordering::Relaxed);
                }
                tally.finished(started, result.map_err(|e| format!("writer {writer}: {e}")));
            }
        }));
    }
    for reader in 0..4 {
        let retrier = unbounded.clone();
        let (deadpool, bb8, tally, stop) =
            (deadpool.clone(), bb8.clone(), tally.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let read = |tx: &rusqlite::Transaction<'_>| {
                tx.query_row("SELECT n FROM counter", [], |row| row.get::<_, i64>(0))
            };
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let result = if reader % 2 == 0 {
                    retrier
                        .transaction(&*deadpool)
                        .behavior(TransactionBehavior::Deferred)
                        .run(read)
                        .await
                } else {
                    retrier
                        .transaction(&*bb8)
                        .behavior(TransactionBehavior::Deferred)
                        .run(read)
                        .await
                };
                if result.is_ok() {
                    tally.reads.fetch_add(1, Ordering::Relaxed);
                }
                tally.finished(
                    started,
                    result
                        .map(drop)
                        .map_err(|e| format!("reader {reader}: {e}")),
                );
            }
        }));
    }
    for hold in [Duration::from_secs(3), Duration::from_secs(7)] {
        let before = tally.commits.load(Ordering::Relaxed);
        tally.wait_for_commits(before + 50).await;
        let lock_path = path.clone();
        let lock = tokio::task::spawn_blocking(move || ExclusiveLock::take(&lock_path))
            .await
            .unwrap();
        tokio::time::sleep(hold).await;
        tokio::task::spawn_blocking(move || lock.release())
            .await
            .unwrap();
    }
    let before = tally.commits.load(Ordering::Relaxed);
    tally.wait_for_commits(before + 50).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    (tally, counter(&path))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_and_readers_ride_out_exclusive_locks_with_no_lost_or_doubled_commit() {
    let (wal, journal) = tokio::join!(
        writers_and_readers_around_exclusive_locks(true),
        writers_and_readers_around_exclusive_locks(false),
    );
    for (mode, (tally, counter)) in [("WAL", wal), ("rollback journal", journal)] {
        let errors = tally.errors.lock().unwrap();
        assert!(
            errors.is_empty(),
            "{mode}: {} errors, first: {}",
            errors.len(),
            errors[0]
        );
        let commits = tally.commits.load(Ordering::Relaxed);
        assert_eq!(
            counter, commits,
            "{mode}: the counter equals the acknowledged commits"
        );
        assert!(
            tally.reads.load(Ordering::Relaxed) > 0,
            "{mode}: readers read"
        );
        eprintln!(
            "{mode}: {commits} commits, {} reads, slowest call {} ms",
            tally.reads.load(Ordering::Relaxed),
            tally.slowest_ms.load(Ordering::Relaxed)
        );
    }
}

/// A closure whose first run starts a statement that only an interrupt ends, ignores the
/// interrupt and writes anyway: the abandoned try must roll back, not commit beside its retry.
async fn abandoned_try_is_rolled_back(on_bb8: bool) {
    let (_dir, path) = counter_database(true);
    let options = SqliteOptions::new(&path);
    let policy = RetryPolicy::builder()
        .initial_delay(Duration::from_millis(1))
        .attempt_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let interrupted = Arc::new(AtomicU32::new(0));
    let seen = interrupted.clone();
    let retrier = Retrier::new(policy).on_retry(move |event| {
        if event.error.downcast_ref::<AttemptInterrupted>().is_some() {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    let runs = Arc::new(AtomicU32::new(0));
    let counted = runs.clone();
    let body = move |tx: &rusqlite::Transaction<'_>| {
        if counted.fetch_add(1, Ordering::SeqCst) == 0 {
            let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                           SELECT count(*) FROM c";
            let stopped = tx.query_row(endless, [], |row| row.get::<_, i64>(0));
            assert_eq!(
                stopped.unwrap_err().sqlite_error_code(),
                Some(rusqlite::ErrorCode::OperationInterrupted)
            );
        }
        increment(tx)
    };
    if on_bb8 {
        let pool = bb8(options, 2).await;
        retrier.transaction(&pool).run(body).await.unwrap();
    } else {
        let pool = deadpool(options, 2);
        retrier.transaction(&pool).run(body).await.unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(interrupted.load(Ordering::SeqCst), 1);
    assert_eq!(counter(&path), 1, "the abandoned try did not commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_try_is_interrupted_awaited_and_rolled_back_on_deadpool() {
    abandoned_try_is_rolled_back(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_try_is_interrupted_awaited_and_rolled_back_on_bb8() {
    abandoned_try_is_rolled_back(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_past_the_deadline_is_reported_as_a_lock_not_as_an_unreachable_server() {
    let (_dir, path) = counter_database(false);
    let locker = Connection::open(&path).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // A busy_timeout far past the deadline: had it stacked on the tries, the run would last it.
    let busy_timeout = Duration::from_secs(60);
    let pool = deadpool(SqliteOptions::new(&path).busy_timeout(busy_timeout), 2);
    let policy = RetryPolicy::LOCK_CONFLICTS.with_max_elapsed(Some(Duration::from_millis(300)));
    let started = Instant::now();
    let error: RetryError<rusqlite::Error> = Retrier::new(policy)
        .transaction(&pool)
        .run(increment)
        .await
        .unwrap_err();
    let took = started.elapsed();
    locker.execute_batch("ROLLBACK").unwrap();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    // busy_timeout did not stack on the deadline: the tries' waits were cut to it.
    assert!(took < busy_timeout, "{took:?}");
    assert_eq!(
        error.sqlite_code(),
        Some(rusqlite::ffi::SQLITE_BUSY),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with("database still locked by another connection or transaction"),
        "{message}"
    );
    assert!(
        !message.contains("unreachable") && !message.contains("unavailable"),
        "{message}"
    );
    // BEGIN IMMEDIATE met the lock, not the closure: there is no error of the closure's.
    assert!(error.operation_error().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_opens_for_reads_even_with_wal_requested() {
    let (_dir, path) = counter_database(false);
    let options = SqliteOptions::new(&path)
        .flags(OpenFlags::SQLITE_OPEN_READ_ONLY)
        .wal(true);
    let read = |tx: &rusqlite::Transaction<'_>| {
        tx.query_row("SELECT n FROM counter", [], |row| row.get::<_, i64>(0))
    };
    let retrier = Retrier::new(RetryPolicy::default());
    let deadpool = deadpool(options.clone(), 2);
    let bb8 = bb8(options, 2).await;
    for _ in 0..3 {
        let from_deadpool = retrier
            .transaction(&deadpool)
            .behavior(TransactionBehavior::Deferred)
            .run(read)
            .await
            .unwrap();
        let from_bb8 = retrier
            .transaction(&bb8)
            .behavior(TransactionBehavior::Deferred)
            .run(read)
            .await
            .unwrap();
        assert_eq!((from_deadpool, from_bb8), (0, 0));
    }
    let mode: String = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(
        mode, "delete",
        "a read-only database keeps its journal mode"
    );
}

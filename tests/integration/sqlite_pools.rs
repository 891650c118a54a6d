//! The SQLite managers (deadpool and bb8) on real database files.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dbretry::deadpool_sqlite::{self, Runtime};
use dbretry::sqlite::SqliteOptions;
use dbretry::{ErrorKind, Retrier, RetryPolicy};
use rusqlite::Connection;

/// Code written for deadpool-sqlite, expanded once per crate: only the import differs.
macro_rules! deadpool_sqlite_service_code {
    ($pool_crate:ident) => {
        use $pool_crate::{Pool, PoolError};

        #[derive(Debug)]
        #[allow(dead_code)]
        pub enum AppError {
            Pool(PoolError),
            Interact(String),
            Db(rusqlite::Error),
        }

        pub async fn add_and_count(pool: &Pool, name: &'static str) -> Result<i64, AppError> {
            let conn = pool.get().await.map_err(AppError::Pool)?;
            conn.interact(move |c| {
                let tx = c.transaction()?;
                tx.execute("INSERT INTO users (name) VALUES (?1)", [name])?;
                let n = tx.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
                tx.commit()?;
                Ok(n)
            })
            .await
            .map_err(|e| AppError::Interact(e.to_string()))?
            .map_err(AppError::Db)
        }
    };
}

mod on_deadpool_sqlite {
    deadpool_sqlite_service_code!(deadpool_sqlite);
}

mod on_dbretry {
    use dbretry::deadpool_sqlite as dbretry_deadpool_sqlite;
    deadpool_sqlite_service_code!(dbretry_deadpool_sqlite);
}

fn database() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sqlite3");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE users (name TEXT NOT NULL)")
        .unwrap();
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadpool_sqlite_call_sites_run_unchanged_on_the_dbretry_manager() {
    let (_dir, path) = database();
    let ours = deadpool_sqlite::Config::new(&path)
        .create_pool(Runtime::Tokio1)
        .unwrap();
    assert_eq!(on_dbretry::add_and_count(&ours, "ada").await.unwrap(), 1);
    let theirs = ::deadpool_sqlite::Config::new(&path)
        .create_pool(::deadpool_sqlite::Runtime::Tokio1)
        .unwrap();
    assert_eq!(
        on_deadpool_sqlite::add_and_count(&theirs, "bob")
            .await
            .unwrap(),
        2
    );
}

/// Another connection takes the write lock and releases it after `hold`.
fn hold_write_lock(path: &std::path::Path, hold: Duration) -> std::thread::JoinHandle<()> {
    let locker = Connection::open(path).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(hold);
        locker.execute_batch("COMMIT").unwrap();
    })
}

fn short_busy_pool(path: &std::path::Path) -> deadpool_sqlite::Pool {
    let options = SqliteOptions::new(path).busy_timeout(Duration::from_millis(20));
    let manager = deadpool_sqlite::Manager::builder(options).build();
    deadpool_sqlite::Pool::builder(manager)
        .max_size(2)
        .build()
        .unwrap()
}

async fn insert(
    pool: &deadpool_sqlite::Pool,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let conn = pool.get().await?;
    Ok(conn
        .interact(|c| c.execute("INSERT INTO users (name) VALUES ('x')", []))
        .await
        .map_err(|e| e.to_string())??)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_blocked_past_busy_timeout_is_retried_until_the_lock_is_released() {
    let (_dir, path) = database();
    let pool = short_busy_pool(&path);
    let holder = hold_write_lock(&path, Duration::from_millis(400));
    let retries = Arc::new(AtomicUsize::new(0));
    let counted = retries.clone();
    let policy = RetryPolicy::builder()
        .max_attempts(50)
        .max_delay(Duration::from_millis(100))
        .build()
        .unwrap();
    let retrier = Retrier::new(policy).on_retry(move |_| {
        counted.fetch_add(1, Ordering::Relaxed);
    });
    let inserted = retrier.run_boxed(|| insert(&pool)).await.unwrap();
    holder.join().unwrap();
    assert_eq!(inserted, 1);
    assert!(
        retries.load(Ordering::Relaxed) >= 1,
        "the lock was waited out by retrying"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_blocked_past_the_deadline_fails_with_the_busy_cause_and_attempt_count() {
    let (_dir, path) = database();
    let pool = short_busy_pool(&path);
    let holder = hold_write_lock(&path, Duration::from_millis(1500));
    let policy = RetryPolicy::builder()
        .max_attempts(1000)
        .initial_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(50))
        .max_elapsed(Duration::from_millis(500))
        .build()
        .unwrap();
    let error = Retrier::new(policy)
        .run_boxed(|| insert(&pool))
        .await
        .unwrap_err();
    holder.join().unwrap();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(error.attempts() >= 3, "{error:?}");
    assert_eq!(error.sqlite_code(), Some(rusqlite::ffi::SQLITE_BUSY));
    assert!(error.to_string().contains("database is locked"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_snapshot_in_wal_restarts_the_whole_transaction() {
    let (_dir, path) = database();
    let options = SqliteOptions::new(&path).wal(true);
    let pool = deadpool_sqlite::Pool::builder(deadpool_sqlite::Manager::builder(options).build())
        .max_size(1)
        .build()
        .unwrap();
    let conn = pool.get().await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let writer_path = path.clone();
    let result = Retrier::new(RetryPolicy::default())
        .run(|| {
            let runs = runs.clone();
            let writer_path = writer_path.clone();
            let conn = &conn;
            async move {
                conn.interact(move |c| {
                    let run = runs.fetch_add(1, Ordering::SeqCst);
                    c.execute_batch("BEGIN")?;
                    let seen: i64 = c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
                    if run == 0 {
                        // Another connection commits after our read snapshot began.
                        Connection::open(&writer_path)?
                            .execute("INSERT INTO users (name) VALUES ('other')", [])?;
                    }
                    let written = c.execute("INSERT INTO users (name) VALUES ('mine')", []);
                    if written.is_err() {
                        c.execute_batch("ROLLBACK")?;
                    }
                    written?;
                    c.execute_batch("COMMIT")?;
                    Ok::<i64, rusqlite::Error>(seen)
                })
                .await
                .expect("no panic")
            }
        })
        .await
        .unwrap();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "the transaction ran again from BEGIN"
    );
    assert_eq!(result, 1, "the re-run read the other writer's row");
}

#[tokio::test]
async fn busy_snapshot_is_reported_with_its_extended_code() {
    let (_dir, path) = database();
    let a = Connection::open(&path).unwrap();
    a.execute_batch("PRAGMA journal_mode = WAL").unwrap();
    a.execute_batch("BEGIN").unwrap();
    a.query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0))
        .unwrap();
    Connection::open(&path)
        .unwrap()
        .execute("INSERT INTO users VALUES ('b')", [])
        .unwrap();
    let error = a.execute("INSERT INTO users VALUES ('a')", []).unwrap_err();
    match &error {
        rusqlite::Error::SqliteFailure(e, _) => assert_eq!(e.extended_code, 517),
        other => panic!("{other:?}"),
    }
    assert!(dbretry::Classify::classify(&error, dbretry::Phase::Operation).is_transient());
}

#[tokio::test]
async fn cantopen_fails_at_once_after_one_attempt_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, b"").unwrap();
    for path in [
        dir.path().join("missing/app.sqlite3"),
        not_a_dir.join("app.sqlite3"),
    ] {
        let manager = deadpool_sqlite::Manager::builder(SqliteOptions::new(&path)).build();
        let diagnostics = manager.diagnostics();
        let pool = deadpool_sqlite::Pool::builder(manager).build().unwrap();
        let error = match pool.get().await {
            Err(deadpool_sqlite::PoolError::Backend(error)) => error,
            other => panic!("expected a backend error, got {:?}", other.map(drop)),
        };
        assert_eq!(error.kind(), ErrorKind::Connection);
        assert_eq!(error.attempts(), 1);
        assert_eq!(error.sqlite_code(), Some(rusqlite::ffi::SQLITE_CANTOPEN));
        assert_eq!(diagnostics.connect_attempts().total(), 1);
        let message = error.to_string();
        assert!(
            message.contains("unable to open database file"),
            "{message}"
        );
        assert!(
            message.contains("check that the directory exists"),
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_on_a_pool_of_three_never_open_more_than_three_connections() {
    let (_dir, path) = database();
    let opened = Arc::new(AtomicUsize::new(0));
    let counter = opened.clone();
    let options = SqliteOptions::new(&path).wal(true).init(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    let manager = deadpool_sqlite::Manager::builder(options).build();
    let pool = deadpool_sqlite::Pool::builder(manager)
        .max_size(3)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let conn = pool.get().await.unwrap();
                conn.interact(|c| {
                    c.query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0))
                })
                .await
                .unwrap()
                .unwrap()
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert!(opened.load(Ordering::SeqCst) <= 3);
    assert!(pool.status().size <= 3);

    // Cancelled waiters leak nothing: hold all three, let 10 waiters give up, then all three
    // slots are available again.
    let held: Vec<_> = futures(&pool, 3).await;
    for _ in 0..10 {
        assert!(
            tokio::time::timeout(Duration::from_millis(20), pool.get())
                .await
                .is_err()
        );
    }
    drop(held);
    let again = futures(&pool, 3).await;
    assert_eq!(again.len(), 3);
    assert_eq!(pool.status().waiting, 0);
    assert!(opened.load(Ordering::SeqCst) <= 3);
}

async fn futures(pool: &deadpool_sqlite::Pool, n: usize) -> Vec<deadpool_sqlite::Connection> {
    let mut conns = Vec::new();
    for _ in 0..n {
        conns.push(pool.get().await.unwrap());
    }
    conns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_to_wal_waits_out_a_held_lock_under_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.sqlite3");
    let locker = Connection::open(&path).unwrap();
    locker
        .execute_batch("CREATE TABLE t (x); BEGIN EXCLUSIVE")
        .unwrap();
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        locker.execute_batch("COMMIT").unwrap();
    });
    let policy = RetryPolicy::builder()
        .max_attempts(100)
        .initial_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(50))
        .build()
        .unwrap();
    let manager = deadpool_sqlite::Manager::builder(SqliteOptions::new(&path).wal(true))
        .policy(policy)
        .build();
    let diagnostics = manager.diagnostics();
    let pool = deadpool_sqlite::Pool::builder(manager).build().unwrap();
    let conn = pool.get().await.unwrap();
    holder.join().unwrap();
    let mode: String = conn
        .interact(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get(0)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mode, "wal");
    let attempts = diagnostics.connect_attempts();
    assert!(attempts.transient >= 1, "{attempts:?}");
    assert_eq!(attempts.succeeded, 1);
    let last = diagnostics.last_connect_error().unwrap();
    assert!(last.cause().to_string().contains("locked"), "{:?}", last);
}

mod bb8_sqlite {
    use super::*;
    use dbretry::bb8::Pool;
    use dbretry::bb8_sqlite::SqliteConnectionManager;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pool_runs_queries_off_the_runtime_and_checks_validity() {
        let (_dir, path) = database();
        let manager = SqliteConnectionManager::new(SqliteOptions::new(&path).wal(true));
        let pool = Pool::new(
            bb8::Pool::builder().max_size(2).test_on_check_out(true),
            manager,
        )
        .await
        .unwrap();
        let conn = pool.get().await.unwrap();
        conn.interact(|c| c.execute("INSERT INTO users VALUES ('ada')", []))
            .await
            .unwrap()
            .unwrap();
        // A transaction left open is rolled back before the connection is handed out again.
        conn.interact(|c| c.execute_batch("BEGIN; INSERT INTO users VALUES ('lost')"))
            .await
            .unwrap()
            .unwrap();
        drop(conn);
        let conn = pool.get().await.unwrap();
        let names: i64 = conn
            .interact(|c| c.query_row("SELECT count(*) FROM users", [], |r| r.get(0)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(names, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_long_query_is_interrupted_and_frees_the_connection() {
        let (_dir, path) = database();
        let manager = SqliteConnectionManager::new(SqliteOptions::new(&path));
        let pool = Pool::new(bb8::Pool::builder().max_size(1), manager)
            .await
            .unwrap();
        let conn = pool.get().await.unwrap();
        let endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
                       SELECT count(*) FROM n";
        let abandoned = tokio::time::timeout(
            Duration::from_millis(100),
            conn.interact(move |c| c.query_row(endless, [], |r| r.get::<_, i64>(0))),
        )
        .await;
        assert!(abandoned.is_err(), "the query was still running");
        // The interrupted statement releases the connection: the next call gets through.
        let one: i64 = tokio::time::timeout(
            Duration::from_secs(10),
            conn.interact(|c| c.query_row("SELECT 1", [], |r| r.get(0))),
        )
        .await
        .expect("the connection was freed by the interrupt")
        .unwrap()
        .unwrap();
        assert_eq!(one, 1);
    }

    #[tokio::test]
    async fn cantopen_reaches_the_bb8_caller_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let manager =
            SqliteConnectionManager::new(SqliteOptions::new(dir.path().join("missing/db")));
        let pool = Pool::new(bb8::Pool::builder(), manager).await.unwrap();
        let error = pool.get().await.map(drop).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Connection);
        assert_eq!(error.attempts(), 1);
        assert_eq!(error.sqlite_code(), Some(rusqlite::ffi::SQLITE_CANTOPEN));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_init_hook_is_an_error_and_loses_no_pool_slot() {
        let (_dir, path) = database();
        let opened = Arc::new(AtomicUsize::new(0));
        let options = SqliteOptions::new(&path).init({
            let opened = opened.clone();
            move |_| {
                if opened.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("a bug in the init hook");
                }
                Ok(())
            }
        });
        let manager = SqliteConnectionManager::new(options);
        let pool = Pool::new(bb8::Pool::builder().max_size(1), manager)
            .await
            .unwrap();
        // The panic comes back as an error, once: it is permanent, so not retried.
        let error = pool.get().await.map(drop).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Connection, "{error}");
        assert_eq!(error.attempts(), 1);
        // The only slot was given back: the next caller connects.
        let conn = pool.get().await.expect("the pool slot was not lost");
        let one: i64 = conn
            .interact(|c| c.query_row("SELECT 1", [], |r| r.get(0)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(one, 1);
        assert_eq!(opened.load(Ordering::SeqCst), 2);
    }

    // Issue 10, item 5: a permanent give-up of *any* connect ended *every* waiting `get()`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_permanent_failure_of_one_connect_ends_only_the_get_it_was_made_for() {
        let (_dir, path) = database();
        // The first connection's init hook fails (a panic: permanent) when released, the
        // second's succeeds when released: both connects are in flight at once.
        let entered = Arc::new(AtomicUsize::new(0));
        let (release_first, first) = std::sync::mpsc::channel::<()>();
        let (release_second, second) = std::sync::mpsc::channel::<()>();
        let gates = Arc::new(std::sync::Mutex::new((first, second)));
        let options = SqliteOptions::new(&path).init({
            let entered = entered.clone();
            move |_| {
                let n = entered.fetch_add(1, Ordering::SeqCst);
                let gates = gates.lock().unwrap_or_else(|p| p.into_inner());
                match n {
                    0 => {
                        gates.0.recv().ok();
                        panic!("the first connection's init hook fails");
                    }
                    1 => {
                        gates.1.recv().ok();
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
        });
        let manager = SqliteConnectionManager::new(options);
        let pool = Pool::new(bb8::Pool::builder().max_size(2), manager)
            .await
            .unwrap();
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.get().await.map(drop) })
            })
            .collect();
        // Both connects in flight (the second hook waits for the first's lock): both callers
        // wait.
        let waited = wait_for(|| entered.load(Ordering::SeqCst) == 2).await;
        release_first.send(()).unwrap();
        let first_done = wait_for(|| callers.iter().any(|c| c.is_finished())).await;
        release_second.send(()).unwrap();
        let mut results = Vec::new();
        for caller in callers {
            results.push(caller.await.unwrap());
        }
        let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(
            failed.len(),
            1,
            "one connect failed, so one get() should: {results:?}"
        );
        assert_eq!(failed[0].kind(), ErrorKind::Connection, "{}", failed[0]);
        assert_eq!(failed[0].attempts(), 1);
        println!(
            "connects in flight after {waited:?}, the failed get() ended {first_done:?} later"
        );
    }

    /// Waits until `condition` holds (checked every 5 ms, for at most a minute); how long it took.
    async fn wait_for(condition: impl Fn() -> bool) -> Duration {
        let started = std::time::Instant::now();
        while !condition() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "condition not met within a minute"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        started.elapsed()
    }
}

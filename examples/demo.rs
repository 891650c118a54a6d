//! The main job in one run, on an embedded SQLite file (no server to set up): another
//! connection holds the write lock for a moment, our write is retried with backoff until the
//! lock is released, and the retries are shown as they happen.
//!
//! ```text
//! cargo run --example demo
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dbretry::{Retrier, RetryPolicy};
use rusqlite::Connection;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("demo.sqlite3");
    let setup = Connection::open(&path)?;
    setup.execute_batch("CREATE TABLE visits (at TEXT NOT NULL)")?;

    // Another connection takes the write lock and keeps it for 600 ms.
    let locker = Connection::open(&path)?;
    locker.execute_batch("BEGIN IMMEDIATE")?;
    let held = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(600));
        locker.execute_batch("COMMIT")
    });
    println!("another connection holds the write lock for 600 ms");

    let policy = RetryPolicy::from_env()?;
    println!("policy: {policy:?}");
    let retries = Arc::new(AtomicU32::new(0));
    let counter = retries.clone();
    let retrier = Retrier::new(policy).on_retry(move |event| {
        counter.fetch_add(1, Ordering::Relaxed);
        println!(
            "  attempt {} failed ({}): {} — retrying in {:?}",
            event.attempt,
            event.class.as_str(),
            event.error,
            event.delay
        );
    });

    let start = Instant::now();
    let rows = retrier
        .run(|| {
            let path = path.clone();
            async move {
                let conn = Connection::open(path)?;
                // Fail fast on the lock so that the policy, not SQLite, decides how long to wait.
                conn.busy_timeout(Duration::from_millis(50))?;
                conn.execute("INSERT INTO visits (at) VALUES (datetime('now'))", [])
            }
        })
        .await?;
    held.join().expect("lock holder thread")?;
    println!(
        "write succeeded ({rows} row) after {} retries in {:.0?}",
        retries.load(Ordering::Relaxed),
        start.elapsed()
    );
    Ok(())
}

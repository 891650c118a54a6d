//! Callers looping `get()` + `SELECT 1` against a pool while a test does something to the
//! database, and what they saw: successes, the first one after an instant, the slowest
//! `get()`, and every error with its cause.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dbretry::Error;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What callers looping `get()` + `SELECT 1` saw.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) ok: usize,
    pub(crate) first_ok_after: Option<Duration>,
    pub(crate) worst_get: Duration,
    pub(crate) errors: Vec<Error>,
    pub(crate) query_errors: Vec<String>,
}

/// One `get()` + `SELECT 1`: how long the `get()` took, and how each part went.
pub(crate) struct Step {
    pub(crate) get_took: Duration,
    pub(crate) outcome: Result<Result<(), String>, Error>,
}

/// A `get()` + `SELECT 1` on `pool`, timed: a [`Step`](crate::callers::Step).
#[macro_export]
macro_rules! step {
    ($pool:expr) => {{
        let started = tokio::time::Instant::now();
        match $pool.get().await {
            Ok(client) => {
                let get_took = started.elapsed();
                let queried = client.simple_query("SELECT 1").await;
                $crate::callers::Step {
                    get_took,
                    outcome: Ok(queried
                        .map(drop)
                        .map_err(|e| $crate::support::error_chain(&e))),
                }
            }
            Err(error) => $crate::callers::Step {
                get_took: started.elapsed(),
                outcome: Err(error),
            },
        }
    }};
}

/// Runs `callers` tasks looping `step` until each made `rounds` steps, timing from `since`.
pub(crate) async fn hammer<F, Fut>(callers: usize, rounds: usize, since: Instant, step: F) -> Seen
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Step> + Send,
{
    let seen = Arc::new(Mutex::new(Seen::default()));
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (seen, step) = (seen.clone(), step.clone());
            tokio::spawn(async move {
                for _ in 0..rounds {
                    let taken = step().await;
                    seen.lock().await.add(taken, since);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    Arc::try_unwrap(seen).unwrap().into_inner()
}

/// Warms `size` connections of `pool` by holding that many at once.
#[macro_export]
macro_rules! warm {
    ($pool:expr, $size:expr) => {{
        let mut held = Vec::new();
        for _ in 0..$size {
            held.push($pool.get().await.expect("warm-up"));
        }
    }};
}

impl Seen {
    fn add(&mut self, step: Step, since: Instant) {
        self.worst_get = self.worst_get.max(step.get_took);
        match step.outcome {
            Ok(Ok(())) => {
                self.ok += 1;
                self.first_ok_after.get_or_insert(since.elapsed());
            }
            Ok(Err(query_error)) => self.query_errors.push(query_error),
            Err(error) => self.errors.push(error),
        }
    }
}

/// Callers looping `step` until [`Running::stop`].
pub(crate) struct Running {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Starts `callers` tasks looping `step`; "first success" counts from `since`, which
    /// [`Running::restart_clock`] can move.
    pub(crate) fn start<F, Fut>(callers: usize, step: F) -> Self
    where
        F: Fn() -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = Step> + Send,
    {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let since = Instant::now();
        let tasks = (0..callers)
            .map(|_| {
                let (seen, stop, step) = (seen.clone(), stop.clone(), step.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let taken = step().await;
                        let failed = !matches!(taken.outcome, Ok(Ok(())));
                        seen.lock().await.add(taken, since);
                        if failed {
                            // A caller would not spin on errors; neither do these.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                })
            })
            .collect();
        Self { seen, stop, tasks }
    }

    /// Successes so far.
    pub(crate) async fn ok(&self) -> usize {
        self.seen.lock().await.ok
    }

    /// Waits until more than `count` steps succeeded; panics after `limit`.
    pub(crate) async fn wait_for_more_than(&self, count: usize, limit: Duration) {
        let started = Instant::now();
        while self.ok().await <= count {
            assert!(started.elapsed() < limit, "no success within {limit:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops every caller (each finishes its step) and returns what they saw.
    pub(crate) async fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        Arc::try_unwrap(self.seen).unwrap().into_inner()
    }
}

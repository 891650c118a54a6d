//! A workload for outage tests: callers looping `get()` + `SELECT 1` while the test does
//! something to the server.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// What one `get()` + query came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Ok,
    QueryFailed,
    GetFailed,
}

/// Callers running until [`Load::stop`].
pub(crate) struct Load {
    ok: Arc<AtomicUsize>,
    get_errors: Arc<AtomicUsize>,
    stop: Arc<Notify>,
    workers: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `callers` tasks, each running `step` in a loop.
    pub(crate) fn start<F, Fut>(callers: usize, step: F) -> Self
    where
        F: Fn() -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Step> + Send,
    {
        let ok = Arc::new(AtomicUsize::new(0));
        let get_errors = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(Notify::new());
        let workers = (0..callers)
            .map(|_| {
                let (ok, get_errors, stop, step) =
                    (ok.clone(), get_errors.clone(), stop.clone(), step.clone());
                tokio::spawn(async move {
                    let stopped = stop.notified();
                    tokio::pin!(stopped);
                    loop {
                        tokio::select! {
                            _ = &mut stopped => return,
                            outcome = step() => match outcome {
                                Step::Ok => ok.fetch_add(1, Ordering::Relaxed),
                                Step::QueryFailed => 0,
                                Step::GetFailed => get_errors.fetch_add(1, Ordering::Relaxed),
                            },
                        };
                    }
                })
            })
            .collect();
        Self {
            ok,
            get_errors,
            stop,
            workers,
        }
    }

    /// Successful steps so far.
    pub(crate) fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until more than `count` steps have succeeded; panics after `limit` (the callers'
    /// own budget: past it they would have failed anyway).
    pub(crate) async fn wait_for_more_than(&self, count: usize, limit: std::time::Duration) {
        let started = tokio::time::Instant::now();
        while self.ok() <= count {
            assert!(
                started.elapsed() < limit,
                "no successful step within {limit:?} (still {count})"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Stops every caller; returns (successful steps, `get()` errors).
    pub(crate) async fn stop(mut self) -> (usize, usize) {
        self.stop.notify_waiters();
        for worker in std::mem::take(&mut self.workers) {
            worker.await.unwrap();
        }
        (self.ok(), self.get_errors.load(Ordering::Relaxed))
    }
}

//! The bb8 adapter: [`RetryingManager`] as a `bb8::ManageConnection`.
//!
//! bb8 opens connections in background tasks and tells waiting `get()`s nothing about why one
//! failed. A connect that gives up is therefore handed to one waiting
//! [`dbretry::bb8::Pool::get`](crate::bb8::Pool::get), through `GiveUps`: a connect made for
//! one waiter ends that waiter, not every waiter.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Backend, RetryingManager};
use crate::Error;

impl<B: Backend> bb8::ManageConnection for RetryingManager<B> {
    type Connection = B::Connection;
    type Error = Error;

    async fn connect(&self) -> Result<B::Connection, Error> {
        let started = Instant::now();
        let result = self.open().await;
        if let Err(error) = &result {
            // The connect gave up (permanent error, open circuit, attempts or budget spent):
            // the wait it was made for is over too.
            self.shared.0.give_ups.publish(error.clone(), started);
        }
        result
    }

    /// A ping bounded by the check timeout, the attempt timeout and what is left of the
    /// caller's budget; a connection that fails it is dropped by bb8 and replaced.
    async fn is_valid(&self, connection: &mut B::Connection) -> Result<(), Error> {
        // Boxed: bb8 embeds `is_valid` in every `get()` future, checked or not.
        let check = self
            .shared
            .0
            .check(Instant::now(), None, None, || B::ping(connection));
        Box::pin(check).await
    }

    fn has_broken(&self, connection: &mut B::Connection) -> bool {
        if DISCARDING.get() {
            return true;
        }
        let broken = self.backend.is_broken(connection);
        if broken {
            self.shared.0.connection_lost(Instant::now());
        }
        broken
    }
}

thread_local! {
    static DISCARDING: Cell<bool> = const { Cell::new(false) };
}

/// Drops a checked-out connection so that bb8 closes it rather than keeping it: bb8 asks
/// `has_broken` while it puts the connection back, on this thread, within this call.
pub(crate) fn discard<C>(connection: C) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            DISCARDING.set(false);
        }
    }
    DISCARDING.set(true);
    let _reset = Reset;
    drop(connection);
}

/// Connect failures waiting for a waiter, oldest first; each goes to one waiter.
#[derive(Debug, Default)]
pub(crate) struct GiveUps {
    queue: Mutex<VecDeque<(Instant, Error)>>,
    arrived: Notify,
}

/// Failures nobody took are not kept past this many.
const KEPT: usize = 64;

impl GiveUps {
    fn publish(&self, error: Error, connect_started: Instant) {
        {
            let mut queue = self.lock();
            if queue.len() == KEPT {
                queue.pop_front();
            }
            queue.push_back((connect_started, error));
        }
        self.arrived.notify_one();
    }

    /// The next failure of a connect that began at or after `since` (older ones belonged to
    /// earlier waiters and are dropped).
    pub(crate) async fn next_since(&self, since: Instant) -> Error {
        loop {
            let arrived = self.arrived.notified();
            {
                let mut queue = self.lock();
                while let Some((started, error)) = queue.pop_front() {
                    if started + SLACK >= since {
                        return error;
                    }
                }
            }
            arrived.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, Error)>> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// bb8 starts the connect for a waiter just after the waiter's own clock reading.
const SLACK: Duration = Duration::from_millis(1);

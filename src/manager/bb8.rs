//! The bb8 adapter: [`RetryingManager`] as a `bb8::ManageConnection`.
//!
//! bb8 opens connections in background tasks and tells waiting `get()`s nothing about why one
//! failed. A connect that gives up is therefore handed to one waiting
//! [`dbretry::bb8::Pool::get`](crate::bb8::Pool::get), through `GiveUps`: a connect made for
//! one waiter ends that waiter, not every waiter.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Backend, RetryingManager};
use crate::Error;

impl<B: Backend> bb8::ManageConnection for RetryingManager<B> {
    type Connection = B::Connection;
    type Error = Error;

    async fn connect(&self) -> Result<B::Connection, Error> {
        let give_ups = &self.shared.0.give_ups;
        let number = give_ups.connect_begins();
        let result = self.open().await;
        if let Err(error) = &result {
            // The connect gave up (permanent error, open circuit, attempts or budget spent):
            // the wait it was made for is over too.
            give_ups.publish(number, error.clone());
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

/// Connect failures waiting for a waiter, oldest first; each ends one waiter for which its
/// connect was made.
///
/// Connects are numbered as they begin. A waiter reads the count
/// ([`first_connect`](Self::first_connect)) before its `get()` can make bb8 start a connect,
/// and waits with a [`Mark`] made from it: a failure of a connect numbered from there on was
/// made for it (or for a caller that came after it) and ends its wait ([`Ended::Mine`]). A failure of an
/// older connect, published while it waits, is not its error, but may have been the connect
/// bb8 counted on for it (bb8 starts none for a waiter while one is under way): the waiter is
/// told ([`Ended::Other`]) so that it asks bb8 again and gets an attempt of its own. Failures
/// nobody takes are dropped once [`KEPT`] newer ones are queued.
#[derive(Debug, Default)]
pub(crate) struct GiveUps {
    queue: Mutex<VecDeque<GiveUp>>,
    /// Connects begun so far.
    begun: AtomicU64,
    /// Failures published so far.
    published: AtomicU64,
    arrived: Notify,
}

#[derive(Debug)]
struct GiveUp {
    /// How many failures were published before this one.
    published: u64,
    /// The failed connect's number.
    connect: u64,
    error: Error,
}

/// Where a waiter stands: the first connect that is for it, and the first failure it has
/// not yet been told of.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mark {
    connects: u64,
    seen: u64,
}

/// What [`GiveUps::next`] found.
#[derive(Debug)]
pub(crate) enum Ended {
    /// A connect made for this waiter gave up: its error.
    Mine(Error),
    /// An older connect gave up: ask bb8 again.
    Other,
}

/// Failures nobody took are not kept past this many.
const KEPT: usize = 64;

impl GiveUps {
    /// Numbers a connect as it begins.
    fn connect_begins(&self) -> u64 {
        self.begun.fetch_add(1, Ordering::Relaxed)
    }

    fn publish(&self, connect: u64, error: Error) {
        {
            let mut queue = self.lock();
            if queue.len() == KEPT {
                queue.pop_front();
            }
            let published = self.published.fetch_add(1, Ordering::Relaxed);
            queue.push_back(GiveUp {
                published,
                connect,
                error,
            });
        }
        self.arrived.notify_waiters();
    }

    /// The first connect of a waiter arriving now: to be read before its first poll of bb8,
    /// which may begin that connect.
    #[inline]
    pub(crate) fn first_connect(&self) -> u64 {
        // A load cannot see a value later than the connects that begin after it; a stale
        // (lower) one only counts a connect begun just before as this waiter's.
        self.begun.load(Ordering::Relaxed)
    }

    /// A waiter's mark, its connects counted from `first_connect`. Failures published
    /// before now are not told: a connect that failed before the waiter asks bb8 again is
    /// not one bb8 counts on for it.
    pub(crate) fn mark(&self, first_connect: u64) -> Mark {
        Mark {
            connects: first_connect,
            seen: self.published.load(Ordering::Relaxed),
        }
    }

    /// The next failure published since `mark` was taken or last moved.
    pub(crate) async fn next(&self, mark: &mut Mark) -> Ended {
        loop {
            let arrived = self.arrived.notified();
            {
                let mut queue = self.lock();
                let next = queue.iter().position(|g| g.published >= mark.seen);
                if let Some(at) = next {
                    if queue[at].connect < mark.connects {
                        // Left for the waiters it was made for.
                        mark.seen = queue[at].published + 1;
                        return Ended::Other;
                    }
                    if let Some(mine) = queue.remove(at) {
                        return Ended::Mine(mine.error);
                    }
                }
            }
            arrived.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<GiveUp>> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

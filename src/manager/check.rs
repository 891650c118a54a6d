//! Checking pooled connections: the bound every check runs under, the idle window after which
//! deadpool's cheap recycling also proves a connection with a round trip, and the deadline of
//! the checkout a check runs for.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::classify::{AttemptTimedOut, OperationError, Phase};
use crate::error::{Error, ErrorKind};
use crate::failure::Failure;

/// How pooled connections are checked before they are handed out again.
///
/// # Default
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `timeout` | 1 s | bound on one check (a ping, a recycle query); also bounded by the attempt timeout and by what is left of the caller's budget |
/// | `after_idle` | 500 ms | with deadpool's `Fast` recycling, a connection idle for longer than this since its last checkout is pinged before it is handed out (HikariCP's idea): a connection whose peer vanished silently is found by its first checkout, at the cost of at most one round trip per connection and window. Within the window, a connection is pinged too when another connection of the pool was found dead since its last checkout (a restart or failover ends every session): its caller waits for a replacement instead of getting a query error. `None` turns both pings off |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckSettings {
    /// Bound on one check.
    pub timeout: Duration,
    /// Idle time after which even `Fast` recycling pings; `None`: never.
    pub after_idle: Option<Duration>,
}

impl Default for CheckSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(1),
            after_idle: Some(Duration::from_millis(500)),
        }
    }
}

impl CheckSettings {
    /// Sets the bound on one check.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the idle window after which `Fast` recycling pings (`None`: never).
    #[must_use]
    pub fn after_idle(mut self, window: Option<Duration>) -> Self {
        self.after_idle = window;
        self
    }
}

/// When a check last went unanswered (a peer that vanished without closing): connections idle
/// since before then are likely dead too and are replaced without a check of their own, so
/// that one caller does not wait out a check per dead connection.
#[derive(Debug, Default)]
pub(crate) struct SilentPeers(Mutex<Option<Instant>>);

impl SilentPeers {
    pub(crate) fn saw_one(&self) {
        *self.lock() = Some(Instant::now());
    }

    /// Whether a connection last alive at `last_alive` was idle when a peer last went silent.
    #[cfg_attr(not(feature = "deadpool"), allow(dead_code))]
    pub(crate) fn suspects(&self, last_alive: Instant) -> bool {
        self.lock().is_some_and(|seen| last_alive < seen)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// When the pool last found one of its connections dead (closed by the server, failed or
/// unanswered check, ended with an error): a connection idle since before then is proven with a
/// round trip at its next checkout, even within the idle window, since a server that ended one
/// session (a restart, a failover) has usually ended them all. One atomic load per checkout.
#[derive(Debug)]
pub(crate) struct Losses {
    since: Instant,
    /// Nanoseconds after `since` of the last loss, plus one; 0: none yet.
    last: AtomicU64,
}

impl Default for Losses {
    fn default() -> Self {
        Self {
            since: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl Losses {
    pub(crate) fn saw_one(&self) {
        let at = self.offset(Instant::now()).saturating_add(1);
        self.last.fetch_max(at, Ordering::Relaxed);
    }

    /// Whether a connection was found dead after `last_alive`.
    #[cfg_attr(not(feature = "deadpool"), allow(dead_code))]
    #[inline]
    pub(crate) fn since(&self, last_alive: Instant) -> bool {
        let last = self.last.load(Ordering::Relaxed);
        last != 0 && last > self.offset(last_alive).saturating_add(1)
    }

    fn offset(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.since).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Runs the check `make_check` makes, begun at `started` and bounded by `bound`; a failure
/// is an [`ErrorKind::Connection`] error carrying the check's error or [`AttemptTimedOut`].
///
/// The check's future is made here, where it is awaited, so that it is held once in this
/// future's state rather than once per level it is passed down.
pub(crate) async fn check_within<E: OperationError, F: Future<Output = Result<(), E>>>(
    started: Instant,
    bound: Duration,
    make_check: impl FnOnce() -> F,
) -> Result<(), Error> {
    let deadline = crate::time::later(started, bound);
    let failure = match tokio::time::timeout_at(deadline, make_check()).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(error)) => Failure::new(error, Phase::Connect),
        Err(_) => Failure::new(AttemptTimedOut { timeout: bound }, Phase::Connect),
    };
    Err(Error::new(
        ErrorKind::Connection,
        1,
        started.elapsed(),
        Some(failure),
    ))
}

/// Whether a failed check went unanswered (rather than being answered with an error).
pub(crate) fn went_unanswered(error: &Error) -> bool {
    error.find_cause::<AttemptTimedOut>().is_some()
}

//! `Pool::get` against a scripted backend, on tokio's paused clock, where the order of two
//! events in one poll has to be arranged exactly (a real server cannot be timed this way).

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Pool;
use crate::manager::backend::sealed;
use crate::manager::{Backend, PoolContext, RetryingManager};

/// Each connect takes the next scripted answer and waits for it.
#[derive(Default)]
struct Scripted(Mutex<VecDeque<oneshot::Receiver<io::Result<u32>>>>);

impl Scripted {
    /// The next connect's answer, to be sent when the test says.
    fn next_answer(&self) -> oneshot::Sender<io::Result<u32>> {
        let (answer, wait) = oneshot::channel();
        self.0.lock().unwrap().push_back(wait);
        answer
    }
}

impl sealed::Sealed for Arc<Scripted> {}

impl Backend for Arc<Scripted> {
    type Connection = u32;
    type Error = io::Error;

    async fn connect(&self, _: &PoolContext) -> io::Result<u32> {
        let answer = self.0.lock().unwrap().pop_front();
        match answer {
            Some(answer) => answer
                .await
                .unwrap_or_else(|_| Err(io::ErrorKind::Other.into())),
            None => Err(io::Error::other("no connect scripted")),
        }
    }

    fn is_broken(&self, _: &mut u32) -> bool {
        false
    }

    /// The ping's answer is in the connection's number: below [`DEAD`] it answers, from
    /// [`DEAD`] to [`SILENT`] it fails, from [`SILENT`] on it never answers.
    async fn ping(connection: &mut u32) -> io::Result<()> {
        match *connection {
            SILENT.. => std::future::pending().await,
            DEAD.. => Err(io::ErrorKind::ConnectionReset.into()),
            _ => Ok(()),
        }
    }

    fn recycle_check(&self, _: &mut u32) -> Option<impl Future<Output = io::Result<()>> + Send> {
        None::<std::future::Ready<io::Result<()>>>
    }
}

/// Connections numbered from here fail their ping.
const DEAD: u32 = 100;
/// Connections numbered from here never answer their ping.
const SILENT: u32 = 200;

async fn pool(script: &Arc<Scripted>) -> Pool<RetryingManager<Arc<Scripted>>> {
    pool_testing(script, false).await
}

async fn pool_testing(
    script: &Arc<Scripted>,
    test_on_check_out: bool,
) -> Pool<RetryingManager<Arc<Scripted>>> {
    let manager = crate::ManagerBuilder::new(script.clone()).build();
    let builder = bb8::Pool::builder()
        .max_size(2)
        .test_on_check_out(test_on_check_out);
    Pool::new(builder, manager).await.unwrap()
}

/// A caller starts the pool's first connect and goes away while it is under way; the
/// connect's answer, to be sent when the test says.
async fn abandoned_connect(
    script: &Scripted,
    pool: &Pool<RetryingManager<Arc<Scripted>>>,
) -> oneshot::Sender<io::Result<u32>> {
    let answer = script.next_answer();
    let gone = tokio::time::timeout(Duration::from_millis(1), pool.get()).await;
    assert!(gone.is_err(), "the connect is under way");
    answer
}

/// A pool testing on checkout whose one idle connection is number `idle`.
async fn pool_with_idle(script: &Arc<Scripted>, idle: u32) -> Pool<RetryingManager<Arc<Scripted>>> {
    let pool = pool_testing(script, true).await;
    let first = script.next_answer();
    let get = tokio::spawn({
        let pool = pool.clone();
        async move { drop(pool.get().await) }
    });
    // The first connect is checked too: it is a live one, renumbered once idle.
    first.send(Ok(1)).unwrap();
    get.await.unwrap();
    assert_eq!(pool.state().idle_connections, 1);
    *pool.inner().get().await.unwrap() = idle;
    pool
}

// The fast path's two ways on: a connection taken at once that fails the check is closed
// and the caller waits in turn for a new one; a `get()` dropped during the check gives the
// connection back.
#[tokio::test(start_paused = true)]
async fn a_connection_taken_at_once_that_fails_its_check_is_closed_and_the_caller_served() {
    let script = Arc::new(Scripted::default());
    let pool = pool_with_idle(&script, DEAD).await;
    script.next_answer().send(Ok(2)).unwrap();
    let got = pool.get().await.map(|connection| *connection);
    assert_eq!(got.ok(), Some(2), "served by a new connection");
    let state = pool.state();
    assert_eq!(
        (state.connections, state.idle_connections),
        (1, 1),
        "the dead connection was closed, the new one is back"
    );
    assert!(
        pool.diagnostics().last_connect_error().is_none(),
        "no connect failed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_get_dropped_during_the_check_gives_the_connection_back() {
    let script = Arc::new(Scripted::default());
    let pool = pool_with_idle(&script, SILENT).await;
    let get = pool.get();
    let cancelled = tokio::time::timeout(Duration::from_millis(10), get).await;
    assert!(
        cancelled.is_err(),
        "the check never ends: the caller gives up"
    );
    let state = pool.state();
    assert_eq!((state.connections, state.idle_connections), (1, 1));
    // The check's own bound ends the next caller's wait on the silent connection, which is
    // closed; a new one serves.
    script.next_answer().send(Ok(3)).unwrap();
    let got = pool.get().await.map(|connection| *connection);
    assert_eq!(got.ok(), Some(3));
}

// Issue 10, item 5: without `biased;`, `get()` could drop a connection it had just been given
// in favour of a give-up that arrived in the same poll.
#[tokio::test(start_paused = true)]
async fn a_get_given_a_connection_and_a_give_up_at_once_takes_the_connection() {
    // `select!` without `biased;` picks either ready branch at random: 20 rounds miss that
    // with probability 2^-20.
    for round in 0..20 {
        let script = Arc::new(Scripted::default());
        let pool = pool(&script).await;
        // A holder takes the pool's first connection.
        script.next_answer().send(Ok(1)).unwrap();
        let held = pool.get().await.expect("the first connect succeeds");
        // A waiter finds no idle connection: bb8 starts a connect for it, which hangs.
        let fails = script.next_answer();
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move { pool.get().await.map(|connection| *connection) }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "round {round}: the waiter waits");
        // In one step, without yielding: the waiter's connect fails permanently (its give-up
        // is published as soon as the connect task runs) and the held connection comes back.
        fails
            .send(Err(io::ErrorKind::PermissionDenied.into()))
            .unwrap();
        drop(held);
        let got = waiter.await.unwrap();
        assert_eq!(
            got.as_ref().ok(),
            Some(&1),
            "round {round}: a connection was there for the waiter, yet: {got:?}"
        );
    }
}

// A caller that arrives while another caller's connect is under way gets no connect of its
// own from bb8, which counts on the one under way. When that one fails, the error is not this
// caller's (the connect was not made for it), but it gets an attempt of its own at once;
// before, it waited out its whole budget with no attempt made for it.
#[tokio::test(start_paused = true)]
async fn a_waiter_counting_on_another_callers_connect_gets_its_own_when_that_fails() {
    let script = Arc::new(Scripted::default());
    let pool = pool(&script).await;
    let answer = abandoned_connect(&script, &pool).await;
    tokio::time::advance(Duration::from_millis(10)).await;
    // Another caller arrives while it still is: bb8 starts no other connect for it.
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(|connection| *connection) }
    });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "the second caller waits");
    let failed_at = Instant::now();
    script.next_answer().send(Ok(5)).unwrap();
    answer
        .send(Err(io::ErrorKind::PermissionDenied.into()))
        .unwrap();
    let got = waiter.await.unwrap();
    let waited = failed_at.elapsed();
    assert_eq!(got.ok(), Some(5), "served by a connect of its own");
    assert!(
        waited < Duration::from_secs(1),
        "served when the first connect failed, not {waited:?} later"
    );
}

// The other side of the mark: a give-up nobody was waiting for is not handed to a caller
// that arrives later.
#[tokio::test(start_paused = true)]
async fn a_give_up_published_before_a_caller_arrived_is_not_its_error() {
    let script = Arc::new(Scripted::default());
    let pool = pool(&script).await;
    let answer = abandoned_connect(&script, &pool).await;
    answer
        .send(Err(io::ErrorKind::PermissionDenied.into()))
        .unwrap();
    // The connect has failed (and published its give-up in the same poll) before the next
    // caller comes.
    while pool.diagnostics().last_connect_error().is_none() {
        tokio::task::yield_now().await;
    }
    script.next_answer().send(Ok(7)).unwrap();
    let got = pool.get().await.map(|connection| *connection);
    assert_eq!(got.ok(), Some(7), "served by its own connect");
}

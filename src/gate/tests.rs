//! The gate's driver on tokio's paused clock, against a scripted "server". (Real servers
//! exercise the same code in tests/integration; the model tests in `model_tests.rs` check
//! every short sequence of events.)

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::RetryPolicy;

/// A server that refuses connections until `up_at`, or answers every one with a permanent
/// error.
struct DownUntil {
    up_at: Instant,
    permanent: bool,
    attempts: AtomicU32,
}

impl DownUntil {
    fn new(down_for: Duration) -> Arc<Self> {
        Arc::new(Self {
            up_at: Instant::now() + down_for,
            permanent: false,
            attempts: AtomicU32::new(0),
        })
    }

    fn rejecting() -> Arc<Self> {
        Arc::new(Self {
            up_at: Instant::now(),
            permanent: true,
            attempts: AtomicU32::new(0),
        })
    }

    fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::SeqCst)
    }

    async fn connect(&self) -> Result<Instant, io::Error> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1)).await;
        if self.permanent {
            Err(io::ErrorKind::PermissionDenied.into())
        } else if Instant::now() >= self.up_at {
            Ok(Instant::now())
        } else {
            Err(io::ErrorKind::ConnectionRefused.into())
        }
    }
}

struct Pool {
    gate: Gate,
    events: PoolEvents,
}

impl Pool {
    async fn connect(&self, backend: &DownUntil) -> Result<Instant, Error> {
        self.gate.connect(&self.events, || backend.connect()).await
    }

    fn is_down(&self) -> bool {
        matches!(self.gate.state(), State::Down { .. })
    }
}

fn pool_policy() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(1000)
        .max_delay(Duration::from_millis(100))
        .max_elapsed(Duration::from_secs(5))
        .seed(1)
        .build()
        .unwrap()
}

fn pool(policy: RetryPolicy, breaker: Option<CircuitBreaker>) -> Arc<Pool> {
    Arc::new(Pool {
        gate: Gate::new(Retrier::new(policy), breaker),
        events: PoolEvents::new("test"),
    })
}

fn spawn_callers(
    n: usize,
    pool: &Arc<Pool>,
    backend: &Arc<DownUntil>,
) -> Vec<tokio::task::JoinHandle<Result<Instant, Error>>> {
    (0..n)
        .map(|_| {
            let (pool, backend) = (pool.clone(), backend.clone());
            tokio::spawn(async move { pool.connect(&backend).await })
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn waiters_share_one_probe_schedule_and_all_proceed_when_the_server_returns() {
    let backend = DownUntil::new(Duration::from_millis(1500));
    let pool = pool(pool_policy(), None);
    let start = Instant::now();
    let mut connected_at = Vec::new();
    for caller in spawn_callers(32, &pool, &backend) {
        connected_at.push(caller.await.unwrap().expect("every caller connects"));
    }
    let first = *connected_at.iter().min().unwrap();
    let last = *connected_at.iter().max().unwrap();
    // 32 concurrent first tries, then one probe at a time on a schedule capped at 100 ms for
    // 1.5 s (at least 15 of them), then the 31 waiters' own connects.
    let probes = backend.attempts() - 32 - 31;
    assert!(
        (15..=32).contains(&probes),
        "{probes} probes during the outage"
    );
    assert!(first - backend.up_at <= Duration::from_millis(101));
    assert!(last - first <= Duration::from_millis(1));
    assert!(first - start >= Duration::from_millis(1500));
}

#[tokio::test(start_paused = true)]
async fn once_down_only_one_caller_probes_at_a_time() {
    let backend = DownUntil::new(Duration::from_secs(3600));
    let pool = pool(pool_policy(), None);
    for caller in spawn_callers(51, &pool, &backend) {
        let error = caller.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Timeout);
        assert!(error.attempts() >= 40, "{} attempts", error.attempts());
        let cause = error.find_cause::<io::Error>().unwrap();
        assert_eq!(cause.kind(), io::ErrorKind::ConnectionRefused);
    }
    // 51 concurrent first tries, then one probe at a time, at least 100 ms apart once the
    // schedule reaches its cap, for 5 s.
    assert!(backend.attempts() <= 51 + 60, "{}", backend.attempts());
}

#[tokio::test(start_paused = true)]
async fn a_permanent_probe_failure_ends_the_waiters_that_shared_it_and_is_not_kept() {
    let backend = DownUntil::new(Duration::from_secs(3600));
    let pool = pool(pool_policy(), None);
    assert!(pool.connect(&backend).await.is_err());
    assert!(pool.is_down());

    let rejecting = DownUntil::rejecting();
    let start = Instant::now();
    for caller in spawn_callers(10, &pool, &rejecting) {
        let error = caller.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Connection);
        assert_eq!(error.class(), Some(ErrorClass::Permanent));
    }
    assert_eq!(rejecting.attempts(), 1, "one probe told everyone");
    assert!(start.elapsed() <= Duration::from_millis(101));
    // The server answered: the pool is up, and the next caller gets its own answer at once.
    assert!(!pool.is_down());
    let again = Instant::now();
    pool.connect(&rejecting).await.unwrap_err();
    assert_eq!(again.elapsed(), Duration::from_millis(1));
    assert_eq!(rejecting.attempts(), 2);
}

#[tokio::test(start_paused = true)]
async fn cancelled_waiters_and_probers_do_not_wedge_the_pool() {
    let backend = DownUntil::new(Duration::from_millis(800));
    let pool = pool(pool_policy(), None);
    for round in 0..5 {
        let callers = spawn_callers(8, &pool, &backend);
        tokio::time::sleep(Duration::from_millis(50 + round * 7)).await;
        for caller in callers {
            caller.abort();
        }
    }
    let connection = pool
        .connect(&backend)
        .await
        .expect("connects after the outage");
    assert!(connection - backend.up_at <= Duration::from_millis(101));
}

#[tokio::test(start_paused = true)]
async fn each_waiter_gives_up_at_its_own_deadline() {
    let backend = DownUntil::new(Duration::from_secs(3600));
    let pool = pool(
        pool_policy().with_max_elapsed(Some(Duration::from_secs(1))),
        None,
    );
    let start = Instant::now();
    let early = {
        let (pool, backend) = (pool.clone(), backend.clone());
        tokio::spawn(async move { (pool.connect(&backend).await, Instant::now()) })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let late = {
        let (pool, backend) = (pool.clone(), backend.clone());
        tokio::spawn(async move { (pool.connect(&backend).await, Instant::now()) })
    };
    let (early_result, early_end) = early.await.unwrap();
    let (late_result, late_end) = late.await.unwrap();
    assert_eq!(early_result.unwrap_err().kind(), ErrorKind::Timeout);
    assert_eq!(late_result.unwrap_err().kind(), ErrorKind::Timeout);
    // Each ends by its own deadline, at most one probe interval early.
    assert!(early_end - start <= Duration::from_secs(1));
    assert!(early_end - start >= Duration::from_millis(900));
    assert!(late_end - start <= Duration::from_millis(1500));
    assert!(late_end - start >= Duration::from_millis(1400));
}

// ----- regressions from the review of the old gate and breaker (issue 10) -----

/// A backend whose answers are scripted per attempt: a transient failure, a permanent one
/// that arrives late, success.
#[derive(Clone, Copy)]
enum Answer {
    Refused,
    PermanentAfter(Duration),
    Up,
}

async fn answer(answer: Answer) -> Result<(), io::Error> {
    match answer {
        Answer::Refused => Err(io::ErrorKind::ConnectionRefused.into()),
        Answer::PermanentAfter(delay) => {
            tokio::time::sleep(delay).await;
            Err(io::ErrorKind::PermissionDenied.into())
        }
        Answer::Up => Ok(()),
    }
}

#[tokio::test(start_paused = true)]
async fn a_late_permanent_failure_and_a_cancelled_prober_do_not_wedge_the_gate() {
    let pool = pool(pool_policy(), None);
    // B's direct connect begins while the pool is up and ends later, permanently.
    let b = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let connect = || answer(Answer::PermanentAfter(Duration::from_millis(50)));
            pool.gate.connect(&pool.events, connect).await
        })
    };
    tokio::task::yield_now().await;
    // A's fails transiently: the pool is down, and A waits to probe; then A is cancelled.
    let a = {
        let pool = pool.clone();
        tokio::spawn(async move {
            pool.gate
                .connect(&pool.events, || answer(Answer::Refused))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    a.abort();
    assert_eq!(b.await.unwrap().unwrap_err().kind(), ErrorKind::Connection);
    // The server is healthy now: the next caller, one probe interval later, connects.
    tokio::time::sleep(Duration::from_millis(100)).await;
    pool.gate
        .connect(&pool.events, || answer(Answer::Up))
        .await
        .expect("the gate is not wedged");
    assert!(!pool.is_down());
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_of_the_half_open_probe_closes_the_circuit() {
    let breaker = CircuitBreaker::new(2, Duration::from_secs(5)).unwrap();
    let pool = pool(pool_policy(), Some(breaker));
    let error = pool
        .gate
        .connect(&pool.events, || answer(Answer::Refused))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::CircuitOpen);
    assert!(matches!(pool.gate.state(), State::Open { .. }));
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The one probe gets a permanent answer: the server is up, the circuit closes.
    let error = pool
        .gate
        .connect(&pool.events, || {
            answer(Answer::PermanentAfter(Duration::ZERO))
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection);
    assert!(matches!(pool.gate.state(), State::Up { .. }));
    pool.gate
        .connect(&pool.events, || answer(Answer::Up))
        .await
        .expect("creates are admitted again");
}

#[tokio::test(start_paused = true)]
async fn a_direct_success_while_the_pool_is_down_marks_it_up() {
    let pool = pool(pool_policy(), None);
    // B's connect begins while the pool is up and succeeds after A has marked it down.
    let b = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let slow_success = || async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                Ok::<_, io::Error>(())
            };
            pool.gate.connect(&pool.events, slow_success).await
        })
    };
    tokio::task::yield_now().await;
    let a = {
        let pool = pool.clone();
        tokio::spawn(async move {
            pool.gate
                .connect(&pool.events, || answer(Answer::Refused))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(pool.is_down());
    a.abort();
    b.await.unwrap().unwrap();
    assert!(
        !pool.is_down(),
        "a success is news that the database answers"
    );
    // The next caller connects at once, without waiting for a probe.
    let start = Instant::now();
    pool.gate
        .connect(&pool.events, || answer(Answer::Up))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_huge_accepted_deadline_does_not_overflow() {
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .initial_delay(Duration::ZERO)
        .max_delay(Duration::ZERO)
        .max_elapsed(crate::policy::MAX_DURATION)
        .attempt_timeout(crate::policy::MAX_DURATION)
        .build()
        .unwrap();
    let pool = pool(policy, None);
    let error = pool
        .gate
        .connect(&pool.events, || answer(Answer::Refused))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RetryExhausted);
    assert_eq!(error.attempts(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_lost_connection_makes_one_caller_probe_before_the_others_reconnect() {
    let backend = DownUntil::new(Duration::ZERO);
    let pool = pool(pool_policy(), None);
    pool.connect(&backend).await.unwrap();
    pool.gate.connection_lost(Instant::now());
    assert!(pool.is_down());
    let before = backend.attempts();
    let callers = spawn_callers(10, &pool, &backend);
    tokio::task::yield_now().await;
    assert_eq!(backend.attempts() - before, 1, "one probe first");
    for caller in callers {
        caller.await.unwrap().unwrap();
    }
    // A connection last seen alive before that success is old news.
    pool.gate
        .connection_lost(Instant::now() - Duration::from_secs(1));
    assert!(!pool.is_down());
}

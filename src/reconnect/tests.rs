//! The shared reconnect's logic on tokio's paused clock, against a backend whose "server" is
//! down until a given instant. (Real servers exercise the same code in tests/integration.)

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::RetryPolicy;

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

    fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::SeqCst)
    }
}

impl ConnectOnce for Arc<DownUntil> {
    type Connection = Instant;
    type Error = io::Error;

    async fn connect_once(&self) -> Result<Instant, io::Error> {
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

fn pool_policy() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(1000)
        .max_delay(Duration::from_millis(100))
        .max_elapsed(Duration::from_secs(5))
        .seed(1)
        .build()
        .unwrap()
}

fn reconnector(policy: RetryPolicy) -> Arc<Reconnector> {
    Arc::new(Reconnector::new(Retrier::new(policy), None))
}

#[tokio::test(start_paused = true)]
async fn waiters_share_one_probe_schedule_and_all_proceed_when_the_server_returns() {
    let backend = DownUntil::new(Duration::from_millis(1500));
    let gate = reconnector(pool_policy());
    let start = Instant::now();
    let callers: Vec<_> = (0..32)
        .map(|_| {
            let (gate, backend) = (gate.clone(), backend.clone());
            tokio::spawn(async move { gate.connect(&backend).await })
        })
        .collect();
    let mut connected_at = Vec::new();
    for caller in callers {
        connected_at.push(caller.await.unwrap().expect("every caller connects"));
    }
    let first = *connected_at.iter().min().unwrap();
    let last = *connected_at.iter().max().unwrap();
    // One probe about every 100 ms during 1.5 s, plus the 32 direct connects afterwards.
    let during_outage = backend.attempts() - 32;
    assert!(
        during_outage <= 32 + 16,
        "{during_outage} attempts during the outage"
    );
    assert!(first - backend.up_at <= Duration::from_millis(115));
    assert!(last - first <= Duration::from_millis(5));
    assert!(first - start >= Duration::from_millis(1500));
}

#[tokio::test(start_paused = true)]
async fn once_down_only_one_caller_probes_at_a_time() {
    let backend = DownUntil::new(Duration::from_secs(3600));
    let gate = reconnector(pool_policy());
    // The first caller marks the pool down; then 50 more join.
    let callers: Vec<_> = (0..51)
        .map(|_| {
            let (gate, backend) = (gate.clone(), backend.clone());
            tokio::spawn(async move { gate.connect(&backend).await })
        })
        .collect();
    for caller in callers {
        let error = caller.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Timeout);
        assert!(error.attempts() >= 40, "{} attempts", error.attempts());
        let cause = error.find_cause::<io::Error>().unwrap();
        assert_eq!(cause.kind(), io::ErrorKind::ConnectionRefused);
    }
    // 51 concurrent first tries, then about one probe per 100 ms for 5 s.
    assert!(backend.attempts() <= 51 + 55, "{}", backend.attempts());
}

#[tokio::test(start_paused = true)]
async fn a_permanent_probe_failure_ends_every_waiter_at_once() {
    let backend = DownUntil::new(Duration::from_secs(3600));
    let gate = reconnector(pool_policy());
    let first = gate.connect(&backend).await;
    assert!(first.is_err());
    assert!(gate.is_down());

    let permanent = Arc::new(DownUntil {
        up_at: Instant::now(),
        permanent: true,
        attempts: AtomicU32::new(0),
    });
    let start = Instant::now();
    let callers: Vec<_> = (0..10)
        .map(|_| {
            let (gate, backend) = (gate.clone(), permanent.clone());
            tokio::spawn(async move { gate.connect(&backend).await })
        })
        .collect();
    for caller in callers {
        let error = caller.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Connection);
        assert_eq!(error.class(), Some(ErrorClass::Permanent));
    }
    assert_eq!(permanent.attempts(), 1, "one probe told everyone");
    assert!(start.elapsed() <= Duration::from_millis(101));
    // The server answered: the next caller gets its own answer without waiting.
    let again = Instant::now();
    gate.connect(&permanent).await.unwrap_err();
    assert_eq!(again.elapsed(), Duration::from_millis(1));
}

#[tokio::test(start_paused = true)]
async fn cancelled_waiters_and_probers_do_not_wedge_the_pool() {
    let backend = DownUntil::new(Duration::from_millis(800));
    let gate = reconnector(pool_policy());
    for round in 0..5 {
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let (gate, backend) = (gate.clone(), backend.clone());
                tokio::spawn(async move { gate.connect(&backend).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50 + round * 7)).await;
        for caller in callers {
            caller.abort();
        }
    }
    let connection = gate
        .connect(&backend)
        .await
        .expect("connects after the outage");
    assert!(connection - backend.up_at <= Duration::from_millis(115));
}

#[tokio::test(start_paused = true)]
async fn each_waiter_gives_up_at_its_own_deadline() {
    let backend = DownUntil::new(Duration::from_secs(3600));
    let gate = reconnector(pool_policy().with_max_elapsed(Some(Duration::from_secs(1))));
    let start = Instant::now();
    let early = {
        let (gate, backend) = (gate.clone(), backend.clone());
        tokio::spawn(async move { (gate.connect(&backend).await, Instant::now()) })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let late = {
        let (gate, backend) = (gate.clone(), backend.clone());
        tokio::spawn(async move { (gate.connect(&backend).await, Instant::now()) })
    };
    let (early_result, early_end) = early.await.unwrap();
    let (late_result, late_end) = late.await.unwrap();
    assert_eq!(early_result.unwrap_err().kind(), ErrorKind::Timeout);
    assert_eq!(late_result.unwrap_err().kind(), ErrorKind::Timeout);
    assert!(early_end - start <= Duration::from_secs(1));
    assert!(early_end - start >= Duration::from_millis(850));
    assert!(late_end - start <= Duration::from_millis(1500));
    assert!(late_end - start >= Duration::from_millis(1350));
}

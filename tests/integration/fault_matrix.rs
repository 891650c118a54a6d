//! The fault scenarios of DESIGN §8, one test or more each, against real servers and the
//! fault proxy: what callers see (errors or none, kind, SQLSTATE), how many connect attempts
//! the pool made, and that the pool is healthy afterwards.
//!
//! Observed attempts and latencies are printed (`-- --nocapture` shows them); timing is only
//! ever asserted as a lower bound that cannot flake. Attempt counts are bounded by the
//! schedule instead: with [`pool_policy`] (`max_delay` 100 ms, ±10 % jitter, capped at 100 ms)
//! probes are at least 90 ms apart, so a pool that is down for `t` makes at most
//! `direct + t / 90 ms + 1` attempts, `direct` being the creates already under way when the
//! first one failed (at most the pool's size). See [`attempt_bound`].

use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dbretry::deadpool_postgres::{
    Manager, Object, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType, Timeouts,
};
use dbretry::health::HealthTarget;
use dbretry::{AttemptTimedOut, Classify, ErrorClass, ErrorKind, Phase, Retrier, RetryPolicy};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;
use tokio_postgres::config::TargetSessionAttrs;

use crate::deadpool_postgres::pool_policy;
use crate::support::{
    self, CapturedLogs, DATABASE, FaultProxy, Mode, PASSWORD, PgCluster, SUPERUSER,
};

type Bb8Manager = dbretry::bb8_postgres::PostgresConnectionManager<NoTls>;
type Bb8Pool = dbretry::bb8::Pool<Bb8Manager>;

/// The shortest gap between two probes under [`pool_policy`]: 100 ms minus 10 % jitter.
const MIN_PROBE_GAP: Duration = Duration::from_millis(90);
/// How long something expected "at once" may take on a loaded machine before a test fails.
const SETTLE: Duration = Duration::from_secs(10);

// ----- helpers -----

/// [`pool_policy`] with each connect attempt (and each recycle check) bounded.
fn policy_with_attempt_timeout(budget: Duration, attempt_timeout: Duration) -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(u32::MAX)
        .max_delay(Duration::from_millis(100))
        .max_elapsed(budget)
        .attempt_timeout(attempt_timeout)
        .build()
        .unwrap()
}

fn deadpool(
    config: tokio_postgres::Config,
    policy: RetryPolicy,
    max_size: usize,
    recycling: RecyclingMethod,
) -> Pool {
    let manager = Manager::builder(config, NoTls)
        .policy(policy)
        .recycling_method(recycling)
        .build();
    Pool::builder(manager).max_size(max_size).build().unwrap()
}

async fn bb8(config: tokio_postgres::Config, policy: RetryPolicy, max_size: u32) -> Bb8Pool {
    let manager = Bb8Manager::builder(config, NoTls).policy(policy).build();
    dbretry::bb8::Pool::new(bb8::Pool::builder().max_size(max_size), manager)
        .await
        .unwrap()
}

/// A config for a port where nothing listens.
fn nothing_listening() -> tokio_postgres::Config {
    let port = support::free_port();
    format!("postgres://app:pw@127.0.0.1:{port}/app")
        .parse()
        .unwrap()
}

/// The most connect attempts a pool down for `down` may make: the `direct` tries already under
/// way when the first failed, then one probe at a time at least [`MIN_PROBE_GAP`] apart.
fn attempt_bound(direct: usize, down: Duration) -> u64 {
    let probes = down.as_nanos() / MIN_PROBE_GAP.as_nanos();
    direct as u64 + u64::try_from(probes).unwrap() + 1
}

async fn select_one(client: &tokio_postgres::Client) -> Result<i32, tokio_postgres::Error> {
    Ok(client.query_one("SELECT 1", &[]).await?.get(0))
}

async fn get_and_select(pool: &Pool) -> Result<i32, String> {
    let client = pool.get().await.map_err(|e| format!("get: {e}"))?;
    select_one(&client).await.map_err(|e| format!("query: {e}"))
}

async fn bb8_get_and_select(pool: &Bb8Pool) -> Result<i32, String> {
    let client = pool.get().await.map_err(|e| format!("get: {e}"))?;
    select_one(&client).await.map_err(|e| format!("query: {e}"))
}

/// `n` tasks each doing one get + `SELECT 1`.
fn spawn_callers(pool: &Pool, n: usize) -> Vec<JoinHandle<Result<i32, String>>> {
    (0..n)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { get_and_select(&pool).await })
        })
        .collect()
}

fn spawn_bb8_callers(pool: &Bb8Pool, n: usize) -> Vec<JoinHandle<Result<i32, String>>> {
    (0..n)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { bb8_get_and_select(&pool).await })
        })
        .collect()
}

/// Awaits every caller, asserting each got `Ok(1)`; returns when the first and the last were
/// served.
async fn all_served(callers: Vec<JoinHandle<Result<i32, String>>>) -> (Instant, Instant) {
    let mut pending: FuturesUnordered<_> = callers.into_iter().collect();
    let mut first = None;
    let mut last = Instant::now();
    while let Some(result) = pending.next().await {
        assert_eq!(result.unwrap(), Ok(1));
        last = Instant::now();
        first.get_or_insert(last);
    }
    (first.expect("at least one caller"), last)
}

/// The pid of the server process serving `client`'s session.
async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

fn backend_error(error: PoolError) -> dbretry::Error {
    match error {
        PoolError::Backend(error) => error,
        other => panic!("expected a backend error, got {other:?}"),
    }
}

/// The kind of the first I/O error in the cause chain.
fn io_kind(error: &dbretry::Error) -> Option<io::ErrorKind> {
    error.find_cause::<io::Error>().map(io::Error::kind)
}

/// Polls `condition` every 10 ms until it holds; panics after `limit`. Returns the time it took.
async fn wait_until<F, Fut>(what: &str, limit: Duration, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Checks that the server saw the pool's `attempts`: each one that got an answer was logged
/// before the answer was sent, but a try cut short by its caller's deadline (at most one per
/// caller) may reach the server late or not at all.
fn assert_seen_by_server(seen: usize, attempts: u64, callers: u64) {
    let seen = seen as u64;
    assert!(
        seen <= attempts && seen + callers >= attempts,
        "the server saw {seen} connection attempts, the pool counted {attempts}"
    );
}

/// How many of the pool's idle connections have seen their session end, checked in place
/// (nothing is taken out of the pool).
fn idle_closed(pool: &Pool) -> usize {
    let mut closed = 0;
    pool.retain(|client, _| {
        closed += usize::from(client.is_closed());
        true
    });
    closed
}

/// Checks that the pool recovers: its health check passes, within [`SETTLE`] (a loaded
/// machine may need more than one 2 s check to reconnect).
async fn assert_healthy(pool: &(impl HealthTarget + ?Sized)) {
    let started = Instant::now();
    loop {
        let status = dbretry::health::check(pool).await;
        if status.healthy {
            return;
        }
        assert!(started.elapsed() < SETTLE, "{status:?}");
    }
}

/// Resident memory of this test process in KiB (printed, never asserted: tests share it).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

/// Whether the connection-level error says the session is gone: 57P01 / 57P02 from the
/// server, or closed / cut underneath.
fn is_session_ended(error: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    let Some(pg) = error.downcast_ref::<tokio_postgres::Error>() else {
        return error.downcast_ref::<io::Error>().is_some();
    };
    matches!(support::sqlstate(pg), Some("57P01" | "57P02"))
        || pg.is_closed()
        || support::io_error_kind(pg).is_some()
}

// ----- 1. starting up / in recovery (57P03) -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_in_recovery_is_waited_out_and_every_caller_is_served_after_promote() {
    let pg = PgCluster::init().await;
    pg.start_as_not_ready_standby().await;
    let pool = deadpool(
        pg.config(),
        pool_policy(Duration::from_secs(20)),
        4,
        RecyclingMethod::Fast,
    );
    let diagnostics = pool.manager().diagnostics();
    let started = Instant::now();
    let callers = spawn_callers(&pool, 8);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let promoting = Instant::now();
    pg.promote().await;
    let promoted = promoting.elapsed();
    let (first_served, last_served) = all_served(callers).await;
    let elapsed = started.elapsed();

    let attempts = diagnostics.connect_attempts();
    let last = diagnostics
        .last_connect_error()
        .expect("57P03 was recorded");
    assert_eq!(last.sqlstate(), Some("57P03"), "{last:?}");
    assert_eq!(last.class(), ErrorClass::Transient);
    assert_eq!(attempts.permanent, 0);
    assert!((1..=4).contains(&attempts.succeeded), "{attempts:?}");
    // Waited a second: at least the first try and a probe; at most one probe per ~100 ms.
    assert!(attempts.transient >= 2, "{attempts:?}");
    assert!(
        attempts.transient <= attempt_bound(4, elapsed),
        "{attempts:?} in {elapsed:?}"
    );
    // Every attempt reached the server (which answered 57P03 or accepted).
    assert_eq!(pg.connection_count_seen() as u64, attempts.total());
    println!(
        "57P03 starting up (deadpool): {attempts:?} over {elapsed:?}; promote() took \
         {promoted:?}; of 8 callers the first was served {:?}, the last {:?} after it began",
        first_served - promoting,
        last_served - promoting
    );
    assert_healthy(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bb8_a_server_in_recovery_is_waited_out_and_every_caller_is_served_after_promote() {
    let pg = PgCluster::init().await;
    pg.start_as_not_ready_standby().await;
    let pool = bb8(pg.config(), pool_policy(Duration::from_secs(20)), 4).await;
    let started = Instant::now();
    let callers = spawn_bb8_callers(&pool, 8);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let promoting = Instant::now();
    pg.promote().await;
    let promoted = promoting.elapsed();
    let (first_served, last_served) = all_served(callers).await;
    let elapsed = started.elapsed();

    let attempts = pool.diagnostics().connect_attempts();
    let last = pool.diagnostics().last_connect_error().expect("recorded");
    assert_eq!(last.sqlstate(), Some("57P03"), "{last:?}");
    assert_eq!(last.class(), ErrorClass::Transient);
    assert_eq!(attempts.permanent, 0);
    assert!(attempts.transient >= 2, "{attempts:?}");
    assert!(
        attempts.transient <= attempt_bound(4, elapsed),
        "{attempts:?} in {elapsed:?}"
    );
    println!(
        "57P03 starting up (bb8): {attempts:?} over {elapsed:?}; promote() took {promoted:?}; \
         of 8 callers the first was served {:?}, the last {:?} after it began",
        first_served - promoting,
        last_served - promoting
    );
    assert_healthy(&pool).await;
}

// ----- 2. shutting down (57P03) -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_shutting_down_gives_57p03_which_is_retried_until_the_deadline_then_reported() {
    let pg = PgCluster::start().await;
    // A smart shutdown waits for this session; meanwhile new connects get 57P03.
    let held = pg.admin().await;
    pg.stop_smart_nowait().await;
    let budget = Duration::from_millis(600);
    let pool = deadpool(pg.config(), pool_policy(budget), 2, RecyclingMethod::Fast);
    let diagnostics = pool.manager().diagnostics();
    let seen = pg.connection_count_seen();

    let started = Instant::now();
    let error = backend_error(pool.get().await.map(drop).unwrap_err());
    let took = started.elapsed();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert_eq!(error.sqlstate(), Some("57P03"), "{error}");
    assert_eq!(error.class(), Some(ErrorClass::Transient));
    assert!(error.attempts() > 1, "{error:?}");
    assert!(error.to_string().contains("shutting down"), "{error}");
    let attempts = diagnostics.connect_attempts();
    assert_eq!(
        attempts.total(),
        u64::from(error.attempts()),
        "{attempts:?}"
    );
    assert_eq!(attempts.transient, attempts.total(), "{attempts:?}");
    assert!(attempts.transient <= attempt_bound(1, took), "{attempts:?}");
    assert_seen_by_server(pg.connection_count_seen() - seen, attempts.total(), 1);
    println!(
        "57P03 shutting down: {} attempts in {took:?}: {error}",
        error.attempts()
    );

    // The held session works to the end; releasing it lets the shutdown finish.
    held.simple_query("SELECT 1").await.unwrap();
    drop(held);
    pg.wait_stopped().await;
    pg.start_server().await;
    assert_healthy(&pool).await;
}

// ----- 3. idle connections terminated (57P01) -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_idle_connections_are_never_handed_out_and_their_57p01_is_recorded() {
    let pg = PgCluster::start().await;
    let pool = deadpool(
        pg.config(),
        pool_policy(Duration::from_secs(10)),
        4,
        RecyclingMethod::Fast,
    );
    let diagnostics = pool.manager().diagnostics();
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(pool.get().await.unwrap());
    }
    let mut terminated = Vec::new();
    for client in &clients {
        terminated.push(backend_pid(client).await);
    }
    drop(clients);
    assert_eq!(pg.terminate_backends().await, 4);

    // Fast recycling trusts `is_closed()`: let the connection tasks read the FATAL first.
    let noticed = wait_until("the idle connections to see their end", SETTLE, || {
        std::future::ready(idle_closed(&pool) == 4)
    })
    .await;
    let last = diagnostics
        .last_connection_error()
        .expect("the connection tasks recorded how their sessions ended");
    assert!(is_session_ended(last.cause()), "{last:?}");
    assert_eq!(last.class(), ErrorClass::Transient);

    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(pool.get().await.unwrap());
    }
    for client in &clients {
        assert_eq!(select_one(client).await.unwrap(), 1);
        assert!(!terminated.contains(&backend_pid(client).await));
    }
    let attempts = diagnostics.connect_attempts();
    // One probe after the loss (it succeeded), then direct connects: no failed attempt.
    assert_eq!(
        (attempts.succeeded, attempts.transient),
        (8, 0),
        "{attempts:?}"
    );
    println!(
        "terminated: connection tasks noticed within {noticed:?}; last connection error {:?} \
         ({:?}); {attempts:?}",
        last.sqlstate(),
        last.cause().to_string()
    );
    drop(clients);
    assert_healthy(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bb8_terminated_idle_connections_are_never_handed_out() {
    let pg = PgCluster::start().await;
    let pool = bb8(pg.config(), pool_policy(Duration::from_secs(10)), 4).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(pool.get().await.unwrap());
    }
    let mut terminated = Vec::new();
    for client in &clients {
        terminated.push(backend_pid(client).await);
    }
    drop(clients);
    assert_eq!(pg.terminate_backends().await, 4);
    // bb8 checks each connection on checkout (`is_valid`), so once the server has ended the
    // sessions no waiting for the client side is needed.
    let pg_ref = &pg;
    wait_until("the terminated backends to exit", SETTLE, || async move {
        pg_ref.backend_pids().await.is_empty()
    })
    .await;

    let callers: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let client = pool.get().await.map_err(|e| e.to_string())?;
                let pid = backend_pid(&client).await;
                select_one(&client).await.map_err(|e| e.to_string())?;
                Ok::<_, String>(pid)
            })
        })
        .collect();
    for caller in callers {
        let pid = caller.await.unwrap().unwrap();
        assert!(!terminated.contains(&pid));
    }
    let diagnostics = pool.diagnostics();
    wait_until("the end of the sessions to be recorded", SETTLE, || {
        std::future::ready(diagnostics.last_connection_error().is_some())
    })
    .await;
    let last = diagnostics.last_connection_error().unwrap();
    assert!(is_session_ended(last.cause()), "{last:?}");
    let attempts = diagnostics.connect_attempts();
    assert_eq!(attempts.transient + attempts.permanent, 0, "{attempts:?}");
    assert!(attempts.succeeded >= 5, "{attempts:?}");
    println!("terminated (bb8): last connection error {last:?}; {attempts:?}");
    assert_healthy(&pool).await;
}

// ----- 4. backend crash (57P02, then 57P03 "in recovery mode") -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_backend_ends_every_session_and_the_pool_recovers_without_get_errors() {
    let pg = PgCluster::start().await;
    let pool = deadpool(
        pg.config(),
        pool_policy(Duration::from_secs(20)),
        4,
        RecyclingMethod::Fast,
    );
    let diagnostics = pool.manager().diagnostics();
    let crashed_session = pool.get().await.unwrap();
    let other_session = pool.get().await.unwrap();
    let crashed_pid = backend_pid(&crashed_session).await;

    let crashed = Instant::now();
    pg.kill_backend(crashed_pid, "KILL");
    // The postmaster ends every other session (PostgreSQL 15 sends 57P02 as a WARNING, then
    // closes). Until its SIGQUIT arrives the other session may still answer.
    let other_error = loop {
        match select_one(&other_session).await {
            Err(error) => break error,
            Ok(_) => assert!(crashed.elapsed() < SETTLE, "the other session never ended"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let crashed_error = select_one(&crashed_session).await.unwrap_err();
    for error in [&other_error, &crashed_error] {
        assert!(is_session_ended(error), "{error:?}");
        assert_eq!(error.classify(Phase::Operation), ErrorClass::Transient);
        assert!(error.breaks_connection(), "{error:?}");
    }
    drop((crashed_session, other_session));

    // Callers arriving during crash recovery are served once it is over.
    let (first_served, last_served) = all_served(spawn_callers(&pool, 8)).await;
    let recovered = crashed.elapsed();
    let attempts = diagnostics.connect_attempts();
    assert_eq!(attempts.permanent, 0, "{attempts:?}");
    assert!(
        attempts.transient <= attempt_bound(4, recovered),
        "{attempts:?} in {recovered:?}"
    );
    let last = diagnostics.last_connect_error();
    if let Some(last) = &last {
        assert_eq!(last.class(), ErrorClass::Transient, "{last:?}");
    }
    println!(
        "backend crash: other session got {:?} / {}, crashed one {}; of 8 callers the first was \
         served {:?}, the last {:?} after the kill; {attempts:?}; last connect error {:?}",
        support::sqlstate(&other_error),
        support::error_chain(&other_error),
        support::error_chain(&crashed_error),
        first_served - crashed,
        last_served - crashed,
        last.map(|e| support::error_chain(e.cause()))
    );
    assert_healthy(&pool).await;
}

// ----- 5. out of connection slots (53300) -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_connection_slots_53300_is_backed_off_and_reported_at_the_deadline() {
    let pg = PgCluster::start().await;
    pg.execute("CREATE ROLE limited LOGIN PASSWORD 'limited-pw' CONNECTION LIMIT 1")
        .await;
    let url = pg.url_with("limited", "limited-pw", DATABASE);
    let held = support::connect_url(&url).await.unwrap();
    // Room for several tries however long one takes on this machine now.
    let one_try = support::time_to_connect(&pg.config()).await;
    let budget = Duration::from_millis(700).max(one_try * 10);
    let pool = deadpool(
        url.parse().unwrap(),
        pool_policy(budget),
        3,
        RecyclingMethod::Fast,
    );
    let diagnostics = pool.manager().diagnostics();
    let seen = pg.connection_count_seen();

    let started = Instant::now();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.get().await.map(drop) })
        })
        .collect();
    for waiter in waiters {
        let error = backend_error(waiter.await.unwrap().unwrap_err());
        assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
        assert_eq!(error.sqlstate(), Some("53300"), "{error}");
        assert_eq!(error.class(), Some(ErrorClass::Transient));
        assert!(error.attempts() > 1, "{error:?}");
        assert!(
            error.to_string().contains("no free connection slots"),
            "{error}"
        );
    }
    let took = started.elapsed();
    let attempts = diagnostics.connect_attempts();
    assert_eq!(attempts.transient, attempts.total(), "{attempts:?}");
    // Three waiters, one shared schedule.
    assert!(
        attempts.transient <= attempt_bound(3, took),
        "{attempts:?} in {took:?}"
    );
    assert_seen_by_server(pg.connection_count_seen() - seen, attempts.total(), 3);
    println!("53300: 3 waiters gave up after {took:?}; {attempts:?}");

    drop(held);
    let pg_ref = &pg;
    wait_until("the held session to end", SETTLE, || async move {
        pg_ref.backend_pids().await.is_empty()
    })
    .await;
    assert_healthy(&pool).await;
}

// ----- 6. server hangs after TCP accept (SIGSTOP) -----

/// A pool whose retry hook records when each failed try ended (time since the caller began).
fn deadpool_recording_retries(
    config: tokio_postgres::Config,
    policy: RetryPolicy,
) -> (Pool, Arc<Mutex<Vec<Duration>>>) {
    let retries = Arc::new(Mutex::new(Vec::new()));
    let recorded = retries.clone();
    let retrier =
        Retrier::new(policy).on_retry(move |event| recorded.lock().unwrap().push(event.elapsed));
    let manager = Manager::builder(config, NoTls).retrier(retrier).build();
    (Pool::builder(manager).max_size(2).build().unwrap(), retries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_hangs_after_accept_costs_one_attempt_timeout_per_try_then_a_timeout() {
    let pg = PgCluster::start().await;
    let attempt_timeout = Duration::from_millis(300);
    let budget = Duration::from_millis(1500);
    let (pool, retries) = deadpool_recording_retries(
        pg.config(),
        policy_with_attempt_timeout(budget, attempt_timeout),
    );
    pg.sigstop();
    let started = Instant::now();
    let result = tokio::time::timeout(budget + SETTLE, pool.get())
        .await
        .expect("get() hung: nothing bounded the connect");
    let took = started.elapsed();
    let error = backend_error(result.map(drop).unwrap_err());
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    let timed_out = error
        .find_cause::<AttemptTimedOut>()
        .unwrap_or_else(|| panic!("cause is not AttemptTimedOut: {error:?}"));
    assert_eq!(timed_out.timeout, attempt_timeout);
    assert_eq!(error.class(), Some(ErrorClass::Transient));
    assert!(error.attempts() >= 2, "{error:?}");
    // Each try waited out its full bound: the server never answered.
    assert!(error.elapsed() >= attempt_timeout * error.attempts().saturating_sub(1));
    let attempts = pool.manager().diagnostics().connect_attempts();
    assert_eq!(attempts.transient, attempts.total(), "{attempts:?}");
    println!(
        "SIGSTOP: get() failed after {took:?} with {} attempts; tries ended at {:?}",
        error.attempts(),
        retries.lock().unwrap()
    );

    pg.sigcont();
    assert_healthy(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bb8_a_server_that_hangs_after_accept_times_out_with_the_attempt_timeout_as_cause() {
    let pg = PgCluster::start().await;
    let attempt_timeout = Duration::from_millis(300);
    let budget = Duration::from_millis(1500);
    let pool = bb8(
        pg.config(),
        policy_with_attempt_timeout(budget, attempt_timeout),
        2,
    )
    .await;
    pg.sigstop();
    let started = Instant::now();
    let result = tokio::time::timeout(budget + SETTLE, pool.get())
        .await
        .expect("get() hung: nothing bounded the connect");
    let took = started.elapsed();
    let error = result.map(drop).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    let timed_out = error
        .find_cause::<AttemptTimedOut>()
        .unwrap_or_else(|| panic!("cause is not AttemptTimedOut: {error:?}"));
    assert_eq!(timed_out.timeout, attempt_timeout);
    let attempts = pool.diagnostics().connect_attempts();
    assert_eq!(attempts.transient, attempts.total(), "{attempts:?}");
    assert!(attempts.transient >= 2, "{attempts:?}");
    println!("SIGSTOP (bb8): get() failed after {took:?}: {error}; {attempts:?}");

    pg.sigcont();
    assert_healthy(&pool).await;
}

// ----- 7. link down and back -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_reset_evicts_the_connections_in_use_and_the_pool_refills_once_the_link_is_back() {
    let pg = PgCluster::start().await;
    let proxy = FaultProxy::start(pg.socket_addr()).await;
    let pool = deadpool(
        pg.config_via(proxy.addr()),
        pool_policy(Duration::from_secs(10)),
        4,
        RecyclingMethod::Fast,
    );
    let diagnostics = pool.manager().diagnostics();
    let mut in_use = Vec::new();
    for _ in 0..4 {
        in_use.push(pool.get().await.unwrap());
    }
    let mut old_pids = Vec::new();
    for client in &in_use {
        old_pids.push(backend_pid(client).await);
    }

    proxy.set_mode(Mode::Reset).await;
    for client in &in_use {
        let error = select_one(client).await.unwrap_err();
        assert_eq!(error.classify(Phase::Operation), ErrorClass::Transient);
        assert!(error.breaks_connection(), "{error:?}");
    }
    drop(in_use);

    // The link stays down (connects refused) for a second while callers wait.
    proxy.set_mode(Mode::Refuse).await;
    proxy.reset_counts();
    let down = Instant::now();
    let callers = spawn_callers(&pool, 8);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let while_down = diagnostics.connect_attempts();
    assert_eq!(proxy.accepted(), 0);
    proxy.set_mode(Mode::Pass).await;
    let back = Instant::now();
    let (first_served, last_served) = all_served(callers).await;

    let attempts = diagnostics.connect_attempts();
    assert!(while_down.transient >= 2, "{while_down:?}");
    assert!(
        attempts.transient <= attempt_bound(4, down.elapsed()),
        "{attempts:?}"
    );
    // The four reset connections were replaced, not handed out again: four new connects,
    // each the one accepted by the proxy since the link came back.
    assert_eq!(attempts.succeeded, 8, "{attempts:?}");
    assert_eq!(proxy.accepted(), 4);
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(pool.get().await.unwrap());
    }
    for client in &clients {
        assert!(!old_pids.contains(&backend_pid(client).await));
    }
    println!(
        "link down: {} connect attempts refused in 1 s; of 8 callers the first was served {:?}, \
         the last {:?} after the link came back; {attempts:?}",
        while_down.transient,
        first_served - back,
        last_served - back
    );
    drop(clients);
    assert_healthy(&pool).await;
}

// ----- 8. black hole on a connection in use -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_connection_in_use_is_bounded_by_the_caller_and_discarded_at_recycle() {
    let pg = PgCluster::start().await;
    let proxy = FaultProxy::start(pg.socket_addr()).await;
    let attempt_timeout = Duration::from_millis(300);
    // One slot: a permit lost with the black-holed connection would hang the next get().
    let pool = deadpool(
        pg.config_via(proxy.addr()),
        policy_with_attempt_timeout(Duration::from_secs(5), attempt_timeout),
        1,
        RecyclingMethod::Verified,
    );
    let client = pool.get().await.unwrap();
    let old_pid = backend_pid(&client).await;

    proxy.set_mode(Mode::BlackHole).await;
    // The pool bounds connects and recycle checks, not the caller's own queries: those are the
    // caller's to bound (a timeout around the call, or `statement_timeout` /
    // `tcp_user_timeout` in the config).
    let stalled = tokio::time::timeout(Duration::from_millis(500), select_one(&client)).await;
    assert!(stalled.is_err(), "the query should hang in the black hole");
    let status = pool.status();
    assert_eq!((status.size, status.available), (1, 0), "{status:?}");
    drop(client);
    let status = pool.status();
    assert_eq!(
        (status.size, status.available, status.waiting),
        (1, 1, 0),
        "{status:?}"
    );

    // The session lost bytes, so it is broken even with the link back: the recycle check
    // waits its bound for an answer that never comes, and the pool connects anew.
    proxy.set_mode(Mode::Pass).await;
    let started = Instant::now();
    let client = tokio::time::timeout(SETTLE, pool.get())
        .await
        .expect("the recycle check is bounded by the attempt timeout")
        .unwrap();
    let took = started.elapsed();
    assert!(took >= attempt_timeout, "{took:?}");
    assert_ne!(backend_pid(&client).await, old_pid);
    assert_eq!(select_one(&client).await.unwrap(), 1);
    let attempts = pool.manager().diagnostics().connect_attempts();
    assert_eq!(
        (attempts.succeeded, attempts.transient),
        (2, 0),
        "{attempts:?}"
    );
    println!(
        "black hole: get() after the link came back took {took:?} (check bound {attempt_timeout:?}); {attempts:?}"
    );
    drop(client);
    assert_healthy(&pool).await;
}

// ----- 9. TCP reset and a cut mid-result -----

/// Display, Debug and the source chain of an error, for secret checks.
fn all_text(error: &(dyn std::error::Error + 'static)) -> String {
    format!("{error}\n{error:?}\n{}", support::error_chain(error))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_reset_mid_session_is_transient_breaks_the_connection_and_leaks_no_secret() {
    let pg = PgCluster::start().await;
    let proxy = FaultProxy::start(pg.socket_addr()).await;
    let pool = deadpool(
        pg.config_via(proxy.addr()),
        pool_policy(Duration::from_secs(5)),
        2,
        RecyclingMethod::Fast,
    );
    let client = pool.get().await.unwrap();
    let old_pid = backend_pid(&client).await;
    proxy.set_mode(Mode::Reset).await;
    let error = select_one(&client).await.unwrap_err();
    assert_eq!(error.classify(Phase::Operation), ErrorClass::Transient);
    assert!(error.breaks_connection(), "{error:?}");
    drop(client);

    proxy.set_mode(Mode::Pass).await;
    let client = pool.get().await.unwrap();
    assert_ne!(
        backend_pid(&client).await,
        old_pid,
        "the reset connection was evicted"
    );
    let diagnostics = pool.manager().diagnostics();
    let recorded = diagnostics.last_connection_error().expect("recorded");
    for text in [
        all_text(&error),
        format!("{recorded:?}"),
        format!("{diagnostics:?}"),
    ] {
        assert!(!text.contains(PASSWORD), "{text}");
    }
    println!(
        "reset: {}; recorded {recorded:?}",
        support::error_chain(&error)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_cut_mid_stream_is_transient_breaks_the_connection_and_leaks_no_secret() {
    let pg = PgCluster::start().await;
    let proxy = FaultProxy::start(pg.socket_addr()).await;
    let pool = deadpool(
        pg.config_via(proxy.addr()),
        pool_policy(Duration::from_secs(5)),
        2,
        RecyclingMethod::Fast,
    );
    // Enough for the startup exchange, far less than the 100 kB result.
    proxy.set_mode(Mode::CutAfter(8 * 1024)).await;
    let big = "SELECT repeat('x', 100000)";
    let client = pool.get().await.unwrap();
    let old_pid = backend_pid(&client).await;
    let error = client.query_one(big, &[]).await.unwrap_err();
    assert_eq!(error.classify(Phase::Operation), ErrorClass::Transient);
    assert!(error.breaks_connection(), "{error:?}");
    assert!(!all_text(&error).contains(PASSWORD));
    drop(client);

    proxy.set_mode(Mode::Pass).await;
    let client = pool.get().await.unwrap();
    assert_ne!(
        backend_pid(&client).await,
        old_pid,
        "the cut connection was evicted"
    );
    let text: String = client.query_one(big, &[]).await.unwrap().get(0);
    assert_eq!(text.len(), 100_000);
    let attempts = pool.manager().diagnostics().connect_attempts();
    assert_eq!(
        (attempts.succeeded, attempts.transient),
        (2, 0),
        "{attempts:?}"
    );
    println!("cut mid-result: {}", support::error_chain(&error));
}

// ----- 10. retry storm: 1,000 waiters against a down server -----

/// Alive tokio tasks now (the runtime's, so only meaningful in a test's own runtime).
fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits until the runtime is back to at most `baseline` tasks (plus a small constant for
/// tasks finishing their last poll), and returns how long that took.
async fn wait_for_tasks_to_settle(baseline: usize) -> Duration {
    wait_until("the storm's tasks to end", SETTLE, || {
        std::future::ready(alive_tasks() <= baseline + 2)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_1000_waiters_makes_one_schedule_of_attempts_and_leaves_no_task_behind() {
    let budget = Duration::from_secs(1);
    let manager = Manager::builder(nothing_listening(), NoTls)
        .policy(pool_policy(budget))
        .build();
    // deadpool's budget starts at `create`, so without a wait bound callers queued for one of
    // the 10 slots would each wait a full budget after the one before: bound the wait too.
    let timeouts = Timeouts {
        wait: Some(budget),
        ..Timeouts::default()
    };
    let pool = Pool::builder(manager)
        .max_size(10)
        .timeouts(timeouts)
        .runtime(Runtime::Tokio1)
        .build()
        .unwrap();
    let diagnostics = pool.manager().diagnostics();
    let tasks_before = alive_tasks();
    let rss_before = rss_kib();

    let started = Instant::now();
    let waiters: Vec<_> = (0..1000)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.get().await.map(drop) })
        })
        .collect();
    let (mut gave_up_connecting, mut gave_up_waiting_for_a_slot) = (0, 0);
    for waiter in waiters {
        match waiter.await.unwrap().unwrap_err() {
            PoolError::Backend(error) => {
                assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
                assert_eq!(io_kind(&error), Some(io::ErrorKind::ConnectionRefused));
                gave_up_connecting += 1;
            }
            PoolError::Timeout(TimeoutType::Wait) => gave_up_waiting_for_a_slot += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let took = started.elapsed();
    let attempts = diagnostics.connect_attempts();
    assert_eq!(attempts.total(), attempts.transient, "{attempts:?}");
    // Ten first tries, then one shared probe schedule — nowhere near one try per waiter.
    assert!(
        attempts.total() <= attempt_bound(10, took),
        "{attempts:?} in {took:?}"
    );
    assert!(gave_up_connecting >= 10, "{gave_up_connecting}");
    let last = diagnostics.last_connect_error().expect("recorded");
    let last_io = last.cause().downcast_ref::<tokio_postgres::Error>();
    assert_eq!(
        last_io.and_then(|e| support::io_error_kind(e)),
        Some(io::ErrorKind::ConnectionRefused),
        "{last:?}"
    );
    let settled = wait_for_tasks_to_settle(tasks_before).await;
    println!(
        "storm (deadpool): 1000 waiters done in {took:?}: {gave_up_connecting} gave up connecting \
         (Timeout + ConnectionRefused), {gave_up_waiting_for_a_slot} waiting for a slot \
         (deadpool's Timeout(Wait)); {attempts:?}; tasks {tasks_before} -> {} (settled in \
         {settled:?}); RSS {rss_before} -> {} KiB",
        alive_tasks(),
        rss_kib()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bb8_a_storm_of_1000_waiters_ends_each_with_the_real_cause_and_leaves_no_task_behind() {
    let budget = Duration::from_secs(1);
    let pool = bb8(nothing_listening(), pool_policy(budget), 10).await;
    let tasks_before = alive_tasks();
    let rss_before = rss_kib();

    let started = Instant::now();
    let waiters: Vec<_> = (0..1000)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.get().await.map(drop) })
        })
        .collect();
    for waiter in waiters {
        let error = waiter.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
        assert_eq!(io_kind(&error), Some(io::ErrorKind::ConnectionRefused));
    }
    let took = started.elapsed();
    let settled = wait_for_tasks_to_settle(tasks_before).await;
    let attempts = pool.diagnostics().connect_attempts();
    assert_eq!(attempts.total(), attempts.transient, "{attempts:?}");
    assert!(
        attempts.total() <= attempt_bound(10, started.elapsed()),
        "{attempts:?}"
    );
    println!(
        "storm (bb8): 1000 waiters failed with Timeout + ConnectionRefused in {took:?}; \
         {attempts:?}; tasks {tasks_before} -> {} (settled in {settled:?}); RSS {rss_before} -> {} KiB",
        alive_tasks(),
        rss_kib()
    );
}

// ----- 11. secrets -----

/// Display and Debug of a pool error, and of dbretry's error inside.
fn pool_error_texts(error: &PoolError) -> Vec<String> {
    let mut texts = vec![format!("{error}"), format!("{error:?}")];
    if let PoolError::Backend(error) = error {
        texts.push(all_text(error));
        texts.push(format!("{error:#?}"));
    }
    texts
}

/// A health report as the JSON an HTTP endpoint would serve.
async fn health_json(pool: &Pool) -> (bool, String) {
    let report = dbretry::health::check_detailed(pool, Duration::from_secs(2)).await;
    (report.healthy, serde_json::to_string(&report).unwrap())
}

#[test]
fn passwords_appear_in_no_error_log_line_debug_output_or_health_body() {
    let secret = format!("S3cret-pw-{:x}", support::random_u64());
    let wrong = format!("S3cret-pw-wrong-{:x}", support::random_u64());
    let _second_dispatcher = support::logs::ask_every_dispatcher();
    let logs = CapturedLogs::default();
    let subscriber = logs.subscriber();
    let texts = {
        // Current-thread runtime: every task, connection tasks included, logs to this thread's
        // subscriber.
        let _guard = tracing::subscriber::set_default(subscriber);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(fail_in_every_way_with_passwords(&secret, &wrong))
    };
    let logs = logs.text();
    // The capture is not vacuous: retries and the restart were logged.
    assert!(logs.contains("transient failure, retrying"), "{logs}");
    assert!(
        logs.contains("pooled connection closed with an error"),
        "{logs}"
    );
    for text in texts.iter().chain([&logs]) {
        for password in [&secret, &wrong] {
            assert!(!text.contains(password.as_str()), "leaked: {text}");
        }
    }
    println!(
        "secrets: checked {} texts and {} log lines",
        texts.len(),
        logs.lines().count()
    );
}

/// A wrong password, a restart, refused connects and health checks with the passwords in the
/// connection URLs; returns every text a user could see along the way.
async fn fail_in_every_way_with_passwords(secret: &str, wrong: &str) -> Vec<String> {
    let pg = PgCluster::start().await;
    pg.execute(&format!("ALTER ROLE {SUPERUSER} PASSWORD '{secret}'"))
        .await;
    let url = pg.url_with(SUPERUSER, secret, DATABASE);
    let wrong_url = pg.url_with(SUPERUSER, wrong, DATABASE);
    assert!(url.contains(secret) && wrong_url.contains(wrong));
    let mut texts = vec![dbretry::redact_url(&url), dbretry::redact_url(&wrong_url)];
    let budget = Duration::from_millis(500);

    let wrong_pool = deadpool(
        wrong_url.parse().unwrap(),
        pool_policy(budget),
        2,
        RecyclingMethod::Verified,
    );
    let error = wrong_pool.get().await.map(drop).unwrap_err();
    texts.extend(pool_error_texts(&error));
    assert_eq!(backend_error(error).sqlstate(), Some("28P01"));

    let pool = deadpool(
        url.parse().unwrap(),
        pool_policy(budget),
        2,
        RecyclingMethod::Verified,
    );
    let diagnostics = pool.manager().diagnostics();
    assert_eq!(get_and_select(&pool).await, Ok(1));
    pg.restart_fast().await;
    wait_until("the restart to end the pooled session", SETTLE, || {
        std::future::ready(diagnostics.last_connection_error().is_some())
    })
    .await;
    assert_eq!(get_and_select(&pool).await, Ok(1));

    pg.stop_fast().await;
    let error = pool.get().await.map(drop).unwrap_err();
    texts.extend(pool_error_texts(&error));
    assert_eq!(backend_error(error).kind(), ErrorKind::Timeout);
    let (healthy, json) = health_json(&pool).await;
    assert!(!healthy, "{json}");
    texts.push(json);
    pg.start_server().await;
    let (healthy, json) = health_json(&pool).await;
    assert!(healthy, "{json}");
    texts.push(json);
    texts.push(health_json(&wrong_pool).await.1);

    for diagnostics in [diagnostics, wrong_pool.manager().diagnostics()] {
        texts.push(format!("{diagnostics:?}"));
        texts.push(format!("{:?}", diagnostics.last_connect_error()));
        texts.push(format!("{:?}", diagnostics.last_connection_error()));
    }
    texts.push(format!("{:?}", pool.manager()));
    texts.push(format!("{:?}", wrong_pool.manager()));
    texts.push(format!(
        "{:?}",
        Bb8Manager::builder(url.parse().unwrap(), NoTls).build()
    ));
    texts
}

// ----- 12. failover (primary stopped, replica promoted) and 25006 -----

/// Both servers, the primary first, accepting only one that takes writes.
fn both_hosts_read_write(primary: &PgCluster, replica: &PgCluster) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host(primary.host())
        .port(primary.port())
        .host(replica.host())
        .port(replica.port())
        .user(SUPERUSER)
        .password(PASSWORD)
        .dbname(DATABASE)
        .target_session_attrs(TargetSessionAttrs::ReadWrite);
    config
}

/// Whether the server is a standby, and the port it serves on.
async fn server_role(client: &tokio_postgres::Client) -> Result<(bool, u16), String> {
    let row = client
        .query_one("SELECT pg_is_in_recovery(), inet_server_port()", &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok((row.get(0), u16::try_from(row.get::<_, i32>(1)).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_callers_end_up_on_the_promoted_replica() {
    let primary = PgCluster::start().await;
    let replica = PgCluster::replica_of(&primary).await;
    let pool = deadpool(
        both_hosts_read_write(&primary, &replica),
        pool_policy(Duration::from_secs(20)),
        2,
        RecyclingMethod::Fast,
    );
    let diagnostics = pool.manager().diagnostics();
    let client = pool.get().await.unwrap();
    assert_eq!(server_role(&client).await, Ok((false, primary.port())));
    drop(client);

    primary.stop_fast().await;
    let stopped = Instant::now();
    wait_until("the pooled connection to see the shutdown", SETTLE, || {
        std::future::ready(idle_closed(&pool) == 1)
    })
    .await;
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let client = pool.get().await.map_err(|e| e.to_string())?;
                server_role(&client).await
            })
        })
        .collect();
    // Meanwhile the pool finds the old primary refusing and the replica read-only; the
    // multi-host connect reports what happened on each host, in order.
    let each_host = || {
        let last = diagnostics.last_connect_error()?;
        let hosts = last.find_cause::<dbretry::postgres::HostFailures>()?;
        Some(
            hosts
                .hosts()
                .map(|(host, error)| (host.to_owned(), support::io_error_kind(error)))
                .collect::<Vec<_>>(),
        )
    };
    let expected = vec![
        (
            format!("{}:{}", support::pg::HOST, primary.port()),
            Some(io::ErrorKind::ConnectionRefused),
        ),
        (
            format!("{}:{}", support::pg::HOST, replica.port()),
            Some(io::ErrorKind::PermissionDenied),
        ),
    ];
    wait_until("a connect to meet the read-only replica", SETTLE, || {
        std::future::ready(each_host().as_ref() == Some(&expected))
    })
    .await;
    let before_promote = diagnostics.connect_attempts();
    let last_before_promote = diagnostics.last_connect_error().unwrap();
    replica.promote().await;
    let promoted = Instant::now();
    for caller in callers {
        assert_eq!(caller.await.unwrap(), Ok((false, replica.port())));
    }
    let served = promoted.elapsed();

    assert_eq!(last_before_promote.class(), ErrorClass::Transient);
    assert!(before_promote.transient >= 1, "{before_promote:?}");
    let attempts = diagnostics.connect_attempts();
    assert_eq!(attempts.permanent, 0, "{attempts:?}");
    assert!(
        attempts.transient <= attempt_bound(2, stopped.elapsed()),
        "{attempts:?}"
    );
    println!(
        "failover: before promote {before_promote:?}, last error {:?}; callers served {served:?} \
         after promote() returned; {attempts:?}",
        support::error_chain(last_before_promote.cause())
    );
    assert_healthy(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_hits_25006_leaves_the_pool_when_the_caller_takes_it_out() {
    let primary = PgCluster::start().await;
    primary.execute("CREATE TABLE visits (n int)").await;
    let replica = PgCluster::replica_of(&primary).await;
    // No target_session_attrs: this pool can land on a read-only server, as after a failover
    // that turned its old primary into a standby.
    let pool = deadpool(
        replica.config(),
        pool_policy(Duration::from_secs(5)),
        2,
        RecyclingMethod::Fast,
    );
    let diagnostics = pool.manager().diagnostics();
    let insert = "INSERT INTO visits VALUES (1)";

    let client = pool.get().await.unwrap();
    let first_pid = backend_pid(&client).await;
    let error = client.execute(insert, &[]).await.unwrap_err();
    assert_eq!(support::sqlstate(&error), Some("25006"), "{error:?}");
    assert_eq!(error.classify(Phase::Operation), ErrorClass::Transient);
    assert!(error.breaks_connection());
    // Returned as usual, the session is still open, so Fast recycling (is_closed() only)
    // cannot tell it apart from a good one.
    drop(client);
    let client = pool.get().await.unwrap();
    let kept = backend_pid(&client).await == first_pid;

    // What callers should do: a connection whose error breaks_connection() is taken out of
    // the pool instead of being returned to it.
    let taken_pid = backend_pid(&client).await;
    let error = client.execute(insert, &[]).await.unwrap_err();
    assert!(error.breaks_connection(), "{error:?}");
    let succeeded_before = diagnostics.connect_attempts().succeeded;
    drop(Object::take(client));
    assert_eq!(pool.status().size, 0);
    let client = pool.get().await.unwrap();
    assert_ne!(backend_pid(&client).await, taken_pid);
    assert_eq!(
        diagnostics.connect_attempts().succeeded,
        succeeded_before + 1
    );
    println!(
        "25006: returned as usual, the connection was {} by Fast recycling; taken out with \
         Object::take(), it was replaced",
        if kept { "kept" } else { "evicted" }
    );
}

// ----- cancellation: a give-up belongs to the caller whose connect made it -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bb8_a_connect_left_behind_by_an_abandoned_get_does_not_cut_a_later_get_short() {
    let budget = Duration::from_millis(1500);
    let pool = bb8(nothing_listening(), pool_policy(budget), 2).await;
    // The first caller stops waiting after 1 s; the connect bb8 spawned for it runs on to its
    // own deadline and gives up then.
    let abandoned = tokio::time::timeout(Duration::from_secs(1), pool.get()).await;
    assert!(
        abandoned.is_err(),
        "the first get() should still be waiting"
    );

    let started = Instant::now();
    let error = pool.get().await.map(drop).unwrap_err();
    let waited = started.elapsed();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert_eq!(io_kind(&error), Some(io::ErrorKind::ConnectionRefused));
    // This caller has a budget of its own: it is given up on at the earliest one backoff step
    // (`max_delay`) before its deadline, not when another caller's connect gives up.
    let max_delay = Duration::from_millis(100);
    assert!(
        waited >= budget - max_delay,
        "waited only {waited:?}: {error}"
    );
    println!("abandoned get: the next get() waited {waited:?} for its own budget: {error}");
}

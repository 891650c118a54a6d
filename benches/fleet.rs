//! The fleet row of DESIGN §9: many service replicas, each with its own pool, against ONE
//! throwaway PostgreSQL cluster that is restarted (`pg_ctl stop -m fast`, then start at once)
//! under load — directly, then through a PgBouncer (session mode, `server_login_retry` 1 s) in
//! front of it, where the server behind PgBouncer is restarted. Plain deadpool-postgres (Fast
//! recycling) and bb8-postgres (defaults) beside dbretry's deadpool pool (once per jitter
//! strategy) and bb8 pool, every subject in its own round of the same run.
//!
//! ```text
//! cargo bench --bench fleet --all-features                # 50 pools, 3 restarts each: ~3 min here
//! cargo bench --bench fleet --all-features -- --quick     # 10 pools, 1 restart: smoke run, ~30 s
//! cargo bench --bench fleet --all-features -- --pools 30 --tasks 3 --think-ms 5 --restarts 5
//! ```
//!
//! A round: N pools (`--pools`, default 50), each max 10 connections and a 5 s budget, are
//! filled to all 10 connections (a replica that has seen a burst keeps a full pool; each gets
//! a query, so behind PgBouncer each has its server connection). Every pool then runs
//! `--tasks` (default 2) tasks looping `get()` + `SELECT 1` with `--think-ms` (default 10 ms)
//! after every request, error or not: 50 × 2 tasks offer ~8k requests/s, which a 2-core
//! machine serves without saturating, so the figures show the pools rather than a starved
//! CPU, and every subject's callers make requests at the same rate. Then `--restarts` times
//! (default 3): 1 s of steady load, the server stopped and started again at once, the load
//! kept on until every pool has served a query again (or 20 s passed) and 1 s more; the
//! pools are filled again before the next restart. dbretry's policy: `max_attempts`
//! `u32::MAX`, `max_delay` 250 ms, `max_elapsed` 5 s.
//!
//! Measured per restart:
//! - connects the server saw after the stop and their peak in any 100 ms window, from the
//!   server log (`log_line_prefix = '%m [%e] '`: millisecond timestamps and each line's
//!   SQLSTATE, so the log also counts exactly the connects refused with 53300 "too many
//!   clients" and 57P03 "starting up"); through PgBouncer also the client logins PgBouncer saw;
//! - connect attempts made by the pools (client side, refused ones included);
//! - caller errors of `get()` and of the query, by cause (SQLSTATE, io error kind, pool error),
//!   how many carry 53300, and how many came after the server was ready again;
//! - the time from the server being ready (`postmaster.pid` says `ready`) until half, and until
//!   EVERY pool, has served a query again.
//!
//! `max_connections` is N × 10 + 100: every pool is filled before each restart, and a restart
//! leaves no old session behind, so a 53300 here would mean a pool opened more than its
//! maximum. A benchmark: it prints figures and asserts nothing about timings.

#[path = "common/counting.rs"]
mod counting;
#[allow(unused_imports)]
#[path = "../tests/integration/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use counting::{Counting, CountingConnect};
use dbretry::JitterStrategy;
use deadpool_postgres::{ConfigConnectImpl, ManagerConfig, RecyclingMethod, Runtime, Timeouts};
use futures_util::future::join_all;
use support::{PgBouncer, PgBouncerOptions, PgCluster};
use tokio_postgres::{Config, NoTls};

/// Connections per pool.
const POOL_SIZE: usize = 10;
/// Every pool's budget: deadpool's wait/create/recycle timeouts and dbretry's `max_elapsed`.
const BUDGET: Duration = Duration::from_secs(5);
/// dbretry's cap on one backoff delay: how late a pool may notice that the server is back.
const MAX_DELAY: Duration = Duration::from_millis(250);
/// Load before the restart (also the steady-rate sample).
const STEADY: Duration = Duration::from_secs(1);
/// Load after every pool has served again, to catch late errors.
const TAIL: Duration = Duration::from_secs(1);
/// Give up waiting for the last pool after this long past ready.
const RECOVERY_LIMIT: Duration = Duration::from_secs(20);
/// The DESIGN goal for the time from ready until every pool serves.
const GOAL_ALL_SERVING: Duration = Duration::from_millis(300);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let options = Options::parse();
    let began = Instant::now();
    let max_connections = options.max_connections();
    let pg = PgCluster::start().await;
    pg.set_conf("max_connections", &max_connections.to_string());
    pg.set_conf("log_line_prefix", "%m [%e] ");
    pg.restart_fast().await;

    println!(
        "\n# fleet: {} pools × max {POOL_SIZE}, {} tasks per pool looping get() + SELECT 1 \
         ({} ms between requests), one server (max_connections {max_connections}) restarted {} times under load\n",
        options.pools,
        options.tasks,
        options.think.as_millis(),
        options.restarts
    );
    println!(
        "Budget {BUDGET:?} for every pool; dbretry's policy: max_attempts u32::MAX, \
         initial_delay 100 ms, max_delay {MAX_DELAY:?}, max_elapsed {BUDGET:?}.\n"
    );

    let direct = [
        Kind::PlainDeadpool,
        Kind::PlainBb8,
        Kind::OursDeadpool(Some(JitterStrategy::Proportional)),
        Kind::OursDeadpool(Some(JitterStrategy::Full)),
        Kind::OursDeadpool(Some(JitterStrategy::Equal)),
        Kind::OursDeadpool(Some(JitterStrategy::Decorrelated)),
        Kind::OursBb8,
    ];
    let mut rows = Vec::new();
    for kind in direct {
        rows.push(round(&options, &pg, None, kind, &pg.config()).await);
        wait_for_backends_to_go(&pg).await;
    }
    println!("## Direct: {} pools → PostgreSQL\n", options.pools);
    print_table(&rows, false);

    let bouncer = PgBouncer::start(
        &pg,
        PgBouncerOptions::session()
            .set("max_client_conn", &max_connections.to_string())
            .set(
                "default_pool_size",
                &(options.pools * POOL_SIZE + 50).to_string(),
            )
            .set("server_login_retry", "1"),
    )
    .await;
    let mut rows = Vec::new();
    for kind in [Kind::PlainDeadpool, Kind::OursDeadpool(None)] {
        rows.push(round(&options, &pg, Some(&bouncer), kind, &bouncer.config()).await);
    }
    println!(
        "\n## Through PgBouncer (session mode, server_login_retry 1 s): {} pools → PgBouncer → PostgreSQL, the server restarted\n",
        options.pools
    );
    print_table(&rows, true);

    println!(
        "\nDESIGN §9 goal for dbretry: 0 caller errors, 0 53300, every pool serving ≤ {} ms after ready.",
        GOAL_ALL_SERVING.as_millis()
    );
    println!("Whole run: {:.0?}", began.elapsed());
}

/// Command-line settings.
struct Options {
    pools: usize,
    tasks: usize,
    restarts: usize,
    think: Duration,
}

impl Options {
    fn parse() -> Options {
        let mut options = Options {
            pools: 50,
            tasks: 2,
            restarts: 3,
            think: Duration::from_millis(10),
        };
        let mut pools = None;
        let mut restarts = None;
        let mut quick = false;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut number = |name: &str| -> usize {
                let value = args.next().unwrap_or_default();
                match value.parse() {
                    Ok(n) if n <= 10_000 => n,
                    _ => {
                        eprintln!("fleet: {name} takes a whole number up to 10000, not {value:?}");
                        std::process::exit(2);
                    }
                }
            };
            match arg.as_str() {
                "--quick" => quick = true,
                "--pools" => pools = Some(number("--pools").max(1)),
                "--tasks" => options.tasks = number("--tasks").max(1),
                "--restarts" => restarts = Some(number("--restarts").max(1)),
                "--think-ms" => options.think = Duration::from_millis(number("--think-ms") as u64),
                // `cargo bench` passes `--bench`; anything else is a mistake worth a word.
                "--bench" => {}
                other => eprintln!("fleet: ignoring unknown argument {other:?}"),
            }
        }
        options.pools = pools.unwrap_or(if quick { 10 } else { 50 });
        options.restarts = restarts.unwrap_or(if quick { 1 } else { 3 });
        options
    }

    fn max_connections(&self) -> usize {
        self.pools * POOL_SIZE + 100
    }
}

// ----- the subjects -----

/// Which pool every replica of a round runs.
#[derive(Clone, Copy)]
enum Kind {
    PlainDeadpool,
    PlainBb8,
    /// dbretry's deadpool manager; `None`: the policy's default jitter strategy.
    OursDeadpool(Option<JitterStrategy>),
    OursBb8,
}

impl Kind {
    fn name(self) -> String {
        match self {
            Kind::PlainDeadpool => "deadpool-postgres (Fast)".to_owned(),
            Kind::PlainBb8 => "bb8-postgres (defaults)".to_owned(),
            Kind::OursDeadpool(None) => "dbretry deadpool (default jitter)".to_owned(),
            Kind::OursDeadpool(Some(JitterStrategy::Proportional)) => {
                "dbretry deadpool, proportional jitter (default)".to_owned()
            }
            Kind::OursDeadpool(Some(strategy)) => {
                format!("dbretry deadpool, {} jitter", strategy.name())
            }
            Kind::OursBb8 => "dbretry bb8 (default jitter)".to_owned(),
        }
    }
}

/// One replica's pool.
#[derive(Clone)]
enum FleetPool {
    PlainDeadpool(deadpool_postgres::Pool),
    PlainBb8(bb8::Pool<Counting<bb8_postgres::PostgresConnectionManager<NoTls>>>),
    OursDeadpool(dbretry::deadpool_postgres::Pool),
    OursBb8(dbretry::bb8::Pool<dbretry::bb8_postgres::PostgresConnectionManager<NoTls>>),
}

/// What one get + `SELECT 1` came to; errors carry their cause's label.
enum Outcome {
    Ok,
    GetError(String),
    QueryError(String),
}

impl Outcome {
    fn error(self) -> Option<String> {
        match self {
            Outcome::Ok => None,
            Outcome::GetError(label) | Outcome::QueryError(label) => Some(label),
        }
    }
}

impl FleetPool {
    /// A pool of `kind` for `config`; the plain pools count their connect attempts in
    /// `attempts` (dbretry's diagnostics count their own).
    async fn new(kind: Kind, config: &Config, index: usize, attempts: &Arc<AtomicU64>) -> Self {
        let timeouts = Timeouts {
            wait: Some(BUDGET),
            create: Some(BUDGET),
            recycle: Some(BUDGET),
        };
        match kind {
            Kind::PlainDeadpool => {
                let connect = CountingConnect {
                    inner: ConfigConnectImpl { tls: NoTls },
                    attempts: attempts.clone(),
                };
                let manager = deadpool_postgres::Manager::from_connect(
                    config.clone(),
                    connect,
                    ManagerConfig {
                        recycling_method: RecyclingMethod::Fast,
                    },
                );
                let pool = deadpool_postgres::Pool::builder(manager)
                    .max_size(POOL_SIZE)
                    .timeouts(timeouts)
                    .runtime(Runtime::Tokio1)
                    .build()
                    .expect("build a deadpool-postgres pool");
                FleetPool::PlainDeadpool(pool)
            }
            Kind::PlainBb8 => {
                let manager = Counting {
                    inner: bb8_postgres::PostgresConnectionManager::new(config.clone(), NoTls),
                    attempts: attempts.clone(),
                };
                let pool = bb8::Pool::builder()
                    .max_size(POOL_SIZE as u32)
                    .build_unchecked(manager);
                FleetPool::PlainBb8(pool)
            }
            Kind::OursDeadpool(strategy) => {
                let manager = dbretry::deadpool_postgres::Manager::builder(config.clone(), NoTls)
                    .policy(policy(strategy))
                    .name(format!("fleet-{index}"))
                    .build();
                let pool = dbretry::deadpool_postgres::Pool::builder(manager)
                    .max_size(POOL_SIZE)
                    .timeouts(timeouts)
                    .runtime(Runtime::Tokio1)
                    .build()
                    .expect("build a dbretry deadpool pool");
                FleetPool::OursDeadpool(pool)
            }
            Kind::OursBb8 => {
                let manager = dbretry::bb8_postgres::PostgresConnectionManager::builder(
                    config.clone(),
                    NoTls,
                )
                .policy(policy(None))
                .name(format!("fleet-{index}"))
                .build();
                let builder = bb8::Pool::builder().max_size(POOL_SIZE as u32);
                let pool = dbretry::bb8::Pool::new(builder, manager)
                    .await
                    .expect("build a dbretry bb8 pool");
                FleetPool::OursBb8(pool)
            }
        }
    }

    /// One `get()` and `SELECT 1`.
    async fn get_and_select(&self) -> Outcome {
        match self {
            FleetPool::PlainDeadpool(pool) => match pool.get().await {
                Ok(client) => query(&client).await,
                Err(e) => Outcome::GetError(plain_deadpool_label(&e)),
            },
            FleetPool::OursDeadpool(pool) => match pool.get().await {
                Ok(client) => query(&client).await,
                Err(e) => Outcome::GetError(ours_deadpool_label(&e)),
            },
            FleetPool::PlainBb8(pool) => match pool.get().await {
                Ok(client) => query(&client).await,
                Err(bb8::RunError::User(e)) => Outcome::GetError(pg_label(&e)),
                Err(bb8::RunError::TimedOut) => Outcome::GetError("TimedOut".to_owned()),
            },
            FleetPool::OursBb8(pool) => match pool.get().await {
                Ok(client) => query(&client).await,
                Err(e) => Outcome::GetError(ours_label(&e)),
            },
        }
    }

    /// Opens all of the pool's connections: holds them at once and runs a query on each (behind
    /// PgBouncer a login alone opens no server connection).
    async fn fill(&self) {
        let failure = match self {
            FleetPool::PlainDeadpool(pool) => {
                let held = join_all((0..POOL_SIZE).map(|_| pool.get())).await;
                let mut failure = None;
                for client in held {
                    match client {
                        Ok(client) => failure = failure.or(query(&client).await.error()),
                        Err(e) => failure = failure.or(Some(plain_deadpool_label(&e))),
                    }
                }
                failure
            }
            FleetPool::OursDeadpool(pool) => {
                let held = join_all((0..POOL_SIZE).map(|_| pool.get())).await;
                let mut failure = None;
                for client in held {
                    match client {
                        Ok(client) => failure = failure.or(query(&client).await.error()),
                        Err(e) => failure = failure.or(Some(ours_deadpool_label(&e))),
                    }
                }
                failure
            }
            FleetPool::PlainBb8(pool) => {
                let held = join_all((0..POOL_SIZE).map(|_| pool.get())).await;
                let mut failure = None;
                for client in held {
                    match client {
                        Ok(client) => failure = failure.or(query(&client).await.error()),
                        Err(e) => failure = failure.or(Some(format!("{e:?}"))),
                    }
                }
                failure
            }
            FleetPool::OursBb8(pool) => {
                let held = join_all((0..POOL_SIZE).map(|_| pool.get())).await;
                let mut failure = None;
                for client in held {
                    match client {
                        Ok(client) => failure = failure.or(query(&client).await.error()),
                        Err(e) => failure = failure.or(Some(ours_label(&e))),
                    }
                }
                failure
            }
        };
        if let Some(why) = failure {
            panic!("filling a pool to its {POOL_SIZE} connections failed: {why}");
        }
    }

    /// Connect attempts of a dbretry pool (plain pools count theirs in a shared counter).
    fn own_connect_attempts(&self) -> u64 {
        match self {
            FleetPool::OursDeadpool(pool) => {
                pool.manager().diagnostics().connect_attempts().total()
            }
            FleetPool::OursBb8(pool) => pool.diagnostics().connect_attempts().total(),
            FleetPool::PlainDeadpool(_) | FleetPool::PlainBb8(_) => 0,
        }
    }
}

/// The round's policy: retry until the budget ends, delays capped at [`MAX_DELAY`].
fn policy(strategy: Option<JitterStrategy>) -> dbretry::RetryPolicy {
    let mut builder = dbretry::RetryPolicy::builder()
        .max_attempts(u32::MAX)
        .max_delay(MAX_DELAY)
        .max_elapsed(BUDGET);
    if let Some(strategy) = strategy {
        builder = builder.jitter_strategy(strategy);
    }
    builder.build().expect("a valid fleet policy")
}

async fn query(client: &tokio_postgres::Client) -> Outcome {
    match client.simple_query("SELECT 1").await {
        Ok(_) => Outcome::Ok,
        Err(e) => Outcome::QueryError(pg_label(&e)),
    }
}

// ----- error labels: what a caller could tell about each error -----

/// A tokio-postgres error as its SQLSTATE, `closed`, or the io error kind.
fn pg_label(e: &tokio_postgres::Error) -> String {
    if let Some(code) = e.code() {
        return code.code().to_owned();
    }
    if e.is_closed() {
        return "closed".to_owned();
    }
    support::io_error_kind(e).map_or_else(|| "other".to_owned(), |kind| format!("{kind:?}"))
}

fn plain_deadpool_label(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_label(e),
        deadpool_postgres::PoolError::Timeout(which) => format!("Timeout({which:?})"),
        other => format!("{other:?}"),
    }
}

fn ours_deadpool_label(e: &dbretry::deadpool_postgres::PoolError) -> String {
    match e {
        dbretry::deadpool_postgres::PoolError::Backend(e) => ours_label(e),
        dbretry::deadpool_postgres::PoolError::Timeout(which) => format!("Timeout({which:?})"),
        other => format!("{other:?}"),
    }
}

/// A dbretry error as its kind and its last cause's label: `Timeout/ConnectionRefused`.
fn ours_label(e: &dbretry::Error) -> String {
    let cause = match e.find_cause::<tokio_postgres::Error>() {
        Some(pg) => pg_label(pg),
        None => e
            .cause()
            .and_then(|cause| support::io_error_kind(cause))
            .map_or_else(|| "-".to_owned(), |kind| format!("{kind:?}")),
    };
    format!("{:?}/{cause}", e.kind())
}

// ----- one round -----

/// What the callers of one round saw; the per-restart parts are taken by [`Tally::take`].
struct Tally {
    origin: Instant,
    stop: AtomicBool,
    /// Set once the old server is gone: successes from then on are on the new one.
    armed: AtomicBool,
    /// µs after `origin` (+1, so 0 means not yet) at which the server was ready.
    ready_us: AtomicU64,
    ok: AtomicU64,
    /// Per pool: µs after `origin` (+1, so 0 means none yet) of its first success once armed.
    first_ok_us: Vec<AtomicU64>,
    errors_after_ready: AtomicU64,
    get_errors: Mutex<BTreeMap<String, u64>>,
    query_errors: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn new(pools: usize) -> Self {
        Tally {
            origin: Instant::now(),
            stop: AtomicBool::new(false),
            armed: AtomicBool::new(false),
            ready_us: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            first_ok_us: (0..pools).map(|_| AtomicU64::new(0)).collect(),
            errors_after_ready: AtomicU64::new(0),
            get_errors: Mutex::default(),
            query_errors: Mutex::default(),
        }
    }

    fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64 + 1
    }

    fn record(&self, pool: usize, outcome: Outcome) {
        let errors = match outcome {
            Outcome::Ok => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                if self.armed.load(Ordering::Relaxed) {
                    let _ = self.first_ok_us[pool].compare_exchange(
                        0,
                        self.now_us(),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                return;
            }
            Outcome::GetError(label) => (&self.get_errors, label),
            Outcome::QueryError(label) => (&self.query_errors, label),
        };
        *lock(errors.0).entry(errors.1).or_default() += 1;
        let ready = self.ready_us.load(Ordering::Relaxed);
        if ready != 0 && self.now_us() > ready {
            self.errors_after_ready.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Forgets the last restart's first successes; call before stopping the server.
    fn rearm(&self) {
        self.armed.store(false, Ordering::Relaxed);
        self.ready_us.store(0, Ordering::Relaxed);
        for first in &self.first_ok_us {
            first.store(0, Ordering::Relaxed);
        }
    }

    fn all_serving(&self) -> bool {
        self.first_ok_us
            .iter()
            .all(|first| first.load(Ordering::Relaxed) != 0)
    }

    /// The errors since the last take, and each pool's first success after ready.
    fn take(&self) -> Callers {
        let ready_us = self.ready_us.load(Ordering::Relaxed) as f64;
        Callers {
            get_errors: std::mem::take(&mut *lock(&self.get_errors)),
            query_errors: std::mem::take(&mut *lock(&self.query_errors)),
            errors_after_ready: self.errors_after_ready.swap(0, Ordering::Relaxed),
            serving_after_ready_ms: self
                .first_ok_us
                .iter()
                .map(|first| match first.load(Ordering::Relaxed) {
                    0 => None,
                    at => Some((at as f64 - ready_us) / 1000.0),
                })
                .collect(),
        }
    }
}

/// What the callers saw around one restart.
struct Callers {
    /// `get()` errors by cause.
    get_errors: BTreeMap<String, u64>,
    /// Query errors by cause.
    query_errors: BTreeMap<String, u64>,
    /// Caller errors that came after the server was ready again.
    errors_after_ready: u64,
    /// Per pool: ms from ready to its first success after the restart (None: never).
    serving_after_ready_ms: Vec<Option<f64>>,
}

/// What one restart of one round came to.
struct Restart {
    steady_rate: f64,
    outage: Duration,
    server: LogFigures,
    bouncer_logins: Option<LogFigures>,
    connect_attempts: u64,
    callers: Callers,
}

/// One table row: a subject and its restarts.
struct Row {
    name: String,
    restarts: Vec<Restart>,
}

/// Runs one subject's round: build and warm up the pools, start the load, then restart the
/// server `options.restarts` times, each once every pool is full again.
async fn round(
    options: &Options,
    pg: &PgCluster,
    bouncer: Option<&PgBouncer>,
    kind: Kind,
    config: &Config,
) -> Row {
    let name = kind.name();
    eprintln!("fleet: {name}: {} pools, warming up", options.pools);
    let attempts = Arc::new(AtomicU64::new(0));
    let mut pools = Vec::with_capacity(options.pools);
    for index in 0..options.pools {
        pools.push(FleetPool::new(kind, config, index, &attempts).await);
    }
    fill(&pools).await;

    let tally = Arc::new(Tally::new(options.pools));
    let mut workers = Vec::new();
    for (index, pool) in pools.iter().enumerate() {
        for _ in 0..options.tasks {
            let (pool, tally, think) = (pool.clone(), tally.clone(), options.think);
            workers.push(tokio::spawn(async move {
                while !tally.stop.load(Ordering::Relaxed) {
                    let outcome = pool.get_and_select().await;
                    tally.record(index, outcome);
                    // A request rate, not a spin: errors come no faster than requests.
                    tokio::time::sleep(think).await;
                }
            }));
        }
    }

    let mut restarts = Vec::new();
    for restart in 0..options.restarts {
        if restart > 0 {
            // The last restart left each pool with about as many connections as it has
            // tasks; a replica's burst fills it again.
            fill(&pools).await;
        }
        let ok_before = tally.ok.load(Ordering::Relaxed);
        tokio::time::sleep(STEADY).await;
        let steady_rate =
            (tally.ok.load(Ordering::Relaxed) - ok_before) as f64 / STEADY.as_secs_f64();

        let server_log_from = file_len(pg.log_path());
        let bouncer_log_from = bouncer.map(|b| file_len(b.log_path()));
        let attempts_before = connect_attempts(&pools, &attempts);
        tally.rearm();
        let stopping = Instant::now();
        pg.stop_fast().await;
        tally.armed.store(true, Ordering::Relaxed);
        let ready = pg.start_server_timing_ready().await;
        tally.ready_us.store(
            ready.duration_since(tally.origin).as_micros() as u64 + 1,
            Ordering::Relaxed,
        );
        let outage = ready - stopping;
        while !tally.all_serving() && ready.elapsed() < RECOVERY_LIMIT {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(TAIL).await;

        let callers = tally.take();
        tally.armed.store(false, Ordering::Relaxed);
        let restart = Restart {
            steady_rate,
            outage,
            server: LogFigures::of_server(&read_from(pg.log_path(), server_log_from)),
            bouncer_logins: bouncer
                .zip(bouncer_log_from)
                .map(|(b, from)| LogFigures::of_bouncer(&read_from(b.log_path(), from))),
            connect_attempts: connect_attempts(&pools, &attempts) - attempts_before,
            callers,
        };
        eprintln!(
            "fleet: {name}: restart {}: stop → ready {outage:.0?}, every pool serving {} after ready",
            restarts.len() + 1,
            serving_quantile(&restart.callers.serving_after_ready_ms, 1.0)
        );
        restarts.push(restart);
    }

    tally.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        // A caller stuck in a pool that never recovered would wait out its pool's timeout.
        let handle = worker.abort_handle();
        if tokio::time::timeout(BUDGET + Duration::from_secs(1), worker)
            .await
            .is_err()
        {
            handle.abort();
        }
    }
    Row { name, restarts }
}

/// Fills every pool to all of its connections, five pools at a time (50 SCRAM logins at once
/// stay well inside every pool's budget).
async fn fill(pools: &[FleetPool]) {
    for batch in pools.chunks(5) {
        futures_util::future::join_all(batch.iter().map(FleetPool::fill)).await;
    }
}

fn connect_attempts(pools: &[FleetPool], plain: &AtomicU64) -> u64 {
    plain.load(Ordering::Relaxed)
        + pools
            .iter()
            .map(FleetPool::own_connect_attempts)
            .sum::<u64>()
}

/// Waits until the server has no client backends left from the last round, so the next one
/// starts with all of `max_connections` free.
async fn wait_for_backends_to_go(pg: &PgCluster) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = pg.backend_pids().await.len();
        if left == 0 {
            return;
        }
        if Instant::now() > deadline {
            eprintln!("fleet: {left} backends of the last round still open after 30 s");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ----- the logs -----

/// Counts from a slice of the server's (or PgBouncer's) log.
#[derive(Default)]
struct LogFigures {
    /// New connections (logins, for PgBouncer) in the slice.
    connects: usize,
    /// The most of them in any 100 ms window.
    peak_per_100ms: usize,
    /// Connects refused with 53300 (too many clients).
    too_many: usize,
    /// Connects refused with 57P03 (starting up / shutting down).
    not_ready: usize,
}

impl LogFigures {
    /// From server log lines `2026-12-01 17:47:34.123 UTC [00000] LOG:  connection received: …`.
    fn of_server(log: &str) -> Self {
        let mut figures = LogFigures::default();
        let mut times = Vec::new();
        for line in log.lines() {
            if line.contains("connection received: host=") {
                times.extend(timestamp_ms(line));
            } else if line.contains("FATAL:") {
                if line.contains("[53300]") {
                    figures.too_many += 1;
                } else if line.contains("[57P03]") {
                    figures.not_ready += 1;
                }
            }
        }
        figures.connects = times.len();
        figures.peak_per_100ms = peak_in_window(&mut times, 100);
        figures
    }

    /// From PgBouncer log lines `2026-12-01 17:47:34.123 UTC [pid] LOG C-0x…: … login attempt: …`.
    fn of_bouncer(log: &str) -> Self {
        let mut times: Vec<i64> = log
            .lines()
            .filter(|line| line.contains("login attempt"))
            .filter_map(timestamp_ms)
            .collect();
        LogFigures {
            connects: times.len(),
            peak_per_100ms: peak_in_window(&mut times, 100),
            ..LogFigures::default()
        }
    }
}

/// The most timestamps within any `window_ms`-long window.
fn peak_in_window(times: &mut [i64], window_ms: i64) -> usize {
    times.sort_unstable();
    let mut start = 0;
    let mut peak = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= window_ms {
            start += 1;
        }
        peak = peak.max(end - start + 1);
    }
    peak
}

/// Milliseconds since the epoch of a line starting `YYYY-MM-DD HH:MM:SS.mmm` (time zone
/// ignored: one log's lines share it).
fn timestamp_ms(line: &str) -> Option<i64> {
    let stamp = line.get(..23)?;
    let field = |range: std::ops::Range<usize>| stamp.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (field(0..4)?, field(5..7)?, field(8..10)?);
    let (hour, minute, second, milli) = (
        field(11..13)?,
        field(14..16)?,
        field(17..19)?,
        field(20..23)?,
    );
    let days = days_from_civil(year, month, day);
    Some((((days * 24 + hour) * 60 + minute) * 60 + second) * 1000 + milli)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The file's text from byte `from` on.
fn read_from(path: &std::path::Path, from: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let from = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
    String::from_utf8_lossy(&bytes[from..]).into_owned()
}

// ----- the tables -----

/// One row per subject. Per restart: the counts of errors; otherwise the median over the
/// restarts, with the worst (or the range) where one bad restart matters.
fn print_table(rows: &[Row], through_bouncer: bool) {
    let bouncer_header = if through_bouncer {
        " peak logins at PgBouncer / 100 ms |"
    } else {
        ""
    };
    println!(
        "| pool | steady req/s | stop → ready | connects at server | peak connects / 100 ms (max) |{bouncer_header} 57P03 at server | 53300 at server (all) | 53300 seen by callers (all) | connect attempts by the pools | get() errors per restart | query errors per restart | caller errors after ready, per restart | ready → half the pools serving | ready → every pool serving (range) | caller errors by cause (all restarts) |"
    );
    let columns = 15 + usize::from(through_bouncer);
    println!("|{}", "---|".repeat(columns));
    for row in rows {
        let r = &row.restarts;
        let per_restart = |f: &dyn Fn(&Restart) -> u64| {
            r.iter()
                .map(|x| f(x).to_string())
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let median_of = |f: &dyn Fn(&Restart) -> f64| median(&r.iter().map(f).collect::<Vec<_>>());
        let max_of =
            |f: &dyn Fn(&Restart) -> f64| r.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
        let mut get_all = BTreeMap::new();
        let mut query_all = BTreeMap::new();
        for restart in r {
            for (label, n) in &restart.callers.get_errors {
                *get_all.entry(label.clone()).or_default() += n;
            }
            for (label, n) in &restart.callers.query_errors {
                *query_all.entry(label.clone()).or_default() += n;
            }
        }
        let too_many_seen: u64 = get_all
            .iter()
            .chain(&query_all)
            .filter(|(label, _)| label.contains("53300"))
            .map(|(_, n)| n)
            .sum();
        let bouncer = if through_bouncer {
            let peak = |x: &Restart| {
                x.bouncer_logins
                    .as_ref()
                    .map_or(0.0, |b| b.peak_per_100ms as f64)
            };
            format!(" {:.0} ({:.0}) |", median_of(&peak), max_of(&peak))
        } else {
            String::new()
        };
        let every: Vec<String> = r
            .iter()
            .map(|x| serving_quantile(&x.callers.serving_after_ready_ms, 1.0))
            .collect();
        let every = every_pool_serving(&every);
        println!(
            "| {} | {:.0} | {:.0} ms | {:.0} | {:.0} ({:.0}) |{bouncer} {:.0} | {} | {too_many_seen} | {:.0} | {} | {} | {} | {} | {every} | {} |",
            row.name,
            median_of(&|x| x.steady_rate),
            median_of(&|x| x.outage.as_secs_f64() * 1000.0),
            median_of(&|x| x.server.connects as f64),
            median_of(&|x| x.server.peak_per_100ms as f64),
            max_of(&|x| x.server.peak_per_100ms as f64),
            median_of(&|x| x.server.not_ready as f64),
            r.iter().map(|x| x.server.too_many).sum::<usize>(),
            median_of(&|x| x.connect_attempts as f64),
            per_restart(&|x| x.callers.get_errors.values().sum()),
            per_restart(&|x| x.callers.query_errors.values().sum()),
            per_restart(&|x| x.callers.errors_after_ready),
            median_text(
                r.iter()
                    .map(|x| serving_ms(&x.callers.serving_after_ready_ms, 0.5))
            ),
            causes(&get_all, &query_all),
        );
    }
}

/// "median (min – max)" of the per-restart times until every pool served, or the restarts
/// where some pool never did.
fn every_pool_serving(per_restart: &[String]) -> String {
    let parsed: Option<Vec<f64>> = per_restart
        .iter()
        .map(|text| text.strip_suffix(" ms")?.parse().ok())
        .collect();
    match parsed {
        Some(ms) if ms.len() > 1 => {
            let (low, high) = ms
                .iter()
                .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
            format!("{:.0} ms ({low:.0} – {high:.0})", median(&ms))
        }
        _ => per_restart.join(" / "),
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The median of per-restart times, `never` if one is missing.
fn median_text(values: impl Iterator<Item = Option<f64>>) -> String {
    match values.collect::<Option<Vec<f64>>>() {
        Some(ms) => format!("{:.0} ms", median(&ms)),
        None => "never (some restart)".to_owned(),
    }
}

/// The time by which the given share of pools served again.
fn serving_ms(per_pool: &[Option<f64>], share: f64) -> Option<f64> {
    let mut served: Vec<f64> = per_pool.iter().flatten().copied().collect();
    served.sort_by(f64::total_cmp);
    let needed = ((per_pool.len() as f64 * share).ceil() as usize).max(1);
    served.get(needed - 1).copied()
}

/// The time by which the given share of pools served again, or how many never did.
fn serving_quantile(per_pool: &[Option<f64>], share: f64) -> String {
    match serving_ms(per_pool, share) {
        Some(ms) => format!("{ms:.0} ms"),
        None => {
            let never = per_pool.iter().filter(|p| p.is_none()).count();
            format!("never ({never} of {} pools)", per_pool.len())
        }
    }
}

/// The four most frequent causes, `get: Timeout(Wait)×3, query: 57P01×12`.
fn causes(get: &BTreeMap<String, u64>, query: &BTreeMap<String, u64>) -> String {
    let mut all: Vec<(String, u64)> = get
        .iter()
        .map(|(label, n)| (format!("get: {label}"), *n))
        .chain(
            query
                .iter()
                .map(|(label, n)| (format!("query: {label}"), *n)),
        )
        .collect();
    if all.is_empty() {
        return "—".to_owned();
    }
    all.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let more = all.len().saturating_sub(4);
    let mut text = all
        .iter()
        .take(4)
        .map(|(label, n)| format!("{label}×{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    if more > 0 {
        text.push_str(&format!(" (+{more} more)"));
    }
    text.replace('|', "/")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

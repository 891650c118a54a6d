//! The outage scenarios of DESIGN §9, run in one process against one throwaway PostgreSQL
//! cluster: plain deadpool-postgres, plain bb8-postgres, and dbretry's deadpool and bb8
//! managers, through the same workloads with the same 5 s budget.
//!
//! ```text
//! cargo bench --bench outage --all-features          # every scenario
//! cargo bench --bench outage --all-features -- f g   # the scenarios of those letters
//! ```
//!
//! Scenarios: (a) steady state, 8 tasks; (b) the server stopped (`pg_ctl stop -m fast`) for
//! ~1.5 s while 32 tasks loop `get()` + `SELECT 1` on a pool of 10; (c) cold start, the server
//! coming up 2 s late; (d) permanent errors (missing database, wrong password); (e) a silent
//! drop of the idle connections; (f) a PgBouncer restart; (g) a Patroni switchover. Connect
//! attempts are counted on the client for every pool (a counting connector around each plain
//! manager's own, and dbretry's diagnostics), since a stopped server sees none.

#[allow(unused_imports)]
#[path = "../../tests/integration/support/mod.rs"]
mod support;

#[path = "../common/counting.rs"]
mod counting;
mod subjects;
mod topologies;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use subjects::{Outcome, Subject};
use support::PgCluster;

const BUDGET: Duration = Duration::from_secs(5);
const POOL_SIZE: usize = 10;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // Scenario letters to run (`-- b f`); none: all of them.
    let chosen: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |letter: &str| chosen.is_empty() || chosen.iter().any(|c| c == letter);
    let rounds = if quick { 1 } else { 9 };
    let pg = PgCluster::start().await;
    pg.set_conf("max_connections", "100");
    pg.restart_fast().await;

    if run("a") {
        steady_state(&pg, rounds).await;
        steady_recycling(&pg, rounds).await;
    }
    if run("b") {
        outage(&pg).await;
    }
    if run("e") {
        silent_drop(&pg).await;
    }
    if run("c") {
        cold_start().await;
    }
    if run("d") {
        permanent_errors(&pg).await;
    }
    if run("f") {
        topologies::pgbouncer_restart(&pg).await;
    }
    if run("g") {
        topologies::patroni_switchover().await;
    }
}

/// What one run of a workload saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    get_errors: AtomicU64,
    query_errors: AtomicU64,
    worst_get_us: AtomicU64,
    first_ok_after_ready_us: AtomicU64,
}

impl Tally {
    /// The time from "ready" to the first success, as the tables print it.
    fn first_ok_after_ready(&self) -> String {
        match self.first_ok_after_ready_us.load(Ordering::Relaxed) {
            0 => "never".to_owned(),
            us => format!("{:.0} ms", us as f64 / 1000.0),
        }
    }

    fn record(&self, outcome: Outcome, get_took: Duration, ready_at: Option<Instant>) {
        let counter = match outcome {
            Outcome::Ok => &self.ok,
            Outcome::GetError => &self.get_errors,
            Outcome::QueryError => &self.query_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.worst_get_us
            .fetch_max(get_took.as_micros() as u64, Ordering::Relaxed);
        if let (Outcome::Ok, Some(ready)) = (outcome, ready_at) {
            let after = Instant::now().saturating_duration_since(ready).as_micros() as u64;
            let _ = self.first_ok_after_ready_us.compare_exchange(
                0,
                after.max(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
}

/// Runs `tasks` loops of get + `SELECT 1` against `subject` for `duration`; `ready` is set
/// once the server is (back) up, to time the first success after it.
async fn run_load(
    subject: &Subject,
    tasks: usize,
    duration: Duration,
    ready: Arc<std::sync::Mutex<Option<Instant>>>,
) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let (subject, tally, stop, ready) =
                (subject.clone(), tally.clone(), stop.clone(), ready.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let (outcome, took) = subject.get_and_select().await;
                    let ready_at = *ready.lock().unwrap();
                    tally.record(outcome, took, ready_at);
                    if outcome != Outcome::Ok {
                        // A caller would not spin on errors; neither do we.
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    tally
}

async fn steady_state(pg: &PgCluster, rounds: usize) {
    println!(
        "\n## (a) steady state: 8 tasks, get() + SELECT 1, pool max {POOL_SIZE}, {rounds} rounds of 1.5 s, order rotated\n"
    );
    let subjects = Subject::all(&pg.config(), POOL_SIZE, BUDGET).await;
    let ratios = [None, None, Some(0), Some(1)];
    compare_rates(&subjects, rounds, &ratios).await;
}

/// (a') the recycling methods of deadpool side by side: dbretry's default against Fast
/// alone and Verified, each as a ratio to plain deadpool-postgres with Fast.
async fn steady_recycling(pg: &PgCluster, rounds: usize) {
    println!(
        "\n## (a') steady state by recycling method: 8 tasks, get() + SELECT 1, pool max {POOL_SIZE}, {rounds} rounds of 1.5 s\n"
    );
    let mut subjects = Vec::new();
    for name in Subject::RECYCLING {
        subjects.push(Subject::by_name(name, &pg.config(), POOL_SIZE, BUDGET).await);
    }
    compare_rates(&subjects, rounds, &[None, Some(0), Some(0), Some(0)]).await;
}

/// Runs `subjects` round after round (order rotated) and prints each one's rate, with its
/// ratio (the median of per-round ratios) to the subject `ratios[i]` names.
async fn compare_rates(subjects: &[Subject], rounds: usize, ratios: &[Option<usize>]) {
    for subject in subjects {
        subject.warm_up().await;
    }
    let mut rates = vec![Vec::new(); subjects.len()];
    for round in 0..rounds {
        for i in (0..subjects.len()).map(|i| (i + round) % subjects.len()) {
            let tally = run_load(
                &subjects[i],
                8,
                Duration::from_millis(1500),
                Default::default(),
            )
            .await;
            rates[i].push(tally.ok.load(Ordering::Relaxed) as f64 / 1.5);
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let med: Vec<f64> = rates.iter().map(|r| median(r)).collect();
    // Each round runs every pool back to back, so a round's ratio compares like with like;
    // the median of the rounds' ratios is the figure.
    let ratio_to = |ours: usize, plain: usize| {
        let per_round: Vec<f64> = rates[ours]
            .iter()
            .zip(&rates[plain])
            .map(|(o, p)| o / p)
            .collect();
        median(&per_round)
    };
    println!("| pool | ops/s (median) | min – max | ratio (median of per-round ratios) |");
    println!("|---|---|---|---|");
    for (i, subject) in subjects.iter().enumerate() {
        let ratio = match ratios[i] {
            Some(to) => format!("{:.3}× {}", ratio_to(i, to), subjects[to].name),
            None => "—".to_owned(),
        };
        let (low, high) = rates[i]
            .iter()
            .fold((f64::MAX, 0.0f64), |(l, h), r| (l.min(*r), h.max(*r)));
        println!(
            "| {} | {:.0} | {low:.0} – {high:.0} | {ratio} |",
            subject.name, med[i]
        );
    }
}

async fn outage(pg: &PgCluster) {
    println!("\n## (b) outage: 32 tasks, pool max {POOL_SIZE}, server stopped ~1.5 s mid-run\n");
    table_header();
    for subject in Subject::all(&pg.config(), POOL_SIZE, BUDGET).await {
        disrupted_row(&subject, 32, Duration::from_millis(5500), async {
            pg.stop_fast().await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            pg.start_server_timing_ready().await
        })
        .await;
    }
}

/// One table row of a disruption: `tasks` loops on `subject` for `run_for`; 1 s in,
/// `disrupt` runs, and ends when the backend is ready again (the instant it returns). The
/// row counts the connect attempts and the time from the disruption's start to its end.
async fn disrupted_row(
    subject: &Subject,
    tasks: usize,
    run_for: Duration,
    disrupt: impl std::future::Future<Output = Instant>,
) {
    subject.warm_up().await;
    let ready = Arc::new(std::sync::Mutex::new(None));
    let load = run_load(subject, tasks, run_for, ready.clone());
    let chaos = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let before = subject.connect_attempts();
        let began = Instant::now();
        let ready_at = disrupt.await;
        *ready.lock().unwrap() = Some(ready_at);
        (subject.connect_attempts() - before, began.elapsed())
    };
    let (tally, (attempts, took)) = tokio::join!(load, chaos);
    table_row(&subject.name, &tally, Some(attempts), Some(took));
}

async fn cold_start() {
    println!(
        "\n## (c) cold start: 32 tasks, pool max {POOL_SIZE}, the server comes up 2 s after the pool\n"
    );
    table_header();
    for name in Subject::NAMES {
        let pg = PgCluster::init().await;
        let subject = Subject::by_name(name, &pg.config(), POOL_SIZE, BUDGET).await;
        let ready = Arc::new(std::sync::Mutex::new(None));
        let load = run_load(&subject, 32, Duration::from_millis(4500), ready.clone());
        let start = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let ready_at = pg.start_server_timing_ready().await;
            *ready.lock().unwrap() = Some(ready_at);
        };
        let (tally, ()) = tokio::join!(load, start);
        table_row(
            &subject.name,
            &tally,
            Some(subject.connect_attempts()),
            None,
        );
    }
}

/// (e) the 10 warm connections of each pool go silent (a proxy stops forwarding, sends no FIN
/// or RST), new connections still work; 32 tasks loop for 10 s.
async fn silent_drop(pg: &PgCluster) {
    const RUN: Duration = Duration::from_secs(10);
    println!(
        "\n## (e) silent drop: the 10 idle connections black-holed, new ones work; 32 tasks for {RUN:?}\n"
    );
    println!(
        "| pool | first success after the drop | hung callers at the end | ok ops | get() errors | query errors | worst get() |"
    );
    println!("|---|---|---|---|---|---|---|");
    for name in Subject::NAMES {
        let proxy = support::FaultProxy::start(pg.socket_addr()).await;
        let subject = Subject::by_name(name, &pg.config_via(proxy.addr()), POOL_SIZE, BUDGET).await;
        subject.warm_up().await;
        // Idle past dbretry's 500 ms window, as connections in a quiet pool are.
        tokio::time::sleep(Duration::from_millis(600)).await;
        proxy.silence_open_connections();
        let dropped = Instant::now();
        let tally = Arc::new(Tally::default());
        // Per caller: when its current get() + query began (µs after the drop, 0: between).
        let began: Arc<Vec<AtomicU64>> = Arc::new((0..32).map(|_| AtomicU64::new(0)).collect());
        let workers: Vec<_> = (0..32)
            .map(|i| {
                let (subject, tally, began) = (subject.clone(), tally.clone(), began.clone());
                tokio::spawn(async move {
                    loop {
                        let now = dropped.elapsed().as_micros() as u64;
                        began[i].store(now.max(1), Ordering::Relaxed);
                        let (outcome, took) = subject.get_and_select().await;
                        began[i].store(0, Ordering::Relaxed);
                        tally.record(outcome, took, Some(dropped));
                        if outcome != Outcome::Ok {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(RUN).await;
        // Hung: inside one get() + query for longer than any pool's budget.
        let now = dropped.elapsed();
        let hung = began
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .filter(|&b| b != 0 && now.saturating_sub(Duration::from_micros(b)) > BUDGET)
            .count();
        for worker in workers {
            worker.abort();
        }
        let first = tally.first_ok_after_ready();
        println!(
            "| {name} | {first} | {hung} | {} | {} | {} | {:.0} ms |",
            tally.ok.load(Ordering::Relaxed),
            tally.get_errors.load(Ordering::Relaxed),
            tally.query_errors.load(Ordering::Relaxed),
            tally.worst_get_us.load(Ordering::Relaxed) as f64 / 1000.0,
        );
    }
}

async fn permanent_errors(pg: &PgCluster) {
    println!(
        "\n## (d) permanent errors: one get() against a missing database / a wrong password\n"
    );
    println!("| pool | error | time to error | attempts | what the caller sees |");
    println!("|---|---|---|---|---|");
    for (case, url) in [
        (
            "3D000",
            pg.url_with(support::SUPERUSER, support::PASSWORD, "no_such_db"),
        ),
        (
            "28P01",
            pg.url_with(support::SUPERUSER, "wrong", support::DATABASE),
        ),
    ] {
        let config: tokio_postgres::Config = url.parse().unwrap();
        for subject in Subject::all(&config, POOL_SIZE, BUDGET).await {
            let started = Instant::now();
            let seen = subject.get_error_text().await;
            let took = started.elapsed();
            println!(
                "| {} | {case} | {:.0?} | {} | {} |",
                subject.name,
                took,
                subject.connect_attempts(),
                seen.replace('|', "/").chars().take(90).collect::<String>()
            );
        }
    }
}

fn table_header() {
    println!(
        "| pool | ok ops | get() errors | query errors | ready → first ok | connect attempts | worst get() | outage |"
    );
    println!("|---|---|---|---|---|---|---|---|");
}

fn table_row(name: &str, tally: &Tally, attempts: Option<u64>, outage: Option<Duration>) {
    let first = tally.first_ok_after_ready();
    println!(
        "| {name} | {} | {} | {} | {first} | {} | {:.0} ms | {} |",
        tally.ok.load(Ordering::Relaxed),
        tally.get_errors.load(Ordering::Relaxed),
        tally.query_errors.load(Ordering::Relaxed),
        attempts.map_or("—".to_owned(), |a| a.to_string()),
        tally.worst_get_us.load(Ordering::Relaxed) as f64 / 1000.0,
        outage.map_or("—".to_owned(), |d| format!("{} ms", d.as_millis())),
    );
}

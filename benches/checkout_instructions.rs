//! Checkout cost counted in CPU instructions, which do not depend on the machine's load:
//! `get()` + drop of a pooled connection (no query) on one task, on a warm pool of 4, for
//! plain deadpool-postgres and dbretry's deadpool manager (both `RecyclingMethod::Fast`) and
//! plain bb8-postgres and `dbretry::bb8::Pool` (both `test_on_check_out(false)`), and the two
//! bb8 pools with bb8's default `test_on_check_out(true)`: a ping on every checkout, whose I/O
//! runs on the other runtime (counted: the checkout's own work around the ping).
//!
//! ```text
//! cargo bench --bench checkout_instructions --all-features            # every pool kind
//! cargo bench --bench checkout_instructions --all-features -- bb8     # pools named *bb8*
//! DBRETRY_CALLGRIND_DIR=/tmp/cg cargo bench …   # keep callgrind's files, for callgrind_annotate
//! ```
//!
//! Before the reliability work (2026-12, first landing), the four untested kinds printed
//! this, twice and beside six CPU burners alike (but for the last figure, see below):
//!
//! ```text
//!   deadpool-postgres    1617.0   (totals 1320 / 80849481)
//!   dbretry deadpool     1580.0  0.98x   (totals 1320 / 78999481)
//!   bb8-postgres         1482.0   (totals 1320 / 74101320)
//!   dbretry bb8          3142.9  2.12x   (totals 1320 / 157144506)
//! ```
//!
//! and after it (2026-12-02):
//!
//! ```text
//!   deadpool-postgres    1633.0
//!   dbretry deadpool (Fast)   1662.0  1.02x
//!   dbretry deadpool (default)   1727.5  1.06x
//!   bb8-postgres         1481.0
//!   dbretry bb8          1520.0  1.03x
//!   bb8-postgres (tested)   7415.5
//!   dbretry bb8 (tested)   8673.0  1.17x
//! ```
//!
//! (A plain pool's figure moves by up to ~20 instructions when the library changes, as the
//! one bench binary holds every kind and the code's layout moves with it; compare ratios
//! from one run.) Most of a checkout, plain or not, is `memcpy` of futures and pooled
//! connections (`DBRETRY_CALLGRIND_DIR` keeps the files to see it in). dbretry's bb8 `get()`
//! is a small hand-written future whose first poll reads the give-up mark (one atomic load),
//! polls bb8's own `get()` on its stack and returns its connection from there; it is inlined
//! into the caller as bb8's is (out of line, before the mark was added: 1,568 against 1,517
//! inlined), and everything past the first poll is boxed. Earlier shapes measured worse: an
//! `async fn` polling bb8's `get()` once in a closure, 1,598 (1.08x); bb8's future held in
//! ours, 1,622 (1.09x); the check's future held inline (a 1,408-byte `get()` future), 1,585
//! (1.07x). The price is on the tested path: a connection taken at once is checked in a
//! boxed future, one allocation per checkout (1.17x against 1.13x with the check inline).
//! dbretry's default deadpool recycling reads the clock once more than deadpool does (is
//! the connection idle past the window?): ~65 instructions, the clock read and
//! `Instant::checked_add`, with `std`'s clock (tokio's, with `test-util` on as in this bench,
//! costs more).
//!
//! The tested kinds' figures vary by a few instructions from run to run (the ping's I/O
//! interleaves with the other runtime).
//!
//! The driver (this binary without `--measure`) starts one throwaway PostgreSQL cluster and,
//! for each pool kind, runs this binary again in `--measure` mode under
//! `valgrind --tool=callgrind` (installed if missing) twice, with 0 and with 50,000
//! checkouts, and prints the difference divided by 50,000, and each dbretry pool's ratio to
//! its plain peer. Callgrind counts only what runs inside [`measured_checkouts`]
//! (`--collect-atstart=no --toggle-collect`) in the measured process (`--trace-children=no`):
//! not PostgreSQL, not the pool's set-up, connects and warm-up. What the two runs share
//! (entering the runtime, the first poll) cancels out in the difference.
//!
//! Deterministic for the untested kinds: the measured loop runs on a current-thread runtime
//! with tokio's clock paused, so timer bookkeeping does not depend on elapsed time; the
//! connections' I/O lives on another runtime's thread, idle while measuring.
//! The same build gives the same counts, loaded machine or not; a different compiler or
//! dependency version gives different ones. One exception: a `tokio::select!` without
//! `biased;` in the measured path polls its branches in a random order, which moves the
//! figure by up to about one instruction per checkout from run to run (`dbretry::bb8::Pool`
//! on main: 3142.8 to 3143.8; with `biased;` added it repeats exactly).

#[allow(unused_imports)]
#[path = "../tests/integration/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use deadpool_postgres::{ManagerConfig, RecyclingMethod};
use futures_util::future::join_all;
use support::PgCluster;
use tokio::runtime::Runtime;
use tokio_postgres::{Config, NoTls};

/// Checkouts in the measured run (the other run does none).
const CHECKOUTS: u64 = 50_000;
/// Checkouts on the measuring runtime before the measured part, not counted.
const WARM_UP: u64 = 1_000;
/// Connections in each pool, all open before measuring.
const POOL_SIZE: usize = 4;
/// Argument that selects the measured mode: `--measure KIND N`.
const MEASURE: &str = "--measure";
/// Environment variable that passes the cluster's URL (not argv: it holds the password).
const URL_VAR: &str = "DBRETRY_BENCH_PG_URL";
/// Environment variable naming a directory to keep callgrind's output files in
/// (`KIND-N.out`, for `callgrind_annotate --inclusive=yes`); by default they are deleted.
const KEEP_VAR: &str = "DBRETRY_CALLGRIND_DIR";
/// The function callgrind counts in, as it names it.
const MEASURED_FN: &str = "checkout_instructions::measured_checkouts";

/// The pool kinds, in the order printed; each dbretry pool follows its plain peer.
const KINDS: [Kind; 7] = [
    Kind::PlainDeadpool,
    Kind::OursDeadpoolFast,
    Kind::OursDeadpool,
    Kind::PlainBb8,
    Kind::OursBb8,
    Kind::PlainBb8Tested,
    Kind::OursBb8Tested,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    PlainDeadpool,
    /// dbretry's manager with `Fast` recycling alone: the same method as the plain one.
    OursDeadpoolFast,
    /// dbretry's default: `Fast` plus a ping after 500 ms idle (one clock read per checkout).
    OursDeadpool,
    PlainBb8,
    OursBb8,
    /// bb8-postgres with bb8's default: a ping on every checkout.
    PlainBb8Tested,
    /// `dbretry::bb8::Pool` with bb8's default: a ping on every checkout.
    OursBb8Tested,
}

impl Kind {
    /// The name printed and matched by the filter argument.
    fn name(self) -> &'static str {
        match self {
            Kind::PlainDeadpool => "deadpool-postgres",
            Kind::OursDeadpoolFast => "dbretry deadpool (Fast)",
            Kind::OursDeadpool => "dbretry deadpool (default)",
            Kind::PlainBb8 => "bb8-postgres",
            Kind::OursBb8 => "dbretry bb8",
            Kind::PlainBb8Tested => "bb8-postgres (tested)",
            Kind::OursBb8Tested => "dbretry bb8 (tested)",
        }
    }

    /// The argument of `--measure`.
    fn slug(self) -> &'static str {
        match self {
            Kind::PlainDeadpool => "plain-deadpool",
            Kind::OursDeadpoolFast => "dbretry-deadpool-fast",
            Kind::OursDeadpool => "dbretry-deadpool",
            Kind::PlainBb8 => "plain-bb8",
            Kind::OursBb8 => "dbretry-bb8",
            Kind::PlainBb8Tested => "plain-bb8-tested",
            Kind::OursBb8Tested => "dbretry-bb8-tested",
        }
    }

    /// The plain pool a dbretry pool is compared with.
    fn peer(self) -> Option<Kind> {
        match self {
            Kind::OursDeadpool | Kind::OursDeadpoolFast => Some(Kind::PlainDeadpool),
            Kind::OursBb8 => Some(Kind::PlainBb8),
            Kind::OursBb8Tested => Some(Kind::PlainBb8Tested),
            _ => None,
        }
    }

    /// Whether every checkout pings the server (bb8's `test_on_check_out`).
    fn tested(self) -> bool {
        matches!(self, Kind::PlainBb8Tested | Kind::OursBb8Tested)
    }

    /// Checkouts in the measured run: fewer where each one waits for a round trip.
    fn checkouts(self) -> u64 {
        if self.tested() {
            CHECKOUTS / 10
        } else {
            CHECKOUTS
        }
    }

    fn from_slug(slug: &str) -> Kind {
        KINDS
            .into_iter()
            .find(|kind| kind.slug() == slug)
            .unwrap_or_else(|| panic!("unknown pool kind {slug:?}"))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, kind, checkouts] if flag == MEASURE => {
            let checkouts = checkouts.parse().expect("N: a number of checkouts");
            measure(Kind::from_slug(kind), checkouts);
        }
        // `cargo bench` passes `--bench`; anything else filters the pool kinds.
        _ => {
            let filter: Vec<&str> = args
                .iter()
                .map(String::as_str)
                .filter(|arg| !arg.starts_with("--"))
                .collect();
            drive(&filter);
        }
    }
}

/// Starts the cluster, measures each selected kind under callgrind and prints the table.
fn drive(filter: &[&str]) {
    let valgrind = support::packages::require("valgrind", "valgrind");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pg = runtime.block_on(PgCluster::start());
    let temp_dir = tempfile::tempdir().expect("temp dir for callgrind's output");
    // Kept for `callgrind_annotate` when asked for.
    let kept = std::env::var_os(KEEP_VAR).map(PathBuf::from);
    let out_dir = kept.as_deref().unwrap_or(temp_dir.path());
    let chosen = |kind: Kind| filter.is_empty() || filter.iter().any(|f| kind.name().contains(f));
    // A chosen dbretry pool brings its plain peer along, for the ratio.
    let selected: Vec<Kind> = KINDS
        .into_iter()
        .filter(|&kind| chosen(kind) || KINDS.iter().any(|&k| k.peer() == Some(kind) && chosen(k)))
        .collect();
    assert!(!selected.is_empty(), "no pool kind matches {filter:?}");

    println!(
        "checkout cost: instructions per get() + drop, warm pool of {POOL_SIZE}, one task \
         (callgrind, {CHECKOUTS} checkouts minus 0; 1/10 of them where tested)"
    );
    let mut per_checkout = Vec::new();
    for kind in selected {
        let none = instructions(&valgrind, &pg, out_dir, kind, 0);
        let many = instructions(&valgrind, &pg, out_dir, kind, kind.checkouts());
        let cost = many.saturating_sub(none) as f64 / kind.checkouts() as f64;
        let ratio = kind
            .peer()
            .and_then(|peer| per_checkout.iter().find(|(k, _)| *k == peer))
            .map(|(_, peer_cost): &(Kind, f64)| format!("  {:.2}x", cost / peer_cost))
            .unwrap_or_default();
        println!(
            "  {:<18} {cost:>8.1}{ratio}   (totals {none} / {many})",
            kind.name()
        );
        per_checkout.push((kind, cost));
    }
    drop(pg);
}

/// Runs `--measure KIND N` under callgrind; returns the instructions it counted.
fn instructions(valgrind: &Path, pg: &PgCluster, out_dir: &Path, kind: Kind, n: u64) -> u64 {
    let out_file: PathBuf = out_dir.join(format!("{}-{n}.out", kind.slug()));
    let exe = std::env::current_exe().expect("path of this binary");
    let output = Command::new(valgrind)
        .args([
            "--tool=callgrind",
            "--trace-children=no",
            "--collect-atstart=no",
            &format!("--toggle-collect={MEASURED_FN}"),
        ])
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(exe)
        .args([MEASURE, kind.slug(), &n.to_string()])
        .env(URL_VAR, pg.url())
        .output()
        .expect("run valgrind");
    assert!(
        output.status.success(),
        "{} with {n} checkouts failed under callgrind: {}\n--- stderr ---\n{}",
        kind.name(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim_end()
    );
    let text = std::fs::read_to_string(&out_file).expect("callgrind's output file");
    let total = text
        .lines()
        .find_map(|line| {
            line.strip_prefix("summary:")
                .or(line.strip_prefix("totals:"))
        })
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no instruction total in {}", out_file.display()));
    assert!(
        total > 0,
        "callgrind counted nothing: is {MEASURED_FN} its name?"
    );
    total
}

/// The pools, one kind each.
enum Pool {
    PlainDeadpool(deadpool_postgres::Pool),
    OursDeadpool(dbretry::deadpool_postgres::Pool),
    PlainBb8(bb8::Pool<bb8_postgres::PostgresConnectionManager<NoTls>>),
    OursBb8(dbretry::bb8::Pool<dbretry::bb8_postgres::PostgresConnectionManager<NoTls>>),
}

impl Pool {
    /// Builds a pool of `kind` with [`POOL_SIZE`] connections, all open and idle.
    async fn warm(kind: Kind, config: Config) -> Pool {
        let fast = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let pool = match kind {
            Kind::PlainDeadpool => Pool::PlainDeadpool(
                deadpool_postgres::Pool::builder(deadpool_postgres::Manager::from_config(
                    config,
                    NoTls,
                    fast(),
                ))
                .max_size(POOL_SIZE)
                .build()
                .unwrap(),
            ),
            Kind::OursDeadpool | Kind::OursDeadpoolFast => {
                let mut checks = dbretry::CheckSettings::default();
                if kind == Kind::OursDeadpoolFast {
                    checks = checks.after_idle(None);
                }
                let manager = dbretry::deadpool_postgres::Manager::builder(config, NoTls)
                    .manager_config(fast())
                    .checks(checks)
                    .build();
                Pool::OursDeadpool(
                    dbretry::deadpool_postgres::Pool::builder(manager)
                        .max_size(POOL_SIZE)
                        .build()
                        .unwrap(),
                )
            }
            Kind::PlainBb8 | Kind::PlainBb8Tested => Pool::PlainBb8(
                bb8::Pool::builder()
                    .max_size(POOL_SIZE as u32)
                    .test_on_check_out(kind.tested())
                    .build(bb8_postgres::PostgresConnectionManager::new(config, NoTls))
                    .await
                    .unwrap(),
            ),
            Kind::OursBb8 | Kind::OursBb8Tested => Pool::OursBb8(
                dbretry::bb8::Pool::new(
                    bb8::Pool::builder()
                        .max_size(POOL_SIZE as u32)
                        .test_on_check_out(kind.tested()),
                    dbretry::bb8_postgres::PostgresConnectionManager::new(config, NoTls),
                )
                .await
                .unwrap(),
            ),
        };
        pool.fill().await;
        pool
    }

    /// Checks out [`POOL_SIZE`] connections at once, so that many are opened, and gives them
    /// back.
    async fn fill(&self) {
        fn all_ok<T, E: std::fmt::Debug>(results: Vec<Result<T, E>>) {
            for result in results {
                result.expect("a connection for the warm pool");
            }
        }
        let n = 0..POOL_SIZE;
        match self {
            Pool::PlainDeadpool(p) => all_ok(join_all(n.map(|_| p.get())).await),
            Pool::OursDeadpool(p) => all_ok(join_all(n.map(|_| p.get())).await),
            Pool::PlainBb8(p) => all_ok(join_all(n.map(|_| p.get())).await),
            Pool::OursBb8(p) => all_ok(join_all(n.map(|_| p.get())).await),
        }
    }

    /// Idle connections now.
    fn idle(&self) -> usize {
        match self {
            Pool::PlainDeadpool(p) => p.status().available,
            Pool::OursDeadpool(p) => p.status().available,
            Pool::PlainBb8(p) => p.state().idle_connections as usize,
            Pool::OursBb8(p) => p.state().idle_connections as usize,
        }
    }
}

/// `n` checkouts, one after the other.
async fn checkout_loop(pool: &Pool, n: u64) {
    match pool {
        Pool::PlainDeadpool(p) => {
            for _ in 0..n {
                drop(p.get().await.unwrap());
            }
        }
        Pool::OursDeadpool(p) => {
            for _ in 0..n {
                drop(p.get().await.unwrap());
            }
        }
        Pool::PlainBb8(p) => {
            for _ in 0..n {
                drop(p.get().await.unwrap());
            }
        }
        Pool::OursBb8(p) => {
            for _ in 0..n {
                drop(p.get().await.unwrap());
            }
        }
    }
}

/// What callgrind counts: `n` checkouts on `runtime`, the runtime's own work included.
/// Its name is [`MEASURED_FN`]; nothing it calls may share it (a nested match would switch
/// collection off), hence the separate [`checkout_loop`].
#[inline(never)]
fn measured_checkouts(runtime: &Runtime, pool: &Pool, n: u64) {
    runtime.block_on(checkout_loop(pool, n));
}

/// The measured process: a warm pool, a warm-up, then [`measured_checkouts`].
fn measure(kind: Kind, checkouts: u64) {
    let url = std::env::var(URL_VAR).unwrap_or_else(|_| panic!("{URL_VAR} is not set"));
    let config: Config = url.parse().expect("the cluster's URL");
    // Connections and their I/O live here, on a worker thread of their own.
    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let pool = io.block_on(Pool::warm(kind, config));
    assert_eq!(
        pool.idle(),
        POOL_SIZE,
        "{}: the pool is not warm",
        kind.name()
    );
    // A paused clock would jump to the checks' time-outs while a ping is in flight.
    let measuring = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(!kind.tested())
        .build()
        .unwrap();
    measuring.block_on(checkout_loop(&pool, WARM_UP));
    measured_checkouts(&measuring, &pool, checkouts);
    assert_eq!(pool.idle(), POOL_SIZE, "{}: connections lost", kind.name());
    drop(pool);
    drop(io);
}

//! Shared test harness: throwaway PostgreSQL clusters ([`PgCluster`]), a
//! TCP fault-injection proxy ([`FaultProxy`]), private network namespaces
//! with a kernel-level black hole ([`netns`]), plus small helpers to inspect
//! `tokio_postgres` errors. For production topologies: a PgBouncer in front
//! of a cluster ([`PgBouncer`]), a Patroni cluster of etcd and three nodes
//! ([`PatroniCluster`]) and HAProxy routing to its leader ([`HaProxy`]); their
//! programs come from Debian packages installed on first use ([`packages`]).
//!
//! Not every helper is used by every test, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod daemon;
pub mod haproxy;
pub mod logs;
pub mod netns;
pub mod packages;
pub mod patroni;
pub mod pg;
pub mod pgbouncer;
pub mod proxy;

pub use haproxy::HaProxy;
pub use logs::{CapturedLogs, with_captured_logs};
pub use patroni::PatroniCluster;
pub use pg::{DATABASE, PASSWORD, PgCluster, SUPERUSER};
pub use pgbouncer::{PgBouncer, PgBouncerOptions, PoolMode};
pub use proxy::{FaultProxy, Mode};

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io;
use std::net::TcpListener;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_postgres::{Client, Config, NoTls};

/// Ports we prefer when the kernel's ephemeral range leaves them alone.
const PREFERRED_PORTS: Range<u16> = 20000..32000;

/// Connects with `config` (no TLS) and spawns the connection task.
///
/// The task ends when the connection closes; its error, if any, is dropped.
pub async fn connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// How long one connect with `config` takes on this machine now (TCP, startup and SCRAM
/// authentication), for deriving budgets that must leave room for several tries.
pub async fn time_to_connect(config: &Config) -> std::time::Duration {
    let started = tokio::time::Instant::now();
    connect(config)
        .await
        .expect("connect to measure the time it takes");
    started.elapsed()
}

/// Connects to a `postgres://` URL (no TLS) and spawns the connection task.
pub async fn connect_url(url: &str) -> Result<Client, tokio_postgres::Error> {
    connect(&url.parse::<Config>()?).await
}

/// The five-character SQLSTATE of a server error (`"28P01"`, `"57P03"`, ...),
/// or `None` when the error did not come from the server.
pub fn sqlstate(err: &tokio_postgres::Error) -> Option<&str> {
    err.code().map(|code| code.code())
}

/// The kind of the first `std::io::Error` in the error's source chain, if any
/// (for example `ConnectionRefused` when nothing listens on the port).
pub fn io_error_kind(err: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        current = e.source();
    }
    None
}

/// `err` and its sources joined with `": "` (tokio-postgres's `Display`
/// alone often says just "db error").
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut current = err.source();
    while let Some(e) = current {
        text.push_str(": ");
        text.push_str(&e.to_string());
        current = e.source();
    }
    text
}

/// Whether a process with this pid exists and is not a zombie.
///
/// Daemonized postmasters are re-parented to PID 1, which may not reap them
/// promptly inside containers, so a zombie counts as dead.
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => process_state(&stat) != Some('Z'),
        Err(_) => false,
    }
}

/// The state letter of a `/proc/PID/stat` line (the field after `(comm)`).
fn process_state(stat: &str) -> Option<char> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().next()?.chars().next()
}

/// Pids of the live direct children of `parent`, found by scanning `/proc`.
pub fn child_pids(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| parent_pid(pid) == Some(parent))
        .collect()
}

/// The parent pid of `pid`, from `/proc/PID/stat`.
fn parent_pid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

/// Sends `signal` (a name such as `"STOP"`, `"KILL"` or a number such as
/// `"9"`) to `pid` with the `kill` command. Returns whether `kill` succeeded.
pub fn send_signal(pid: i32, signal: &str) -> bool {
    std::process::Command::new("kill")
        .args(["-s", signal.trim_start_matches('-'), &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A free TCP port on 127.0.0.1 outside the kernel's ephemeral port range.
///
/// The port is checked by binding it, then released; ports handed out by this
/// process are never handed out twice. Another process can still grab it
/// before it is used, so callers that bind later should retry on
/// `AddrInUse`.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..1000 {
        let port = random_port();
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        let handed_out = handed_out.get_or_insert_with(HashSet::new);
        if handed_out.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        handed_out.insert(port);
        return port;
    }
    panic!("no free port found in {:?}", port_range());
}

/// A random port from [`port_range`] (not checked for being free).
pub fn random_port() -> u16 {
    let range = port_range();
    let span = u64::from(range.end - range.start);
    range.start + u16::try_from(random_u64() % span).expect("span fits in u16")
}

/// Ports to pick from: 20000..32000 unless that overlaps the kernel's
/// ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), in which case
/// the widest stretch below or above the ephemeral range.
fn port_range() -> Range<u16> {
    let (low, high) = ephemeral_range();
    if high < PREFERRED_PORTS.start || low >= PREFERRED_PORTS.end {
        return PREFERRED_PORTS;
    }
    let below = 1024..low;
    let above = high.saturating_add(1)..u16::MAX;
    if below.len() >= above.len() {
        below
    } else {
        above
    }
}

/// The kernel's ephemeral port range, or Linux's default when unreadable.
fn ephemeral_range() -> (u16, u16) {
    let text =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut numbers = text.split_whitespace().filter_map(|n| n.parse().ok());
    match (numbers.next(), numbers.next()) {
        (Some(low), Some(high)) => (low, high),
        _ => (32768, 60999),
    }
}

/// A random number from std's per-process random hasher seed, mixed with a
/// counter, the pid and the clock (no `rand` dependency needed).
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.finish()
}

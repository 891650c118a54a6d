//! Tests in a private network namespace, where the kernel itself can be told
//! to drop packets ([`KernelBlackHole`]).
//!
//! A userspace proxy cannot stand in for a dead network path: its kernel
//! ACKs every byte it swallows, so TCP keepalive and `tcp_user_timeout`
//! never fire through it. Dropping packets with `iptables` does that, but
//! only in a namespace of the test's own, or it would touch the machine's
//! other traffic. So a test starts with
//!
//! ```ignore
//! if !netns::isolated("harness_netns::name_of_this_test") {
//!     return;
//! }
//! ```
//!
//! Outside, [`isolated`] runs this test binary again, for this one test,
//! under `unshare -n` with the namespace's loopback up, asserts that it
//! passed, and returns false. Inside, it returns true and the body runs:
//! its `PgCluster`, proxies and clients all live on the namespace's own
//! 127.0.0.1, and the namespace (with every rule in it) vanishes when the
//! test process exits.
//!
//! Needs root (`unshare -n` needs `CAP_SYS_ADMIN`, iptables
//! `CAP_NET_ADMIN`), util-linux's `unshare`, iproute2's `ip` and the
//! legacy `iptables` (the kernel here has `ip_tables`, not nftables); the
//! packages are installed when missing. Without root the test fails and
//! says so.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::packages;

/// Environment variable that tells the re-executed test binary it is the
/// namespaced run: `<test name> <outer namespace>`.
const MARKER: &str = "DBRETRY_NETNS_TEST";
/// How long the namespaced run may take before it is killed. Far above any
/// test's own bounds: it only keeps a wedged child from hanging the suite.
const CHILD_LIMIT: Duration = Duration::from_secs(300);
/// What libtest prints when exactly one test ran and passed.
const ONE_PASSED: &str = "test result: ok. 1 passed";

/// Set once [`isolated`] has returned true in this process.
static INSIDE: AtomicBool = AtomicBool::new(false);

/// Runs the calling test in a private network namespace; see the module
/// docs. `test` is the test's path in the binary (`module::test_name`).
///
/// Returns true in the namespaced run (go on with the test), false in the
/// outer one after the namespaced run passed (the test is done). Panics,
/// with the namespaced run's output, if it failed or did not run exactly
/// this one test; panics saying what is needed without root.
pub fn isolated(test: &str) -> bool {
    if let Ok(marker) = std::env::var(MARKER) {
        enter(test, &marker);
        return true;
    }
    if let Some(thread) = std::thread::current().name() {
        // libtest names each test's thread after the test (except with one
        // test thread, where tests run on `main`).
        assert!(
            thread == test || thread == "main",
            "netns::isolated(\"{test}\") called from test `{thread}`: pass the test's own path"
        );
    }
    assert!(
        is_root(),
        "test `{test}` needs root: it runs in a private network namespace \
         (`unshare -n` needs CAP_SYS_ADMIN) and drops packets there with iptables \
         (CAP_NET_ADMIN); run the tests as root, as CI does"
    );
    let unshare = packages::require("unshare", "util-linux");
    let ip = packages::require("ip", "iproute2");
    // Installed out here: the namespace has no route to the package registry.
    packages::require("iptables-legacy", "iptables");
    let exe = std::env::current_exe().expect("path of the test binary");
    let mut child = Command::new(unshare);
    child
        .args([
            "-n",
            "sh",
            "-c",
            r#""$DBRETRY_NETNS_IP" link set lo up && exec "$0" "$@""#,
        ])
        .arg(exe)
        .args([
            "--exact",
            test,
            "--nocapture",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env(MARKER, format!("{test} {}", network_namespace()))
        .env("DBRETRY_NETNS_IP", ip)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let description = format!("{child:?}");
    let run = run_bounded(
        child
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {description}: {e}")),
    );
    // Shown by libtest only on failure or with --nocapture.
    println!("--- namespaced run's stdout ---\n{}", run.stdout);
    eprintln!("--- namespaced run's stderr ---\n{}", run.stderr);
    let Some(status) = run.status else {
        panic!("the namespaced run of `{test}` did not finish within {CHILD_LIMIT:?}: killed");
    };
    // The inner panic in the message itself: summaries that keep only the `panicked at`
    // lines still say why.
    let why: Vec<&str> = run
        .stderr
        .lines()
        .chain(run.stdout.lines())
        .skip_while(|line| !line.contains("panicked at"))
        .take(3)
        .collect();
    assert!(
        status.success() && run.stdout.contains(ONE_PASSED),
        "the namespaced run of `{test}` failed ({status}): {} (full output above): {description}",
        why.join(" | ")
    );
    false
}

/// Checks, in the namespaced run, that it is the run made for `test` and
/// that the namespace really is a private one.
fn enter(test: &str, marker: &str) {
    let (name, outer) = marker.split_once(' ').unwrap_or((marker, ""));
    assert_eq!(
        name, test,
        "netns::isolated(\"{test}\") in a run made for `{name}`: pass the test's own path"
    );
    let inner = network_namespace();
    assert_ne!(
        inner, outer,
        "the namespaced run is still in the outer network namespace"
    );
    INSIDE.store(true, Ordering::SeqCst);
}

/// Whether this process is a namespaced run made by [`isolated`].
pub fn is_inside() -> bool {
    INSIDE.load(Ordering::SeqCst)
}

/// The network namespace of this process, as `/proc/self/ns/net` names it.
fn network_namespace() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .map(|link| link.to_string_lossy().into_owned())
        .unwrap_or_else(|e| panic!("read /proc/self/ns/net: {e}"))
}

/// Whether this process runs as root (effective uid 0).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uids = status.lines().find(|line| line.starts_with("Uid:"))?;
            Some(uids.split_whitespace().nth(2)? == "0")
        })
        .unwrap_or(false)
}

/// A child's exit status (`None`: killed at [`CHILD_LIMIT`]) and output.
struct ChildRun {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

/// Waits for `child` at most [`CHILD_LIMIT`], then kills it, collecting its
/// output meanwhile (in threads, so a full pipe never blocks it).
fn run_bounded(mut child: Child) -> ChildRun {
    let stdout = read_in_thread(child.stdout.take());
    let stderr = read_in_thread(child.stderr.take());
    let deadline = Instant::now() + CHILD_LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                // `unshare` and `sh` exec, so this pid is the test binary.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    ChildRun {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Reads `pipe` to the end in a thread.
fn read_in_thread(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Silently drops TCP packets in the kernel of the test's private network
/// namespace: no FIN, no RST, no ACK, no ICMP; the sockets on both ends stay
/// open, and each side's kernel retransmits and probes into the void, so TCP
/// keepalive and `tcp_user_timeout` fire as they would on a dead network
/// path.
///
/// Packets are dropped on input (every loopback packet passes there once),
/// by port: a connection's client port matches it alone, because servers
/// here listen outside the ephemeral range the client ports come from. Read
/// a tokio-postgres client's port with `SELECT inet_client_port()` (or
/// `client_port` in `pg_stat_activity`) before dropping it.
///
/// Only usable in a run for which [`isolated`] returned true. The rules live
/// in a chain of their own, removed on drop.
pub struct KernelBlackHole {
    iptables: PathBuf,
    chain: String,
}

impl KernelBlackHole {
    /// Creates an empty rule chain, hooked into the input path.
    ///
    /// Panics outside a namespaced run: the rules would apply to the whole
    /// machine.
    pub fn new() -> KernelBlackHole {
        assert!(
            is_inside(),
            "KernelBlackHole outside a private network namespace: start the test with netns::isolated"
        );
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let hole = KernelBlackHole {
            iptables: packages::require("iptables-legacy", "iptables"),
            chain: format!("DBRETRY_DROP_{}", NEXT.fetch_add(1, Ordering::SeqCst)),
        };
        hole.iptables(&["-N", &hole.chain]);
        hole.iptables(&["-I", "INPUT", "-j", &hole.chain]);
        hole
    }

    /// Drops, in both directions, every packet of the connection whose
    /// client side uses local port `client_port` (existing and later
    /// packets alike; the connection is silently dead until
    /// [`KernelBlackHole::restore`]).
    pub fn drop_connection(&self, client_port: u16) {
        self.drop_port(client_port);
    }

    /// Drops, in both directions, every packet from or to `port`: for a
    /// server's port, every connection to it, open or new (a new connect's
    /// SYN goes unanswered, so the connect hangs).
    pub fn drop_port(&self, port: u16) {
        let port = port.to_string();
        for direction in ["--sport", "--dport"] {
            self.iptables(&[
                "-A",
                &self.chain,
                "-p",
                "tcp",
                direction,
                &port,
                "-j",
                "DROP",
            ]);
        }
    }

    /// Removes every drop rule: packets flow again (TCP's retransmissions
    /// then deliver what was lost, on connections that have not timed out).
    pub fn restore(&self) {
        self.iptables(&["-F", &self.chain]);
    }

    /// Packets dropped so far by this black hole's rules.
    pub fn dropped_packets(&self) -> u64 {
        let listing = self.iptables(&["-L", &self.chain, "-n", "-v", "-x"]);
        // Two header lines, then one line per rule starting with its packet count.
        listing
            .lines()
            .skip(2)
            .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// Runs `iptables-legacy -w ARGS`; panics with its output on failure.
    fn iptables(&self, args: &[&str]) -> String {
        let output = Command::new(&self.iptables)
            .arg("-w")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.iptables.display()));
        assert!(
            output.status.success(),
            "{} {} failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.iptables.display(),
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout).trim_end(),
            String::from_utf8_lossy(&output.stderr).trim_end(),
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for KernelBlackHole {
    fn drop(&mut self) {
        // Best effort: the namespace goes away with the process anyway.
        for args in [
            vec!["-D", "INPUT", "-j", &self.chain],
            vec!["-F", &self.chain],
            vec!["-X", &self.chain],
        ] {
            let _ = Command::new(&self.iptables)
                .arg("-w")
                .args(&args)
                .stdin(Stdio::null())
                .output();
        }
    }
}

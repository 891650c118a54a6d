//! Tests of the kernel-level black hole (`support::netns`): what TCP keepalive
//! and `tcp_user_timeout` on a tokio-postgres `Config` do against a network
//! path that silently died, and that the black hole spares what it should.
//!
//! Each test runs in a private network namespace of its own (root only).
//! Printed figures (run with `--nocapture`) are the measured detection times.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_postgres::{Client, Config, NoTls};

use crate::support::netns::{self, KernelBlackHole};
use crate::support::{PgCluster, connect, error_chain, io_error_kind};

/// Bounds the wait for something the kernel does on its own timers: far
/// above every setting used here, it only turns a hang into a failure.
const HANG_GUARD: Duration = Duration::from_secs(60);
/// How often the idle test looks at `Client::is_closed`.
const POLL: Duration = Duration::from_millis(10);
/// The kernel's TCP timers count in jiffies from a start rounded down to a
/// jiffy, so they can fire up to one jiffy (at most 10 ms, at `CONFIG_HZ`
/// 100) before the exact time; load only makes them later.
const JIFFY: Duration = Duration::from_millis(10);
/// How long a query or connect must stay unanswered to count as stalled.
const STALL: Duration = Duration::from_millis(500);

/// Settings that bound how long a dead peer goes unnoticed.
#[derive(Clone, Copy, Debug)]
struct DeadPeerSettings {
    /// What the test prints.
    name: &'static str,
    /// `keepalives_idle`, `keepalives_interval`, `keepalives_retries`.
    keepalives: Option<(Duration, Duration, u32)>,
    /// `tcp_user_timeout`.
    user_timeout: Option<Duration>,
}

/// The short settings the tests use: keepalive probes from 1 s idle, every
/// 1 s, 2 of them, and a 3 s user timeout.
const SHORT: DeadPeerSettings = DeadPeerSettings {
    name: "keepalives 1s/1s/2 + user timeout 3s",
    keepalives: Some((Duration::from_secs(1), Duration::from_secs(1), 2)),
    user_timeout: Some(Duration::from_secs(3)),
};

impl DeadPeerSettings {
    /// `base` with these settings applied.
    fn config(&self, base: &Config) -> Config {
        let mut config = base.clone();
        if let Some((idle, interval, retries)) = self.keepalives {
            config
                .keepalives(true)
                .keepalives_idle(idle)
                .keepalives_interval(interval)
                .keepalives_retries(retries);
        }
        if let Some(user_timeout) = self.user_timeout {
            config.tcp_user_timeout(user_timeout);
        }
        config
    }

    /// When Linux gives up on an idle connection, counted from the last
    /// packet received: keepalive probes go out at `idle`, `idle +
    /// interval`, ...; without a user timeout the connection dies at the
    /// tick after `retries` unanswered probes; with one, at the first tick
    /// after a probe at or past the user timeout (`retries` is then unused:
    /// `tcp_keepalive_timer` in net/ipv4/tcp_timer.c). `None`: no keepalive
    /// settings, so the first probe waits for the system's 2 h.
    fn idle_detection(&self) -> Option<Duration> {
        let (idle, interval, retries) = self.keepalives?;
        let Some(user_timeout) = self.user_timeout else {
            return Some(idle + interval * retries);
        };
        let mut tick = idle + interval;
        while tick < user_timeout {
            tick += interval;
        }
        Some(tick)
    }
}

/// Connects with `config`, keeping the connection task's result (the real
/// cause when the connection dies: the query itself only sees "closed").
async fn connect_keeping_cause(
    config: &Config,
) -> (Client, JoinHandle<Result<(), tokio_postgres::Error>>) {
    let (client, connection) = config.connect(NoTls).await.expect("connect");
    (client, tokio::spawn(connection))
}

/// The connection's client-side TCP port, as the server sees it.
async fn client_port(client: &Client) -> u16 {
    let row = client
        .query_one("SELECT inet_client_port()", &[])
        .await
        .expect("SELECT inet_client_port()");
    u16::try_from(row.get::<_, i32>(0)).expect("a TCP port")
}

/// Asserts that the connection task ended with an I/O timeout (ETIMEDOUT:
/// the kernel gave up on the peer), not with anything else.
async fn assert_timed_out(task: JoinHandle<Result<(), tokio_postgres::Error>>, what: &str) {
    let ended = timeout(HANG_GUARD, task)
        .await
        .unwrap_or_else(|_| panic!("{what}: the connection task did not end"))
        .expect("connection task panicked");
    let err = ended.expect_err("the connection should have failed");
    assert_eq!(
        io_error_kind(&err),
        Some(ErrorKind::TimedOut),
        "{what}: {}",
        error_chain(&err)
    );
}

#[tokio::test]
async fn kernel_black_hole_fails_a_query_in_flight_only_with_tcp_user_timeout() {
    if !netns::isolated(
        "harness_netns::kernel_black_hole_fails_a_query_in_flight_only_with_tcp_user_timeout",
    ) {
        return;
    }
    let pg = PgCluster::start().await;
    let hole = KernelBlackHole::new();
    let user_timeout = SHORT.user_timeout.unwrap();
    let (bounded, bounded_task) = connect_keeping_cause(&SHORT.config(&pg.config())).await;
    let (unbounded, _unbounded_task) = connect_keeping_cause(&pg.config()).await;
    hole.drop_connection(client_port(&bounded).await);
    hole.drop_connection(client_port(&unbounded).await);

    let started = Instant::now();
    let mut unbounded_query = Box::pin(unbounded.simple_query("SELECT 1"));
    assert!(
        (&mut unbounded_query).now_or_never().is_none(),
        "sent, not answered"
    );
    let failed = timeout(HANG_GUARD, bounded.simple_query("SELECT 1"))
        .await
        .expect("the query with tcp_user_timeout should fail, not hang");
    let elapsed = started.elapsed();
    println!("query in flight, {}: failed after {elapsed:?}", SHORT.name);
    let err = failed.expect_err("no answer can come through the black hole");
    assert!(bounded.is_closed(), "{}", error_chain(&err));
    assert_timed_out(bounded_task, "with tcp_user_timeout").await;
    // The kernel counts the user timeout from the first unacknowledged send,
    // which came after `started`.
    assert!(
        elapsed + JIFFY >= user_timeout,
        "gave up after {elapsed:?}, before the {user_timeout:?} user timeout"
    );
    assert!(
        (&mut unbounded_query).now_or_never().is_none(),
        "without tcp_user_timeout the same query is still waiting"
    );
    assert!(!unbounded.is_closed());
}

#[tokio::test]
async fn kernel_black_hole_idle_connection_is_found_dead_only_with_keepalive_settings() {
    if !netns::isolated(
        "harness_netns::kernel_black_hole_idle_connection_is_found_dead_only_with_keepalive_settings",
    ) {
        return;
    }
    let keepalive_only = DeadPeerSettings {
        name: "keepalives 1s/1s/2, no user timeout",
        user_timeout: None,
        ..SHORT
    };
    let user_timeout_only = DeadPeerSettings {
        name: "user timeout 3s, default keepalives",
        keepalives: None,
        ..SHORT
    };
    let defaults = DeadPeerSettings {
        name: "defaults",
        keepalives: None,
        user_timeout: None,
    };
    let detecting = [SHORT, keepalive_only];
    let blind = [user_timeout_only, defaults];

    let pg = PgCluster::start().await;
    let hole = KernelBlackHole::new();
    let mut clients = Vec::new();
    for settings in detecting.iter().chain(&blind) {
        let (client, task) = connect_keeping_cause(&settings.config(&pg.config())).await;
        // The last packet the connection receives is this query's answer,
        // which comes after `asked`.
        let asked = Instant::now();
        let port = client_port(&client).await;
        clients.push((settings, client, task, port, asked));
    }
    for (_, _, _, port, _) in &clients {
        hole.drop_connection(*port);
    }
    let dropped_at = Instant::now();

    let mut detected = vec![None; detecting.len()];
    while detected.iter().any(Option::is_none) {
        assert!(
            dropped_at.elapsed() < HANG_GUARD,
            "idle dead connections not found: {detected:?}"
        );
        for (slot, (_, client, _, _, _)) in detected.iter_mut().zip(&clients) {
            if slot.is_none() && client.is_closed() {
                *slot = Some(Instant::now());
            }
        }
        tokio::time::sleep(POLL).await;
    }
    for (settings, client, _, _, _) in &clients[detecting.len()..] {
        println!("idle, {}: still open", settings.name);
        assert!(
            !client.is_closed(),
            "{}: no probe is due yet",
            settings.name
        );
    }
    assert!(
        hole.dropped_packets() >= 2 * detecting.len() as u64,
        "keepalive probes went out and were dropped"
    );
    for ((settings, _, task, _, asked), closed_at) in clients.into_iter().zip(detected) {
        let closed_at = closed_at.expect("detected");
        let bound = settings.idle_detection().expect("keepalive settings");
        println!(
            "idle, {}: closed {:?} after the drop, {:?} after its last query \
             (Linux: {bound:?} after the last packet received)",
            settings.name,
            closed_at - dropped_at,
            closed_at - asked,
        );
        assert_timed_out(task, settings.name).await;
        // Nothing is declared dead before the settings allow.
        assert!(
            closed_at - asked + JIFFY >= bound,
            "{}: closed {:?} after its last query, before {bound:?}",
            settings.name,
            closed_at - asked
        );
    }
}

#[tokio::test]
async fn kernel_black_hole_spares_new_connections_and_restore_heals_old_ones() {
    if !netns::isolated(
        "harness_netns::kernel_black_hole_spares_new_connections_and_restore_heals_old_ones",
    ) {
        return;
    }
    let pg = PgCluster::start().await;
    let hole = KernelBlackHole::new();
    let old = connect(&pg.config()).await.unwrap();
    hole.drop_connection(client_port(&old).await);
    let stalled = timeout(STALL, old.simple_query("SELECT 1")).await;
    assert!(stalled.is_err(), "the old connection is black-holed");
    assert!(!old.is_closed(), "silently: nothing tells the client");

    let new = connect(&pg.config()).await.expect("new connections pass");
    new.simple_query("SELECT 1").await.expect("and answer");

    hole.drop_port(pg.port());
    let connecting = timeout(STALL, connect(&pg.config())).await;
    assert!(connecting.is_err(), "a connect to a dropped port hangs");
    let stalled = timeout(STALL, new.simple_query("SELECT 1")).await;
    assert!(stalled.is_err(), "open connections to the port too");
    assert!(hole.dropped_packets() > 0);

    hole.restore();
    // TCP retransmits what was lost; both sessions are intact.
    for client in [&old, &new] {
        timeout(HANG_GUARD, client.simple_query("SELECT 1"))
            .await
            .expect("answered after restore")
            .expect("SELECT 1 after restore");
    }
    connect(&pg.config()).await.expect("connect after restore");
}

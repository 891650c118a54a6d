//! Tests of the test harness itself: clusters, failure recipes and the proxy.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use tokio::time::timeout;
use tokio_postgres::Client;

use crate::support::{
    DATABASE, FaultProxy, Mode, PASSWORD, PgCluster, SUPERUSER, connect, connect_url,
    io_error_kind, pid_alive, sqlstate,
};

/// Runs `SELECT 1` and checks the answer.
async fn select_one(client: &Client) {
    let row = client.query_one("SELECT 1", &[]).await.expect("SELECT 1");
    assert_eq!(row.get::<_, i32>(0), 1);
}

/// Connecting with the cluster's config must fail with this SQLSTATE.
async fn assert_connect_sqlstate(config: &tokio_postgres::Config, expected: &str) {
    let err = connect(config).await.expect_err("connect should fail");
    assert_eq!(sqlstate(&err), Some(expected), "{err}");
}

/// Connecting must fail with an I/O error of this kind.
async fn assert_connect_io_error(config: &tokio_postgres::Config, expected: ErrorKind) {
    let err = connect(config).await.expect_err("connect should fail");
    assert_eq!(io_error_kind(&err), Some(expected), "{err}");
}

#[tokio::test]
async fn harness_cluster_connects_rejects_stops_and_restarts() {
    let pg = PgCluster::start().await;
    select_one(&connect(&pg.config()).await.expect("connect via config")).await;
    select_one(&connect_url(&pg.url()).await.expect("connect via url")).await;

    let wrong_password = pg.url_with(SUPERUSER, "wrong", DATABASE).parse().unwrap();
    assert_connect_sqlstate(&wrong_password, "28P01").await;
    let no_database = pg.url_with(SUPERUSER, PASSWORD, "nope").parse().unwrap();
    assert_connect_sqlstate(&no_database, "3D000").await;
    assert_eq!(pg.connection_count_seen(), 4);

    pg.stop_fast().await;
    assert!(!pg.is_running());
    assert_connect_io_error(&pg.config(), ErrorKind::ConnectionRefused).await;

    pg.start_server().await;
    assert!(pg.is_running());
    select_one(&connect(&pg.config()).await.expect("connect after restart")).await;
}

#[tokio::test]
async fn harness_not_ready_standby_gives_57p03_until_promoted() {
    let pg = PgCluster::init().await;
    pg.start_as_not_ready_standby().await;
    assert_connect_sqlstate(&pg.config(), "57P03").await;
    pg.promote().await;
    select_one(&connect(&pg.config()).await.expect("connect after promote")).await;
}

#[tokio::test]
async fn harness_sigstop_makes_connects_hang_until_sigcont() {
    let pg = PgCluster::start().await;
    pg.sigstop();
    let attempt = timeout(Duration::from_secs(1), connect(&pg.config())).await;
    assert!(attempt.is_err(), "connect should hang while SIGSTOPped");
    pg.sigcont();
    let client = connect(&pg.config()).await.expect("connect after SIGCONT");
    select_one(&client).await;

    pg.sigstop_all();
    let stalled = timeout(Duration::from_millis(500), client.simple_query("SELECT 1")).await;
    assert!(
        stalled.is_err(),
        "sessions should hang while all is stopped"
    );
    pg.sigcont_all();
    select_one(&client).await;
}

#[tokio::test]
async fn harness_killed_backend_crash_restarts_the_cluster() {
    let pg = PgCluster::start().await;
    let victim = connect(&pg.config()).await.unwrap();
    let bystander = connect(&pg.config()).await.unwrap();
    let victim_pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pg.backend_pids().await.len(), 2);
    pg.kill_backend(victim_pid, "KILL");
    assert!(victim.simple_query("SELECT 1").await.is_err());
    // The postmaster then ends every other session and runs crash recovery.
    let deadline = Instant::now() + Duration::from_secs(10);
    while bystander.simple_query("SELECT 1").await.is_ok() {
        assert!(Instant::now() < deadline, "the bystander session survived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pg.wait_ready().await;
    select_one(&connect(&pg.config()).await.expect("connect after recovery")).await;
}

#[tokio::test]
async fn harness_smart_shutdown_refuses_new_sessions_and_waits_for_old_ones() {
    let pg = PgCluster::start().await;
    let client = connect(&pg.config()).await.unwrap();
    pg.stop_smart_nowait().await;
    assert_connect_sqlstate(&pg.config(), "57P03").await;
    select_one(&client).await;
    assert!(pg.is_running());
    drop(client);
    pg.wait_stopped().await;
}

#[tokio::test]
async fn harness_backends_can_be_listed_and_terminated() {
    let pg = PgCluster::start().await;
    let client = connect(&pg.config()).await.unwrap();
    assert_eq!(pg.backend_pids().await.len(), 1);
    assert_eq!(pg.terminate_backends().await, 1);
    // Depending on whether the connection task has already read the FATAL
    // message and the EOF, the next query sees 57P01 or "connection closed";
    // only after that is `is_closed` reliably true.
    let err = client
        .simple_query("SELECT 1")
        .await
        .expect_err("terminated");
    assert!(sqlstate(&err) == Some("57P01") || err.is_closed(), "{err}");
    let _ = client.simple_query("SELECT 1").await;
    assert!(client.is_closed());
    assert!(pg.backend_pids().await.is_empty());
}

#[tokio::test]
async fn harness_proxy_passes_and_refuses() {
    let pg = PgCluster::start().await;
    let proxy = FaultProxy::start(pg.socket_addr()).await;
    let via_proxy = pg.config_via(proxy.addr());
    select_one(&connect(&via_proxy).await.expect("pass")).await;
    assert_eq!(proxy.accepted(), 1);

    proxy.set_mode(Mode::Refuse).await;
    assert_connect_io_error(&via_proxy, ErrorKind::ConnectionRefused).await;
    assert_eq!(
        proxy.accepted(),
        1,
        "refused connects never reach the proxy"
    );

    proxy.reset_counts();
    proxy.set_mode(Mode::Pass).await;
    let via_url = pg.url_via(proxy.addr());
    select_one(&connect_url(&via_url).await.expect("pass again")).await;
    assert_eq!(proxy.accepted(), 1);
}

#[tokio::test]
async fn harness_proxy_black_hole_stalls_queries() {
    let pg = PgCluster::start().await;
    let proxy = FaultProxy::start(pg.socket_addr()).await;
    let client = connect(&pg.config_via(proxy.addr())).await.unwrap();
    select_one(&client).await;

    proxy.set_mode(Mode::BlackHole).await;
    let stalled = timeout(Duration::from_millis(500), client.simple_query("SELECT 1")).await;
    assert!(
        stalled.is_err(),
        "query should not complete through a black hole"
    );
    assert!(!client.is_closed());
    assert_eq!(proxy.open_connections(), 1);
}

#[tokio::test]
async fn harness_proxy_silence_black_holes_open_connections_and_passes_new_ones() {
    let pg = PgCluster::start().await;
    let proxy = FaultProxy::start(pg.socket_addr()).await;
    let via_proxy = pg.config_via(proxy.addr());
    let asked = connect(&via_proxy).await.unwrap();
    let idle = connect(&via_proxy).await.unwrap();
    let row = idle
        .query_one("SELECT pg_backend_pid(), inet_client_port()", &[])
        .await
        .unwrap();
    let idle_pid: i32 = row.get(0);
    let idle_port = u16::try_from(row.get::<_, i32>(1)).unwrap();
    let idle_connection = || {
        proxy
            .connections()
            .into_iter()
            .find(|c| c.upstream_local.map(|a| a.port()) == Some(idle_port))
            .expect("the listing names the port the server sees")
    };
    assert!(!idle_connection().silenced);

    assert_eq!(proxy.silence_open_connections(), 2);
    assert_eq!(proxy.silenced_connections(), 2);
    assert!(idle_connection().silenced);
    let fresh = connect(&via_proxy).await.expect("new connections pass");
    select_one(&fresh).await;
    assert_eq!(proxy.open_connections(), 3);
    assert_eq!(
        proxy.silenced_connections(),
        2,
        "the new one is not silenced"
    );
    let stalled = timeout(Duration::from_millis(500), asked.simple_query("SELECT 1")).await;
    assert!(stalled.is_err(), "silenced connections answer nothing");
    assert!(!asked.is_closed(), "and tell the client nothing");

    // The client closes the idle one (a client with a query still waiting
    // would not: tokio-postgres closes only once every answer has come);
    // the server is not told.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !idle_connection().client_closed {
        assert!(Instant::now() < deadline, "{:?}", proxy.connections());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!idle_connection().server_closed);
    assert!(
        pg.backend_pids().await.contains(&idle_pid),
        "the server never heard of it"
    );
    select_one(&fresh).await;
}

#[tokio::test]
async fn harness_proxy_reset_breaks_open_and_new_connections() {
    let pg = PgCluster::start().await;
    let proxy = FaultProxy::start(pg.socket_addr()).await;
    let client = connect(&pg.config_via(proxy.addr())).await.unwrap();
    select_one(&client).await;

    proxy.set_mode(Mode::Reset).await;
    assert_eq!(proxy.open_connections(), 0);
    let err = client.simple_query("SELECT 1").await.expect_err("reset");
    assert!(client.is_closed(), "{err}");
    let err = connect(&pg.config_via(proxy.addr()))
        .await
        .expect_err("reset");
    assert_eq!(
        io_error_kind(&err),
        Some(ErrorKind::ConnectionReset),
        "{err}"
    );
}

#[tokio::test]
async fn harness_proxy_cut_after_breaks_big_results() {
    let pg = PgCluster::start().await;
    let proxy = FaultProxy::start(pg.socket_addr()).await;
    proxy.set_mode(Mode::CutAfter(10_000)).await;
    let client = connect(&pg.config_via(proxy.addr())).await.unwrap();
    select_one(&client).await;
    let big = client.simple_query("SELECT repeat('x', 100000)").await;
    assert!(big.is_err(), "the result is larger than the cut");
    assert!(client.is_closed());
}

#[tokio::test]
async fn harness_proxy_latency_delays_round_trips() {
    let pg = PgCluster::start().await;
    let proxy = FaultProxy::start(pg.socket_addr()).await;
    let client = connect(&pg.config_via(proxy.addr())).await.unwrap();
    proxy
        .set_mode(Mode::Latency(Duration::from_millis(100)))
        .await;
    let started = Instant::now();
    select_one(&client).await;
    // One chunk each way: at least two delays.
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn harness_parallel_clusters_are_isolated_and_cleaned_up() {
    let (a, b) = tokio::join!(PgCluster::start(), PgCluster::start());
    assert_ne!(a.port(), b.port());
    a.execute("CREATE TABLE only_in_a (id int)").await;
    let lookup = "SELECT to_regclass('only_in_a') IS NOT NULL";
    let in_b: bool = b.admin().await.query_one(lookup, &[]).await.unwrap().get(0);
    assert!(!in_b, "clusters must not share data");

    let pids = [a.postmaster_pid(), b.postmaster_pid()];
    let dirs = [a.data_dir().to_path_buf(), b.data_dir().to_path_buf()];
    drop((a, b));
    for (pid, dir) in pids.into_iter().zip(dirs) {
        assert!(!pid_alive(pid), "postmaster {pid} survived drop");
        assert!(!dir.exists(), "{} survived drop", dir.display());
        let pgrep = std::process::Command::new("pgrep")
            .arg("-f")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(pgrep.stdout.is_empty(), "processes left: {pgrep:?}");
    }
}

#[tokio::test]
async fn harness_replica_follows_primary_and_promotes() {
    let primary = PgCluster::start().await;
    primary
        .execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        .await;
    let replica = PgCluster::replica_of(&primary).await;
    primary.execute("INSERT INTO t VALUES (2)").await;

    let reader = replica.admin().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count: i64 = reader
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get(0);
        if count == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "replica did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let read_only = reader
        .batch_execute("INSERT INTO t VALUES (3)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&read_only), Some("25006"));

    replica.promote().await;
    replica.execute("INSERT INTO t VALUES (3)").await;
}

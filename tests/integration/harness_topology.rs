//! Tests of the topology harnesses: PgBouncer in front of a cluster, a Patroni
//! cluster (etcd + 3 nodes) and HAProxy routing to its leader.
//!
//! They also record what PgBouncer 1.18 tells clients in each condition (run
//! with `--nocapture` to see the `pgbouncer says` lines): the exact texts and
//! SQLSTATEs the classification of pooler errors is built from.

use std::time::{Duration, Instant};

use tokio_postgres::{Client, Config, Error};

use crate::support::{
    DATABASE, HaProxy, PASSWORD, PatroniCluster, PgBouncer, PgBouncerOptions, PgCluster, SUPERUSER,
    connect, error_chain, io_error_kind, pid_alive, sqlstate,
};

/// Generous wall-clock deadline for conditions polled by these tests.
const DEADLINE: Duration = Duration::from_secs(60);

/// The port of the server a client's session is on.
async fn server_port(client: &Client) -> u16 {
    let row = client
        .query_one("SELECT inet_server_port()", &[])
        .await
        .expect("SELECT inet_server_port()");
    u16::try_from(row.get::<_, i32>(0)).expect("a port")
}

/// Where a failure showed up: PgBouncer accepts most logins itself, so many
/// of its conditions only reach the client at the first query.
#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Connect,
    Query,
}

/// Connects and runs `SELECT 1`; the first error and where it came.
async fn first_failure(config: &Config) -> (Phase, Error) {
    match connect(config).await {
        Err(e) => (Phase::Connect, e),
        Ok(client) => match client.simple_query("SELECT 1").await {
            Err(e) => (Phase::Query, e),
            Ok(_) => panic!("expected a failure, but the query succeeded"),
        },
    }
}

/// The server error's message (`FATAL`/`ERROR` text), if it is one.
fn message(err: &Error) -> Option<&str> {
    err.as_db_error().map(|db| db.message())
}

/// Prints what PgBouncer said in `condition`, for the record.
fn record(condition: &str, phase: &Phase, err: &Error) {
    println!(
        "pgbouncer says | {condition} | {phase:?} | SQLSTATE {} | {:?} | {}",
        sqlstate(err).unwrap_or("none"),
        message(err).unwrap_or("(no server message)"),
        error_chain(err)
    );
}

/// Asserts PgBouncer's own FATAL with `text` and SQLSTATE 08P01 in `phase`.
fn assert_pgbouncer_fatal(condition: &str, (phase, err): &(Phase, Error), want: Phase, text: &str) {
    record(condition, phase, err);
    assert_eq!(*phase, want, "{condition}: {}", error_chain(err));
    assert_eq!(
        sqlstate(err),
        Some("08P01"),
        "{condition}: {}",
        error_chain(err)
    );
    assert_eq!(message(err), Some(text), "{condition}");
}

/// Polls until `config` connects and runs `SELECT 1`; returns how long it took.
async fn wait_until_queries_pass(config: &Config) -> Duration {
    let began = Instant::now();
    loop {
        if let Ok(client) = connect(config).await
            && client.simple_query("SELECT 1").await.is_ok()
        {
            return began.elapsed();
        }
        assert!(began.elapsed() < DEADLINE, "queries never passed again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `cl_waiting` of database `app` in `SHOW POOLS`.
async fn clients_waiting(bouncer: &PgBouncer) -> usize {
    bouncer
        .show("POOLS")
        .await
        .iter()
        .filter(|pool| pool.get("database").map(String::as_str) == Some(DATABASE))
        .filter_map(|pool| pool.get("cl_waiting")?.parse::<usize>().ok())
        .sum()
}

/// The pid of the backend running `pg_sleep`, once one does.
async fn sleeping_backend(pg: &PgCluster) -> i32 {
    let admin = pg.admin().await;
    let began = Instant::now();
    loop {
        let rows = admin
            .query(
                "SELECT pid FROM pg_stat_activity \
                 WHERE state = 'active' AND query LIKE 'SELECT pg_sleep%' AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .expect("query pg_stat_activity");
        if let Some(row) = rows.first() {
            return row.get(0);
        }
        assert!(
            began.elapsed() < DEADLINE,
            "the query never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn harness_pgbouncer_passes_queries_pauses_resumes_and_restarts() {
    let pg = PgCluster::start().await;
    let mut bouncer = PgBouncer::start(&pg, PgBouncerOptions::session()).await;
    assert_ne!(bouncer.port(), pg.port());
    let client = connect(&bouncer.config())
        .await
        .expect("connect through PgBouncer");
    assert_eq!(server_port(&client).await, pg.port());
    let url_client = crate::support::connect_url(&bouncer.url())
        .await
        .expect("url");
    assert_eq!(server_port(&url_client).await, pg.port());
    // In session mode PAUSE waits for every session to give its server back.
    drop((client, url_client));

    bouncer.pause().await;
    let paused = connect(&bouncer.config())
        .await
        .expect("PgBouncer accepts logins while paused");
    let query = tokio::spawn(async move { paused.simple_query("SELECT 1").await.map(drop) });
    let began = Instant::now();
    while clients_waiting(&bouncer).await == 0 {
        assert!(began.elapsed() < DEADLINE, "the query never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!query.is_finished(), "a query ran while paused");
    bouncer.resume().await;
    query.await.unwrap().expect("the query runs after RESUME");

    let held = connect(&bouncer.config()).await.unwrap();
    held.simple_query("SELECT 1").await.unwrap();
    let began = Instant::now();
    bouncer.restart().await;
    println!(
        "PgBouncer restart (SIGTERM, start again) took {:?}",
        began.elapsed()
    );
    let err = held.simple_query("SELECT 1").await.unwrap_err();
    record(
        "session open across a restart (SIGTERM)",
        &Phase::Query,
        &err,
    );
    assert!(err.is_closed(), "{}", error_chain(&err));
    wait_until_queries_pass(&bouncer.config()).await;

    let held = connect(&bouncer.config()).await.unwrap();
    bouncer.kill();
    let err = held.simple_query("SELECT 1").await.unwrap_err();
    assert!(err.is_closed(), "{}", error_chain(&err));
    let (phase, err) = first_failure(&bouncer.config()).await;
    assert_eq!(phase, Phase::Connect);
    assert_eq!(
        io_error_kind(&err),
        Some(std::io::ErrorKind::ConnectionRefused),
        "{}",
        error_chain(&err)
    );
    bouncer.start_again().await;
    let client = connect(&bouncer.config())
        .await
        .expect("connect after kill -9");
    assert_eq!(server_port(&client).await, pg.port());
    assert!(bouncer.log_contents().contains("process up: PgBouncer"));

    let pid = bouncer.pid();
    drop(bouncer);
    assert!(!pid_alive(pid), "PgBouncer outlived its harness");
}

#[tokio::test]
async fn harness_pgbouncer_transaction_mode_loses_prepared_statements_session_mode_keeps_them() {
    let pg = PgCluster::start().await;
    for options in [PgBouncerOptions::session(), PgBouncerOptions::transaction()] {
        let mode = options.mode();
        let bouncer = PgBouncer::start(&pg, options).await;
        // The first login makes PgBouncer's first server connection; the
        // statement is prepared there.
        let preparer = connect(&bouncer.config()).await.unwrap();
        let statement = preparer.prepare("SELECT 41 + 1").await.unwrap();
        // Another client takes that (most recently used) server connection
        // with an open transaction.
        let other = connect(&bouncer.config()).await.unwrap();
        other.batch_execute("BEGIN; SELECT 1").await.unwrap();
        let result = preparer.query_one(&statement, &[]).await;
        match mode {
            crate::support::PoolMode::Session => {
                let row = result.expect("session mode keeps the session's statement");
                assert_eq!(row.get::<_, i32>(0), 42);
            }
            crate::support::PoolMode::Transaction => {
                let err = result.expect_err("the statement lives on another server connection");
                record(
                    "transaction mode, prepared statement used in a later transaction",
                    &Phase::Query,
                    &err,
                );
                assert_eq!(sqlstate(&err), Some("26000"), "{}", error_chain(&err));
            }
        }
        other.batch_execute("COMMIT").await.unwrap();
    }
}

#[tokio::test]
async fn harness_pgbouncer_reports_its_own_conditions_as_08p01() {
    let pg = PgCluster::start().await;
    let bouncer = PgBouncer::start(
        &pg,
        PgBouncerOptions::session()
            .set("default_pool_size", "1")
            .set("max_client_conn", "10")
            .set("query_wait_timeout", "1")
            .set("server_login_retry", "1"),
    )
    .await;

    let wrong_password = bouncer.config_for(SUPERUSER, "wrong", DATABASE);
    let failure = first_failure(&wrong_password).await;
    assert_pgbouncer_fatal(
        "wrong password (auth_type scram-sha-256)",
        &failure,
        Phase::Connect,
        "SASL authentication failed",
    );
    let unknown_user = bouncer.config_for("nobody", "wrong", DATABASE);
    let failure = first_failure(&unknown_user).await;
    assert_pgbouncer_fatal(
        "unknown user (auth_type scram-sha-256)",
        &failure,
        Phase::Connect,
        "SASL authentication failed",
    );
    let md5 = PgBouncer::start(&pg, PgBouncerOptions::session().set("auth_type", "md5")).await;
    let failure = first_failure(&md5.config_for(SUPERUSER, "wrong", DATABASE)).await;
    assert_pgbouncer_fatal(
        "wrong password (auth_type md5)",
        &failure,
        Phase::Connect,
        "password authentication failed",
    );
    drop(md5);
    let unknown_database = bouncer.config_for(SUPERUSER, PASSWORD, "nope");
    let failure = first_failure(&unknown_database).await;
    assert_pgbouncer_fatal(
        "unknown database",
        &failure,
        Phase::Connect,
        "no such database: nope",
    );

    // The only server connection is held by a session: the next client waits.
    let holder = connect(&bouncer.config()).await.unwrap();
    holder.simple_query("SELECT 1").await.unwrap();
    let failure = first_failure(&bouncer.config()).await;
    assert_pgbouncer_fatal(
        "pool exhausted past query_wait_timeout",
        &failure,
        Phase::Query,
        "query_wait_timeout",
    );
    drop(holder);

    bouncer.pause().await;
    let failure = first_failure(&bouncer.config()).await;
    assert_pgbouncer_fatal(
        "PAUSE past query_wait_timeout",
        &failure,
        Phase::Query,
        "query_wait_timeout",
    );
    bouncer.resume().await;

    bouncer.admin_command("DISABLE app").await.unwrap();
    let failure = first_failure(&bouncer.config()).await;
    assert_pgbouncer_fatal(
        "database disabled (DISABLE)",
        &failure,
        Phase::Connect,
        "database \"app\" is disabled",
    );
    bouncer.admin_command("ENABLE app").await.unwrap();

    let backend = connect(&bouncer.config()).await.unwrap();
    let query =
        tokio::spawn(async move { backend.simple_query("SELECT pg_sleep(60)").await.map(drop) });
    let sleeping = sleeping_backend(&pg).await;
    pg.kill_backend(sleeping, "KILL");
    let err = query.await.unwrap().unwrap_err();
    assert_pgbouncer_fatal(
        "server backend killed mid-query",
        &(Phase::Query, err),
        Phase::Query,
        "server conn crashed?",
    );
    pg.wait_ready().await;
    wait_until_queries_pass(&bouncer.config()).await;

    let mut clients = Vec::new();
    let failure = loop {
        match connect(&bouncer.config()).await {
            Ok(client) => clients.push(client),
            Err(e) => break (Phase::Connect, e),
        }
        assert!(clients.len() <= 10, "max_client_conn not enforced");
    };
    assert_pgbouncer_fatal(
        "max_client_conn reached",
        &failure,
        Phase::Connect,
        "no more connections allowed (max_client_conn)",
    );
    drop(clients);

    // The server stopped behind PgBouncer: logins still succeed, queries fail.
    pg.stop_fast().await;
    let (phase, err) = first_failure(&bouncer.config()).await;
    record(
        "server stopped: first client (waits for a server connect)",
        &phase,
        &err,
    );
    assert_eq!(phase, Phase::Query);
    assert_eq!(sqlstate(&err), Some("08P01"), "{}", error_chain(&err));
    let failure = first_failure(&bouncer.config()).await;
    assert_pgbouncer_fatal(
        "server stopped: later clients",
        &failure,
        Phase::Query,
        "server login has been failing, try again later (server_login_retry)",
    );
    let ready = Instant::now();
    pg.start_server().await;
    let lag = wait_until_queries_pass(&bouncer.config()).await;
    println!(
        "PgBouncer (server_login_retry 1 s): queries pass {lag:?} after the server is back ({:?} \
         after the start began)",
        ready.elapsed()
    );

    // PgBouncer never reached the server: the login itself waits, then fails.
    pg.stop_fast().await;
    let fresh = PgBouncer::start(
        &pg,
        PgBouncerOptions::session().set("client_login_timeout", "1"),
    )
    .await;
    let failure = first_failure(&fresh.config()).await;
    assert_pgbouncer_fatal(
        "server down before PgBouncer's first server login",
        &failure,
        Phase::Connect,
        "client_login_timeout (server down)",
    );
    pg.start_server().await;

    // Safe shutdown (SIGINT): open sessions go on, new queries wait.
    let held = connect(&bouncer.config()).await.unwrap();
    held.simple_query("SELECT 1").await.unwrap();
    bouncer.shutdown_safe();
    let failure = first_failure(&bouncer.config()).await;
    assert_pgbouncer_fatal(
        "new client during a safe shutdown (SIGINT)",
        &failure,
        Phase::Query,
        "query_wait_timeout",
    );
    held.simple_query("SELECT 1")
        .await
        .expect("open sessions go on during a safe shutdown");
    drop(held);
    let mut bouncer = bouncer;
    bouncer.wait_stopped().await;
    bouncer.start_again().await;

    let held = connect(&bouncer.config()).await.unwrap();
    held.simple_query("SELECT 1").await.unwrap();
    let err = bouncer.admin_command("SHUTDOWN").await.unwrap_err();
    assert!(err.is_closed(), "SHUTDOWN: {}", error_chain(&err));
    let err = held.simple_query("SELECT 1").await.unwrap_err();
    record(
        "session open during a console SHUTDOWN",
        &Phase::Query,
        &err,
    );
    assert!(
        err.is_closed() && sqlstate(&err).is_none(),
        "{}",
        error_chain(&err)
    );
    bouncer.wait_stopped().await;
}

#[tokio::test]
async fn harness_patroni_switchover_failover_and_crash_with_haproxy_following() {
    let began = Instant::now();
    let mut cluster = PatroniCluster::start().await;
    let proxy = HaProxy::start(&cluster).await;
    let first = cluster.leader().await;
    assert_eq!(cluster.writable_node().await, Some(first));
    for node in (0..cluster.node_count()).filter(|&n| n != first) {
        let replica = connect(&cluster.node_config(node)).await.expect("replica");
        let row = replica
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "node{node} should be a replica");
    }
    proxy.wait_routes_to(first).await;
    let url_client = crate::support::connect_url(&cluster.url())
        .await
        .expect("multi-host url");
    assert_eq!(
        cluster.node_of_port(server_port(&url_client).await),
        Some(first)
    );

    let second = cluster.switchover(None).await;
    assert_ne!(second, first);
    proxy.wait_routes_to(second).await;
    let err = url_client.simple_query("SELECT 1").await.unwrap_err();
    println!(
        "session on the old leader after the switchover: {}",
        error_chain(&err)
    );

    let third = cluster.failover().await;
    assert!(third != second, "the killed leader cannot stay leader");
    assert!(cluster.patroni_pid(second).is_none() && cluster.postmaster_pid(second).is_none());
    proxy.wait_routes_to(third).await;

    let crashed = cluster.crash_postmaster(third);
    let restart = Instant::now();
    let writable = loop {
        let restarted = cluster
            .postmaster_pid(third)
            .is_some_and(|pid| pid != crashed);
        if restarted && cluster.writable_node().await == Some(third) {
            break restart.elapsed();
        }
        assert!(restart.elapsed() < DEADLINE, "node{third} never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "Patroni crash (postmaster of node{third} killed): restarted in place, writable after {writable:?}"
    );
    assert_eq!(
        cluster.current_leader().await,
        Some(third),
        "a crash is not a failover"
    );

    let rejoin = Instant::now();
    cluster.start_node(second);
    assert_eq!(cluster.wait_until_healthy().await, third);
    println!(
        "Patroni rejoin of the killed node{second}: healthy after {:?}",
        rejoin.elapsed()
    );
    proxy.wait_routes_to(third).await;

    let pids: Vec<i32> = (0..cluster.node_count())
        .flat_map(|n| [cluster.patroni_pid(n), cluster.postmaster_pid(n)])
        .flatten()
        .collect();
    drop(proxy);
    drop(cluster);
    for pid in pids {
        assert!(!pid_alive(pid), "pid {pid} outlived the Patroni harness");
    }
    println!("Patroni self-test total: {:?}", began.elapsed());
}

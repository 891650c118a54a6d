//! dbretry's pools in production topologies (issue 15): behind a real PgBouncer (server
//! restart behind it, PgBouncer restart, PAUSE/RESUME, transaction pooling with
//! `prepare_cached`) and on a real Patroni cluster (switchover and failover, with a
//! multi-host `target_session_attrs=read-write` configuration, and once through HAProxy).
//!
//! What is asserted is what a user would look at: no `get()` error where the pool can wait,
//! every error carrying its cause and class, no session left on a read-only node. Timings are
//! printed, not asserted.

use std::time::Duration;

use dbretry::deadpool_postgres::{self, Manager};
use dbretry::{ErrorClass, ErrorKind};
use tokio::time::Instant;
use tokio_postgres::NoTls;

use crate::callers::{Running, Seen};
use crate::deadpool_postgres::pool_policy;
use crate::step;
use crate::support::{HaProxy, PatroniCluster, PgBouncer, PgBouncerOptions, PgCluster};

const CALLERS: usize = 16;
const POOL_SIZE: usize = 8;

type Bb8Manager = dbretry::bb8_postgres::PostgresConnectionManager<NoTls>;

fn deadpool(config: tokio_postgres::Config, budget: Duration) -> dbretry::deadpool::Pool<Manager> {
    let manager = Manager::builder(config, NoTls)
        .policy(pool_policy(budget))
        .build();
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(POOL_SIZE)
        .build()
        .unwrap();
    dbretry::deadpool::Pool::new(pool)
}

async fn bb8(config: tokio_postgres::Config, budget: Duration) -> dbretry::bb8::Pool<Bb8Manager> {
    let manager = Bb8Manager::builder(config, NoTls)
        .policy(pool_policy(budget))
        .build();
    dbretry::bb8::Pool::new(bb8::Pool::builder().max_size(POOL_SIZE as u32), manager)
        .await
        .unwrap()
}

/// Every error a caller saw names its cause; query errors are sessions cut mid-flight.
fn assert_causes(what: &str, seen: &Seen) {
    for error in &seen.errors {
        assert!(
            error.last_failure().is_some() || error.kind() == ErrorKind::PoolExhausted,
            "{what}: an error without a cause: {error}"
        );
    }
    println!(
        "{what}: {} ok, {} get() errors, {} query errors (cut mid-flight), worst get() {:?}",
        seen.ok,
        seen.errors.len(),
        seen.query_errors.len(),
        seen.worst_get
    );
}

// ----- PgBouncer -----

/// PgBouncer in session mode, retrying server logins every second (its default is 15 s).
async fn pgbouncer(pg: &PgCluster, options: PgBouncerOptions) -> PgBouncer {
    PgBouncer::start(pg, options.set("server_login_retry", "1")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_pgbouncer_a_server_restart_costs_no_get_error() {
    let pg = PgCluster::start().await;
    let bouncer = pgbouncer(&pg, PgBouncerOptions::session()).await;
    let budget = Duration::from_secs(20);
    let deadpool_pool = deadpool(bouncer.config(), budget);
    let bb8_pool = bb8(bouncer.config(), budget).await;
    let on_deadpool = Running::start(CALLERS, {
        let pool = deadpool_pool.clone();
        move || {
            let pool = pool.clone();
            async move { step!(pool) }
        }
    });
    let on_bb8 = Running::start(CALLERS, {
        let pool = bb8_pool.clone();
        move || {
            let pool = pool.clone();
            async move { step!(pool) }
        }
    });
    on_deadpool.wait_for_more_than(0, budget).await;
    on_bb8.wait_for_more_than(0, budget).await;
    pg.stop_fast().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = (on_deadpool.ok().await, on_bb8.ok().await);
    let ready = Instant::now();
    pg.start_server().await;
    on_deadpool.wait_for_more_than(before.0, budget).await;
    let deadpool_back = ready.elapsed();
    on_bb8.wait_for_more_than(before.1, budget).await;
    let bb8_back = ready.elapsed();
    let (deadpool_seen, bb8_seen) = (on_deadpool.stop().await, on_bb8.stop().await);
    println!(
        "server restart behind PgBouncer: served again {deadpool_back:?} (deadpool), {bb8_back:?} (bb8) after the server was up"
    );
    for (what, seen) in [("deadpool", &deadpool_seen), ("bb8", &bb8_seen)] {
        assert_causes(what, seen);
        // PgBouncer's "server login has been failing" is a connect-phase failure now: the
        // pool waits it out instead of handing out a session that cannot reach a server.
        assert!(seen.errors.is_empty(), "{what}: {:?}", &seen.errors[..1]);
    }
    let attempts = deadpool_pool.manager().diagnostics().connect_attempts();
    assert!(
        attempts.transient > 0,
        "the outage was seen as transient: {attempts:?}"
    );
    assert_eq!(attempts.permanent, 0, "{attempts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pgbouncer_restart_costs_no_get_error() {
    let pg = PgCluster::start().await;
    let mut bouncer = pgbouncer(&pg, PgBouncerOptions::session()).await;
    let budget = Duration::from_secs(20);
    let pool = deadpool(bouncer.config(), budget);
    let load = Running::start(CALLERS, {
        let pool = pool.clone();
        move || {
            let pool = pool.clone();
            async move { step!(pool) }
        }
    });
    load.wait_for_more_than(0, budget).await;
    bouncer.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = load.ok().await;
    let back = Instant::now();
    bouncer.start_again().await;
    load.wait_for_more_than(before, budget).await;
    println!(
        "PgBouncer restart: served again {:?} after it was back",
        back.elapsed()
    );
    let seen = load.stop().await;
    assert_causes("PgBouncer restart", &seen);
    assert!(seen.errors.is_empty(), "{:?}", &seen.errors[..1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_pgbouncer_holds_callers_and_resume_serves_them() {
    let pg = PgCluster::start().await;
    let bouncer = pgbouncer(&pg, PgBouncerOptions::transaction()).await;
    let budget = Duration::from_secs(20);
    let pool = deadpool(bouncer.config(), budget);
    let load = Running::start(CALLERS, {
        let pool = pool.clone();
        move || {
            let pool = pool.clone();
            async move { step!(pool) }
        }
    });
    load.wait_for_more_than(0, budget).await;
    bouncer.pause().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = load.ok().await;
    bouncer.resume().await;
    load.wait_for_more_than(before, budget).await;
    let seen = load.stop().await;
    assert_causes("PAUSE/RESUME", &seen);
    assert!(seen.errors.is_empty(), "{:?}", &seen.errors[..1]);
    assert!(seen.query_errors.is_empty(), "{:?}", seen.query_errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_pooling_breaks_prepared_statements_and_the_error_says_what_to_do() {
    let pg = PgCluster::start().await;
    let bouncer = pgbouncer(&pg, PgBouncerOptions::transaction()).await;
    let pool = deadpool(bouncer.config(), Duration::from_secs(5));
    let client = pool.get().await.unwrap();
    // Prepared on the server connection PgBouncer lent for this one statement...
    let statement = client.prepare_cached("SELECT 41 + 1").await.unwrap();
    // ...which other clients' open transactions now hold (PgBouncer lends the most recently
    // used server connection first).
    let mut others = Vec::new();
    for _ in 0..3 {
        let other = pool.get().await.unwrap();
        other.batch_execute("BEGIN; SELECT 1").await.unwrap();
        others.push(other);
    }
    let error = client
        .query_one(&statement, &[])
        .await
        .expect_err("the statement lives on another server connection");
    for other in &others {
        other.batch_execute("COMMIT").await.unwrap();
    }
    let failure = dbretry::Failure::new(error, dbretry::Phase::Operation);
    assert_eq!(failure.sqlstate(), Some("26000"), "{failure}");
    assert_eq!(failure.class(), ErrorClass::Permanent);
    let hint = failure.hint().expect("a hint");
    assert!(hint.contains("max_prepared_statements"), "{hint}");
    println!("transaction pooling: {failure} (hint: {hint})");
}

// ----- Patroni -----

/// Asserts that the pool's sessions are all on the writable leader.
async fn assert_on_leader<F, Fut>(what: &str, cluster: &PatroniCluster, checkout: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = (bool, u16)>,
{
    let leader = cluster.writable_node().await.expect("a leader");
    for _ in 0..POOL_SIZE {
        let (in_recovery, port) = checkout().await;
        assert!(!in_recovery, "{what}: a session on a read-only node");
        assert_eq!(cluster.node_of_port(port), Some(leader), "{what}");
    }
}

/// Waits until the direct pools' loads and then, once `routed` (HAProxy points at the
/// leader), the load through HAProxy have each served a request from now on.
async fn served_again(
    [deadpool, bb8, through_haproxy]: [&Running; 3],
    routed: impl std::future::Future<Output = ()>,
    budget: Duration,
) {
    let before = (
        deadpool.ok().await,
        bb8.ok().await,
        through_haproxy.ok().await,
    );
    deadpool.wait_for_more_than(before.0, budget).await;
    bb8.wait_for_more_than(before.1, budget).await;
    routed.await;
    through_haproxy.wait_for_more_than(before.2, budget).await;
}

/// What a session is connected to: is it in recovery, and the server's port.
async fn role(client: &tokio_postgres::Client) -> (bool, u16) {
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), current_setting('port')::int",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), u16::try_from(row.get::<_, i32>(1)).unwrap())
}

/// One Patroni cluster through a switchover, a failover and a crash, with dbretry's deadpool and
/// bb8 pools on a multi-host `target_session_attrs=read-write` configuration and a deadpool
/// pool through HAProxy — the CI smoke set (about half a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patroni_switchover_failover_and_crash_cost_no_checkout_error_and_leave_no_read_only_session()
 {
    let mut cluster = PatroniCluster::start().await;
    let haproxy = HaProxy::start(&cluster).await;
    let first_leader = cluster.leader().await;
    haproxy.wait_routes_to(first_leader).await;
    let budget = Duration::from_secs(20);
    let deadpool_pool = deadpool(cluster.config(), budget);
    let bb8_pool = bb8(cluster.config(), budget).await;
    let mut through_haproxy = haproxy.config();
    through_haproxy.target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
    let haproxy_pool = deadpool(through_haproxy, budget);
    let start = |pool: dbretry::deadpool::Pool<Manager>| {
        Running::start(CALLERS / 2, move || {
            let pool = pool.clone();
            async move { step!(pool) }
        })
    };
    let on_deadpool = start(deadpool_pool.clone());
    let on_haproxy = start(haproxy_pool.clone());
    let on_bb8 = Running::start(CALLERS / 2, {
        let pool = bb8_pool.clone();
        move || {
            let pool = pool.clone();
            async move { step!(pool) }
        }
    });
    for load in [&on_deadpool, &on_haproxy, &on_bb8] {
        load.wait_for_more_than(0, budget).await;
    }
    let deadpool_on_leader = async |cluster: &PatroniCluster, when: &str| {
        let checkout = || async { role(&deadpool_pool.get().await.unwrap()).await };
        assert_on_leader(&format!("deadpool after {when}"), cluster, checkout).await;
    };
    let bb8_on_leader = async |cluster: &PatroniCluster, when: &str| {
        let checkout = || async { role(&bb8_pool.get().await.unwrap()).await };
        assert_on_leader(&format!("bb8 after {when}"), cluster, checkout).await;
    };

    // Switchover: a planned move of the leader.
    let switched = Instant::now();
    let leader = cluster.switchover(None).await;
    assert_ne!(leader, first_leader);
    let routed = haproxy.wait_routes_to(leader);
    served_again([&on_deadpool, &on_bb8, &on_haproxy], routed, budget).await;
    println!(
        "switchover: every pool served again {:?} after it began",
        switched.elapsed()
    );
    deadpool_on_leader(&cluster, "the switchover").await;
    bb8_on_leader(&cluster, "the switchover").await;

    // Failover: the leader's Patroni and postmaster killed.
    let failed_over = Instant::now();
    let leader = cluster.failover().await;
    let routed = haproxy.wait_routes_to(leader);
    served_again([&on_deadpool, &on_bb8, &on_haproxy], routed, budget).await;
    println!(
        "failover: every pool served again {:?} after the kill",
        failed_over.elapsed()
    );
    deadpool_on_leader(&cluster, "the failover").await;
    bb8_on_leader(&cluster, "the failover").await;

    // Crash: the leader's postmaster killed; Patroni restarts it in place (crash recovery).
    let crashed = Instant::now();
    let leader = cluster.leader().await;
    cluster.crash_postmaster(leader);
    cluster.wait_until_healthy().await;
    println!(
        "crash: the cluster was healthy again {:?} after the kill",
        crashed.elapsed()
    );
    let routed = std::future::ready(()); // HAProxy's leader did not change
    served_again([&on_deadpool, &on_bb8, &on_haproxy], routed, budget).await;
    println!(
        "crash: every pool served again {:?} after the kill",
        crashed.elapsed()
    );
    deadpool_on_leader(&cluster, "the crash").await;

    for (what, load) in [
        ("deadpool", on_deadpool),
        ("bb8", on_bb8),
        ("deadpool via HAProxy", on_haproxy),
    ] {
        let seen = load.stop().await;
        assert_causes(what, &seen);
        // Only queries cut mid-flight: a checkout waits out the move, within its budget.
        assert!(seen.errors.is_empty(), "{what}: {:?}", &seen.errors[..1]);
        assert!(
            seen.worst_get <= budget + Duration::from_millis(500),
            "{what}"
        );
    }
}

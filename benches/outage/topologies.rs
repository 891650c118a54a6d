//! The production topologies of DESIGN §9's 2026-12 bar, the four pools side by side: (f) a
//! PgBouncer restart in front of the server, (g) a Patroni switchover under a multi-host
//! `target_session_attrs=read-write` configuration.

use std::time::{Duration, Instant};

use crate::subjects::Subject;
use crate::support::{PatroniCluster, PgBouncer, PgBouncerOptions, PgCluster};
use crate::{BUDGET, POOL_SIZE, disrupted_row, table_header};

/// How long PgBouncer stays down.
const BOUNCER_DOWN: Duration = Duration::from_millis(500);

/// (f) PgBouncer (session mode) stopped for 0.5 s and started again on the same port while 32
/// tasks loop through it; "ready" is when it accepts connections again.
pub async fn pgbouncer_restart(pg: &PgCluster) {
    println!(
        "\n## (f) PgBouncer restart: 32 tasks through PgBouncer (session mode), pool max {POOL_SIZE}, PgBouncer down {} ms\n",
        BOUNCER_DOWN.as_millis()
    );
    let mut bouncer = PgBouncer::start(pg, PgBouncerOptions::session()).await;
    table_header();
    for name in Subject::NAMES {
        let subject = Subject::by_name(name, &bouncer.config(), POOL_SIZE, BUDGET).await;
        disrupted_row(&subject, 32, Duration::from_millis(4000), async {
            bouncer.stop().await;
            tokio::time::sleep(BOUNCER_DOWN).await;
            bouncer.start_again().await;
            Instant::now()
        })
        .await;
    }
}

/// (g) A Patroni switchover (etcd + 3 nodes) while 16 tasks loop on a pool configured with
/// every node and `target_session_attrs=read-write`; "ready" is when the new leader accepts
/// a write through that configuration (the harness polls for it, so the lags below are at
/// most that poll late).
pub async fn patroni_switchover() {
    const TASKS: usize = 16;
    println!(
        "\n## (g) Patroni switchover: {TASKS} tasks, pool max {POOL_SIZE}, 3 nodes, hosts in one read-write config\n"
    );
    let cluster = PatroniCluster::start().await;
    table_header();
    for name in Subject::NAMES {
        let subject = Subject::by_name(name, &cluster.config(), POOL_SIZE, BUDGET).await;
        disrupted_row(&subject, TASKS, Duration::from_millis(7000), async {
            cluster.switchover(None).await;
            Instant::now()
        })
        .await;
    }
}

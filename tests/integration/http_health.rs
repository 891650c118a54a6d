//! The health routes served by a real axum server on a loopback port, over a real outage.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dbretry::deadpool_postgres::{Manager, Pool};
use dbretry::health::{HealthConfig, HealthRegistry};
use dbretry::http::HealthRoutes;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::NoTls;

use crate::deadpool_postgres::pool_policy;
use crate::support::{self, PgCluster};

fn pool(pg: &PgCluster) -> Pool {
    let manager = Manager::builder(pg.config(), NoTls)
        .policy(pool_policy(Duration::from_millis(500)))
        .build();
    Pool::builder(manager).max_size(2).build().unwrap()
}

async fn serve(registry: HealthRegistry, details: bool) -> SocketAddr {
    let app = HealthRoutes::new(Arc::new(registry))
        .details(details)
        .router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A plain HTTP/1.1 GET: the status code and the body parsed as JSON.
async fn get(addr: SocketAddr, path: &str) -> (u16, Value, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, json, body)
}

fn no_cache() -> HealthConfig {
    HealthConfig::default()
        .cache_for(Duration::ZERO)
        .timeout(Duration::from_secs(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_goes_200_503_200_across_a_real_outage_while_liveness_stays_200() {
    let pg = PgCluster::start().await;
    let registry = HealthRegistry::with_config(no_cache()).with("default", pool(&pg));
    let addr = serve(registry, false).await;

    let (status, body, _) = get(addr, "/api/health/database/").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["databases"]["default"]["status"], "healthy");

    pg.stop_fast().await;
    let (status, body, _) = get(addr, "/api/health/database/").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unhealthy");
    let (status, _, _) = get(addr, "/api/health/live").await;
    assert_eq!(status, 200);

    pg.start_server().await;
    let (status, body, _) = get(addr, "/api/health/database/?database=default").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["database"], "default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn details_appear_only_when_the_service_enables_them_and_never_hold_secrets() {
    let pg = PgCluster::start().await;
    let wrong = PgCluster::start().await;
    let bad_config: tokio_postgres::Config = wrong
        .url_with(support::SUPERUSER, "not-the-pw-123", support::DATABASE)
        .parse()
        .unwrap();
    let bad = Pool::builder(Manager::builder(bad_config, NoTls).build())
        .build()
        .unwrap();
    let registry = || {
        HealthRegistry::with_config(no_cache())
            .with("default", pool(&pg))
            .with("replica", bad.clone())
    };

    let hidden = serve(registry(), false).await;
    let (status, body, _) = get(hidden, "/api/health/database/?details=true").await;
    assert_eq!(status, 503);
    assert!(
        body["databases"]["default"].get("latency_ms").is_none(),
        "{body}"
    );
    assert!(body["databases"]["default"].get("pool").is_none(), "{body}");

    let shown = serve(registry(), true).await;
    let (status, body, raw) = get(shown, "/api/health/database/?details=true").await;
    assert_eq!(status, 503);
    let default = &body["databases"]["default"];
    assert!(default["latency_ms"].as_f64().is_some(), "{body}");
    assert_eq!(default["pool"]["max_size"], 2);
    let replica = &body["databases"]["replica"];
    assert_eq!(replica["status"], "unhealthy");
    assert_eq!(replica["last_error"]["code"], "28P01");
    assert_eq!(replica["last_error"]["class"], "permanent");
    for secret in [
        "not-the-pw-123",
        support::PASSWORD,
        support::SUPERUSER,
        "127.0.0.1",
        &pg.port().to_string(),
    ] {
        assert!(!raw.contains(secret), "{secret:?} leaked into {raw}");
    }
}

#[tokio::test]
async fn an_unknown_database_name_is_a_404_with_a_clear_body() {
    let registry = HealthRegistry::with_config(no_cache());
    let addr = serve(registry, false).await;
    let (status, body, _) = get(addr, "/api/health/database/?database=nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["status"], "unknown_database");
    assert_eq!(body["message"], "no database named \"nope\" is registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_within_the_cache_window_share_one_check() {
    let pg = PgCluster::start().await;
    let pool = pool(&pg);
    let diagnostics = pool.manager().diagnostics();
    let config = HealthConfig::default().cache_for(Duration::from_secs(60));
    let addr = serve(
        HealthRegistry::with_config(config).with("default", pool),
        false,
    )
    .await;
    let probes: Vec<_> = (0..20)
        .map(|_| tokio::spawn(get(addr, "/api/health/database/")))
        .collect();
    for probe in probes {
        assert_eq!(probe.await.unwrap().0, 200);
    }
    // One check connected once; the other 19 probes reused its answer.
    assert_eq!(diagnostics.connect_attempts().total(), 1);
}

//! A small web service with a retrying pool, Kubernetes health routes and a Prometheus
//! `/metrics` route. SQLite by default; PostgreSQL when `DATABASE_URL=postgres://…`.
//!
//! ```text
//! cargo run --example service --features axum      # listens on 127.0.0.1:8080
//! curl -i localhost:8080/api/health/database/?details=true
//! curl localhost:8080/api/health/live
//! curl localhost:8080/visits
//! curl localhost:8080/metrics
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use dbretry::health::HealthRegistry;
use dbretry::http::HealthRoutes;
use dbretry::{RetryConfig, RetryPolicy, deadpool_postgres, deadpool_sqlite};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

#[derive(Clone)]
enum Pool {
    Postgres(deadpool_postgres::Pool),
    Sqlite(deadpool_sqlite::Pool),
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prometheus = PrometheusBuilder::new()
        // Histograms, not summaries: Prometheus can aggregate them across replicas.
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
        )?
        .install_recorder()?;
    dbretry::metrics::describe();

    // Callers wait out an outage of up to 10 s; the pool probes at most every 250 ms.
    // DB_RETRY_* variables override these.
    let policy = RetryPolicy::builder()
        .max_attempts(u32::MAX)
        .max_delay(Duration::from_millis(250))
        .max_elapsed(Duration::from_secs(10))
        .merge(RetryConfig::from_env()?)
        .build()?;
    let (pool, registry) = match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            let manager = deadpool_postgres::Manager::builder(url.parse()?, tokio_postgres::NoTls)
                .policy(policy)
                .name("default")
                .build();
            let pool = deadpool_postgres::Pool::builder(manager)
                .max_size(8)
                .build()?;
            pool.get()
                .await?
                .batch_execute("CREATE TABLE IF NOT EXISTS visits (at timestamptz DEFAULT now())")
                .await?;
            (
                Pool::Postgres(pool.clone()),
                HealthRegistry::new().with("default", pool),
            )
        }
        _ => {
            let path = std::env::temp_dir().join("dbretry-service.sqlite3");
            let manager = deadpool_sqlite::Manager::builder(
                dbretry::sqlite::SqliteOptions::new(&path).wal(true),
            )
            .policy(policy)
            .name("default")
            .build();
            let pool = deadpool_sqlite::Pool::builder(manager)
                .max_size(4)
                .build()?;
            let conn = pool.get().await?;
            conn.interact(|c| {
                c.execute_batch(
                    "CREATE TABLE IF NOT EXISTS visits (at TEXT DEFAULT CURRENT_TIMESTAMP)",
                )
            })
            .await
            .map_err(|e| e.to_string())??;
            println!("SQLite database at {}", path.display());
            (
                Pool::Sqlite(pool.clone()),
                HealthRegistry::new().with("default", pool),
            )
        }
    };

    let health = HealthRoutes::new(Arc::new(registry)).details(true).router();
    let app = Router::new()
        .route("/visits", get(visit).with_state(pool))
        .route("/metrics", get(render_metrics).with_state(prometheus))
        .merge(health);
    let addr = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Records a visit and returns how many there were.
async fn visit(State(pool): State<Pool>) -> Result<String, (StatusCode, String)> {
    let unavailable = |e: &dyn std::fmt::Display| (StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    let count: i64 = match pool {
        Pool::Postgres(pool) => {
            let client = pool.get().await.map_err(|e| unavailable(&e))?;
            client
                .execute("INSERT INTO visits DEFAULT VALUES", &[])
                .await
                .map_err(|e| unavailable(&e))?;
            client
                .query_one("SELECT count(*) FROM visits", &[])
                .await
                .map_err(|e| unavailable(&e))?
                .get(0)
        }
        Pool::Sqlite(pool) => {
            let conn = pool.get().await.map_err(|e| unavailable(&e))?;
            conn.interact(|c| {
                c.execute("INSERT INTO visits DEFAULT VALUES", [])?;
                c.query_row("SELECT count(*) FROM visits", [], |row| row.get(0))
            })
            .await
            .map_err(|e| unavailable(&e))?
            .map_err(|e| unavailable(&e))?
        }
    };
    Ok(format!("{count} visits\n"))
}

async fn render_metrics(State(handle): State<PrometheusHandle>) -> String {
    handle.render()
}

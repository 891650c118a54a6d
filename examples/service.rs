//! A web service with a retrying pool, as a team would deploy it (see
//! `ops/kubernetes/deployment.yaml`): Kubernetes health routes, a Prometheus `/metrics` route,
//! logs through `tracing`, and a graceful shutdown. SQLite by default; PostgreSQL when
//! `DATABASE_URL=postgres://…`.
//!
//! * It starts while the database is down: readiness answers 503 and liveness 200 while the
//!   pool keeps retrying in the background, and requests are served once the database is up.
//!   Only a bad setting (a `DATABASE_URL` or `DB_RETRY_*` that does not parse, a port that
//!   cannot be bound) stops it at start-up.
//! * On SIGTERM or Ctrl-C readiness turns 503 at once; the service keeps serving for
//!   `DRAIN_DELAY_SECS` (default 5) so that load balancers see it and stop sending requests,
//!   then stops accepting connections, lets in-flight requests finish and exits 0. A second
//!   signal skips the delay; a third exits at once (status 130).
//!
//! Settings, all from the environment: `DATABASE_URL`; `LISTEN` (default `127.0.0.1:8080`);
//! `RUST_LOG` (default `info,dbretry=info`); `DRAIN_DELAY_SECS`; `DB_RETRY_*` for the retry
//! policy (callers wait out an outage of up to 10 s by default).
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
use dbretry::http::{Draining, HealthRoutes};
use dbretry::{RetryConfig, RetryPolicy, deadpool_postgres, deadpool_sqlite};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::OnceCell;
use tracing_subscriber::EnvFilter;

/// Latency buckets, in seconds, for every `_seconds` histogram.
const BUCKETS: &[f64] = &[0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// How long the service keeps serving after a shutdown signal unless `DRAIN_DELAY_SECS` says.
const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(5);
/// The pause before preparing the database again after a permanent error (a wrong password
/// does not get better by asking again at once).
const PREPARE_PAUSE: Duration = Duration::from_secs(1);

#[derive(Clone)]
enum Pool {
    Postgres(deadpool_postgres::Pool),
    Sqlite(deadpool_sqlite::Pool),
}

/// The pool and the one-time schema set-up that every request waits for.
#[derive(Clone)]
struct App {
    pool: Pool,
    schema: Arc<OnceCell<()>>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,dbretry=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours for a terminal only: log collectors store escape codes as text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();

    let prometheus = PrometheusBuilder::new()
        // Histograms, not summaries: Prometheus can aggregate them across replicas.
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)?
        .install_recorder()?;
    dbretry::metrics::describe();

    let policy = RetryPolicy::builder()
        .max_attempts(u32::MAX)
        .max_delay(Duration::from_millis(250))
        .max_elapsed(Duration::from_secs(10))
        // The example's choices give way to any DB_RETRY_* variable, even one that would
        // conflict with them (a larger initial delay than the example's max_delay).
        .as_defaults()
        .merge(RetryConfig::from_env()?)
        .build()?;
    let drain_delay = match std::env::var("DRAIN_DELAY_SECS") {
        Ok(secs) => Duration::try_from_secs_f64(secs.parse()?)
            .map_err(|e| format!("DRAIN_DELAY_SECS={secs:?}: {e}"))?,
        Err(_) => DEFAULT_DRAIN_DELAY,
    };

    // Building a pool connects nothing: the first checkout does, under the policy.
    let (pool, registry) = match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            tracing::info!(database = %dbretry::redact_url(&url), "using PostgreSQL");
            let manager = deadpool_postgres::Manager::builder(url.parse()?, tokio_postgres::NoTls)
                .policy(policy)
                .name("default")
                .build();
            let pool = deadpool_postgres::Pool::builder(manager)
                .max_size(8)
                .build()?;
            let registry = HealthRegistry::new().with("default", pool.clone());
            (Pool::Postgres(pool), registry)
        }
        _ => {
            let path = std::env::temp_dir().join("dbretry-service.sqlite3");
            tracing::info!(path = %path.display(), "using SQLite");
            let options = dbretry::sqlite::SqliteOptions::new(&path).wal(true);
            let manager = deadpool_sqlite::Manager::builder(options)
                .policy(policy)
                .name("default")
                .build();
            let pool = deadpool_sqlite::Pool::builder(manager)
                .max_size(4)
                .build()?;
            let registry = HealthRegistry::new().with("default", pool.clone());
            (Pool::Sqlite(pool), registry)
        }
    };
    let app = App {
        pool,
        schema: Arc::new(OnceCell::new()),
    };
    tokio::spawn(prepare_in_background(app.clone()));

    let draining = Draining::new();
    let health = HealthRoutes::new(Arc::new(registry))
        // Details hold classes, codes and counts, never a host, user or password.
        .details(true)
        .draining(draining.clone())
        .router();
    let router = Router::new()
        .route("/visits", get(visit).with_state(app))
        .route("/metrics", get(render_metrics).with_state(prometheus))
        .merge(health);
    let addr = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_requested(draining, drain_delay))
        .await?;
    tracing::info!("every in-flight request finished; exiting");
    Ok(())
}

/// Connects and creates the schema as soon as the database lets us, so that the first
/// request does not pay for it; requests that come first do it themselves.
async fn prepare_in_background(app: App) {
    loop {
        match app.prepared().await {
            Ok(()) => {
                tracing::info!("database ready");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "database not ready yet; trying again");
                tokio::time::sleep(PREPARE_PAUSE).await;
            }
        }
    }
}

impl App {
    /// Creates the table once; later calls return at once.
    async fn prepared(&self) -> Result<(), BoxError> {
        self.schema
            .get_or_try_init(|| async {
                match &self.pool {
                    Pool::Postgres(pool) => {
                        pool.get()
                            .await?
                            .batch_execute(
                                "CREATE TABLE IF NOT EXISTS visits (at timestamptz DEFAULT now())",
                            )
                            .await?
                    }
                    Pool::Sqlite(pool) => pool
                        .get()
                        .await?
                        .interact(|c| {
                            c.execute_batch(
                                "CREATE TABLE IF NOT EXISTS visits (at TEXT DEFAULT CURRENT_TIMESTAMP)",
                            )
                        })
                        .await
                        .map_err(|e| e.to_string())??,
                }
                Ok::<_, BoxError>(())
            })
            .await
            .map(|_| ())
    }
}

/// Records a visit and returns how many there were.
async fn visit(State(app): State<App>) -> Result<String, (StatusCode, String)> {
    let unavailable = |e: &dyn std::fmt::Display| (StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    app.prepared().await.map_err(|e| unavailable(&e))?;
    let count: i64 = match &app.pool {
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

/// Resolves when the server should stop accepting connections: `delay` after the first
/// SIGTERM or Ctrl-C (readiness is 503 from that signal on), or at a second signal. A third
/// signal, while in-flight requests drain, exits at once.
async fn shutdown_requested(draining: Draining, delay: Duration) {
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(error) => {
            tracing::error!(%error, "cannot listen for shutdown signals; stop with SIGKILL");
            return std::future::pending().await;
        }
    };
    let signal = signals.next().await;
    draining.start();
    tracing::info!(
        signal,
        delay_secs = delay.as_secs_f64(),
        "shutting down: readiness is now 503; serving on until the delay ends (signal again to skip it)"
    );
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        signal = signals.next() => tracing::info!(signal, "skipping the rest of the delay"),
    }
    tracing::info!("no longer accepting connections; waiting for in-flight requests");
    tokio::spawn(async move {
        let signal = signals.next().await;
        tracing::warn!(signal, "exiting without waiting for in-flight requests");
        std::process::exit(130);
    });
}

/// SIGTERM (what Kubernetes sends) and SIGINT (Ctrl-C), as one stream.
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    #[cfg(not(unix))]
    fn new() -> std::io::Result<Self> {
        Ok(Self {})
    }

    /// The name of the next signal received.
    #[cfg(unix)]
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

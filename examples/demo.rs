//! The main job in one run: a pool built through dbretry rides out a real transient failure,
//! the retries are shown as they happen, then the health status (JSON) and the retry
//! counters (Prometheus text) are printed.
//!
//! ```text
//! cargo run --example demo                                    # embedded SQLite, nothing to set up
//! DATABASE_URL=postgres://user:pw@host/db cargo run --example demo   # a real PostgreSQL
//! ```
//!
//! On SQLite, another connection holds an exclusive lock for 600 ms while the pool opens its
//! first connection (which switches the database to WAL) and while a write runs. On
//! PostgreSQL, the pool connects through a local port that only starts forwarding to the
//! server after 600 ms — a database that is "not up yet".

use std::time::{Duration, Instant};

use dbretry::health::check_detailed;
use dbretry::sqlite::SqliteOptions;
use dbretry::{Retrier, RetryConfig, RetryEvent, RetryPolicy, deadpool_postgres, deadpool_sqlite};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use rusqlite::Connection;

const OUTAGE: Duration = Duration::from_millis(600);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prometheus = PrometheusBuilder::new()
        // Histograms, not summaries: Prometheus can aggregate them across replicas.
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
        )?
        .install_recorder()?;
    // Short steps so the demo is quick; DB_RETRY_* variables override any of this.
    let policy = RetryPolicy::builder()
        .max_attempts(20)
        .initial_delay(Duration::from_millis(50))
        .max_delay(Duration::from_millis(400))
        .max_elapsed(Duration::from_secs(10))
        // The example's choices give way to any DB_RETRY_* variable, even one that would
        // conflict with them (a larger initial delay than the example's max_delay).
        .as_defaults()
        .merge(RetryConfig::from_env()?)
        .build()?;
    println!("retry policy: {policy:?}\n");

    let report = match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => postgres(&url, policy).await?,
        _ => sqlite(policy).await?,
    };

    println!("\nhealth (GET /api/health/database/?details=true would say the same):");
    println!("{}", serde_json::to_string_pretty(&report)?);
    println!("\nretry counters (what Prometheus scrapes):");
    for line in prometheus.render().lines() {
        if line.starts_with("dbretry_") && !line.contains("_bucket") && !line.contains("quantile") {
            println!("  {line}");
        }
    }
    Ok(())
}

fn show_retry(event: &RetryEvent<'_>) {
    println!(
        "  attempt {} failed ({}): {} — retrying in {} ms",
        event.attempt,
        event.class.as_str(),
        dbretry::ErrorChain(event.error),
        event.delay.as_millis()
    );
}

async fn sqlite(
    policy: RetryPolicy,
) -> Result<dbretry::health::HealthReport, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("demo.sqlite3");
    Connection::open(&path)?.execute_batch("CREATE TABLE visits (at TEXT NOT NULL)")?;

    println!("1. another connection locks the database; the pool opens its first connection");
    let lock = hold_exclusive_lock(&path)?;
    let options = SqliteOptions::new(&path)
        .wal(true)
        .busy_timeout(Duration::from_millis(50));
    let retrier = Retrier::new(policy.clone())
        .name("demo")
        .on_retry(show_retry);
    let manager = deadpool_sqlite::Manager::builder(options)
        .retrier(retrier)
        .build();
    let pool = deadpool_sqlite::Pool::builder(manager)
        .max_size(4)
        .build()?;
    let started = Instant::now();
    let conn = pool.get().await?;
    println!("  connected after {:.0?}", started.elapsed());
    lock.join().expect("lock holder")?;

    println!("2. the lock is taken again; a write transaction is retried until it is released");
    let lock = hold_exclusive_lock(&path)?;
    let started = Instant::now();
    let writes = Retrier::new(policy)
        .name("demo-writes")
        .on_retry(show_retry);
    let visits: i64 = writes
        .run(|| async {
            conn.interact(|c| {
                let tx = c.transaction()?;
                tx.execute("INSERT INTO visits (at) VALUES (datetime('now'))", [])?;
                let visits = tx.query_row("SELECT count(*) FROM visits", [], |r| r.get(0))?;
                tx.commit()?;
                Ok::<i64, rusqlite::Error>(visits)
            })
            .await
            .expect("the closure does not panic")
        })
        .await?;
    println!(
        "  written after {:.0?}: {visits} visit(s)",
        started.elapsed()
    );
    lock.join().expect("lock holder")?;
    drop(conn);
    Ok(check_detailed(&pool, Duration::from_secs(2)).await)
}

/// Another connection takes an exclusive lock now and releases it after [`OUTAGE`].
fn hold_exclusive_lock(
    path: &std::path::Path,
) -> rusqlite::Result<std::thread::JoinHandle<rusqlite::Result<()>>> {
    let locker = Connection::open(path)?;
    locker.execute_batch("BEGIN EXCLUSIVE")?;
    Ok(std::thread::spawn(move || {
        std::thread::sleep(OUTAGE);
        locker.execute_batch("COMMIT")
    }))
}

async fn postgres(
    url: &str,
    policy: RetryPolicy,
) -> Result<dbretry::health::HealthReport, Box<dyn std::error::Error>> {
    let config: tokio_postgres::Config = url.parse()?;
    let (host, port) = first_tcp_host(&config).ok_or("DATABASE_URL needs a TCP host")?;
    println!(
        "1. the database is \"not up yet\": a local port forwards to it only after {OUTAGE:?}"
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let local = listener.local_addr()?;
    drop(listener);
    tokio::spawn(forward_after(OUTAGE, local, (host, port)));
    let config = via_local_port(&config, local.port());

    let retrier = Retrier::new(policy).name("demo").on_retry(show_retry);
    let manager = deadpool_postgres::Manager::builder(config, tokio_postgres::NoTls)
        .retrier(retrier)
        .build();
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(4)
        .build()?;
    let started = Instant::now();
    let client = pool.get().await?;
    let row = client.query_one("SELECT 1 + 1", &[]).await?;
    println!(
        "  connected after {:.0?}; SELECT 1 + 1 = {}",
        started.elapsed(),
        row.get::<_, i32>(0)
    );
    drop(client);
    Ok(check_detailed(&pool, Duration::from_secs(2)).await)
}

/// The same user, password and database, reached at 127.0.0.1:`port`.
fn via_local_port(config: &tokio_postgres::Config, port: u16) -> tokio_postgres::Config {
    let mut local = tokio_postgres::Config::new();
    local.host("127.0.0.1").port(port);
    if let Some(user) = config.get_user() {
        local.user(user);
    }
    if let Some(password) = config.get_password() {
        local.password(password);
    }
    if let Some(dbname) = config.get_dbname() {
        local.dbname(dbname);
    }
    local
}

fn first_tcp_host(config: &tokio_postgres::Config) -> Option<(String, u16)> {
    let host = config.get_hosts().iter().find_map(|host| match host {
        tokio_postgres::config::Host::Tcp(name) => Some(name.clone()),
        _ => None,
    })?;
    Some((host, config.get_ports().first().copied().unwrap_or(5432)))
}

/// Listens on `local` after `delay`, forwarding every connection to `upstream`.
async fn forward_after(delay: Duration, local: std::net::SocketAddr, upstream: (String, u16)) {
    tokio::time::sleep(delay).await;
    let Ok(listener) = tokio::net::TcpListener::bind(local).await else {
        return;
    };
    while let Ok((mut inbound, _)) = listener.accept().await {
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

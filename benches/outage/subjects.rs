//! The four pools under test, behind one interface, each counting its connect attempts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{ConfigConnectImpl, ManagerConfig, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::{Config, NoTls};

use crate::counting::{Counting, CountingConnect};

/// What one get + `SELECT 1` came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    GetError,
    QueryError,
}

#[derive(Clone)]
pub struct Subject {
    pub name: String,
    pool: Pool,
}

#[derive(Clone)]
enum Pool {
    PlainDeadpool(deadpool_postgres::Pool, Arc<AtomicU64>),
    PlainBb8(
        bb8::Pool<Counting<bb8_postgres::PostgresConnectionManager<NoTls>>>,
        Arc<AtomicU64>,
    ),
    OursDeadpool(dbretry::deadpool_postgres::Pool),
    OursBb8(dbretry::bb8::Pool<dbretry::bb8_postgres::PostgresConnectionManager<NoTls>>),
}

impl Subject {
    pub const NAMES: [&'static str; 4] = [
        "deadpool-postgres",
        "bb8-postgres",
        "dbretry deadpool",
        "dbretry bb8",
    ];

    /// deadpool recycling variants for the steady-state comparison: dbretry's default (Fast
    /// plus a ping after 500 ms idle) against Fast alone and Verified, ours and the plain one.
    pub const RECYCLING: [&'static str; 4] = [
        "deadpool-postgres",
        "dbretry deadpool",
        "dbretry deadpool (Fast, no idle ping)",
        "dbretry deadpool (Verified)",
    ];

    pub async fn all(config: &Config, size: usize, budget: Duration) -> Vec<Subject> {
        let mut all = Vec::new();
        for name in Self::NAMES {
            all.push(Self::by_name(name, config, size, budget).await);
        }
        all
    }

    pub async fn by_name(name: &str, config: &Config, size: usize, budget: Duration) -> Subject {
        let timeouts = Timeouts {
            wait: Some(budget),
            create: Some(budget),
            recycle: Some(budget),
        };
        let pool = match name {
            "deadpool-postgres" => {
                let attempts = Arc::new(AtomicU64::new(0));
                let connect = CountingConnect {
                    inner: ConfigConnectImpl { tls: NoTls },
                    attempts: attempts.clone(),
                };
                let manager = deadpool_postgres::Manager::from_connect(
                    config.clone(),
                    connect,
                    ManagerConfig {
                        recycling_method: RecyclingMethod::Fast,
                    },
                );
                let pool = deadpool_postgres::Pool::builder(manager)
                    .max_size(size)
                    .timeouts(timeouts)
                    .runtime(Runtime::Tokio1)
                    .build()
                    .unwrap();
                Pool::PlainDeadpool(pool, attempts)
            }
            "bb8-postgres" => {
                let attempts = Arc::new(AtomicU64::new(0));
                let manager = Counting {
                    inner: bb8_postgres::PostgresConnectionManager::new(config.clone(), NoTls),
                    attempts: attempts.clone(),
                };
                let pool = bb8::Pool::builder()
                    .max_size(size as u32)
                    .connection_timeout(budget)
                    .build_unchecked(manager);
                Pool::PlainBb8(pool, attempts)
            }
            "dbretry deadpool"
            | "dbretry deadpool (Fast, no idle ping)"
            | "dbretry deadpool (Verified)" => {
                let (method, after_idle) = match name {
                    "dbretry deadpool" => (
                        RecyclingMethod::Fast,
                        dbretry::CheckSettings::default().after_idle,
                    ),
                    "dbretry deadpool (Verified)" => (RecyclingMethod::Verified, None),
                    _ => (RecyclingMethod::Fast, None),
                };
                let manager = dbretry::deadpool_postgres::Manager::builder(config.clone(), NoTls)
                    .policy(policy(budget))
                    .recycling_method(method)
                    .checks(dbretry::CheckSettings::default().after_idle(after_idle))
                    .build();
                let pool = dbretry::deadpool_postgres::Pool::builder(manager)
                    .max_size(size)
                    .timeouts(timeouts)
                    .runtime(Runtime::Tokio1)
                    .build()
                    .unwrap();
                Pool::OursDeadpool(pool)
            }
            "dbretry bb8" => {
                let manager = dbretry::bb8_postgres::PostgresConnectionManager::builder(
                    config.clone(),
                    NoTls,
                )
                .policy(policy(budget))
                .build();
                let builder = bb8::Pool::builder().max_size(size as u32);
                Pool::OursBb8(dbretry::bb8::Pool::new(builder, manager).await.unwrap())
            }
            other => panic!("unknown pool {other}"),
        };
        Subject {
            name: name.to_owned(),
            pool,
        }
    }

    /// One `get()` and `SELECT 1`; the time `get()` took.
    pub async fn get_and_select(&self) -> (Outcome, Duration) {
        let started = Instant::now();
        match &self.pool {
            Pool::PlainDeadpool(pool, _) => match pool.get().await {
                Ok(client) => (query(&client).await, started.elapsed()),
                Err(_) => (Outcome::GetError, started.elapsed()),
            },
            Pool::OursDeadpool(pool) => match pool.get().await {
                Ok(client) => (query(&client).await, started.elapsed()),
                Err(_) => (Outcome::GetError, started.elapsed()),
            },
            Pool::PlainBb8(pool, _) => match pool.get().await {
                Ok(client) => {
                    let took = started.elapsed();
                    (query(&client).await, took)
                }
                Err(_) => (Outcome::GetError, started.elapsed()),
            },
            Pool::OursBb8(pool) => match pool.get().await {
                Ok(client) => {
                    let took = started.elapsed();
                    (query(&client).await, took)
                }
                Err(_) => (Outcome::GetError, started.elapsed()),
            },
        }
    }

    /// The error text a caller of one `get()` sees.
    pub async fn get_error_text(&self) -> String {
        match &self.pool {
            Pool::PlainDeadpool(pool, _) => pool.get().await.err().map(|e| format!("{e:?}")),
            Pool::OursDeadpool(pool) => pool.get().await.err().map(|e| e.to_string()),
            Pool::PlainBb8(pool, _) => pool.get().await.err().map(|e| format!("{e:?}")),
            Pool::OursBb8(pool) => pool.get().await.err().map(|e| e.to_string()),
        }
        .unwrap_or_else(|| "no error".to_owned())
    }

    /// Connect attempts the pool made so far.
    pub fn connect_attempts(&self) -> u64 {
        match &self.pool {
            Pool::PlainDeadpool(_, attempts) => attempts.load(Ordering::Relaxed),
            Pool::PlainBb8(_, attempts) => attempts.load(Ordering::Relaxed),
            Pool::OursDeadpool(pool) => pool.manager().diagnostics().connect_attempts().total(),
            Pool::OursBb8(pool) => pool.diagnostics().connect_attempts().total(),
        }
    }

    /// Opens every connection of the pool, so steady-state runs measure checkout, not connects.
    pub async fn warm_up(&self) {
        let mut held = Vec::new();
        for _ in 0..10 {
            held.push(self.get_and_select());
        }
        futures_util::future::join_all(held).await;
    }
}

async fn query(client: &tokio_postgres::Client) -> Outcome {
    match client.simple_query("SELECT 1").await {
        Ok(_) => Outcome::Ok,
        Err(_) => Outcome::QueryError,
    }
}

/// Retries bounded by the budget; while the database is down the pool probes at least every
/// 140 ms (the cap bounds how late recovery is noticed; the outage length divided by it bounds
/// the attempts).
fn policy(budget: Duration) -> dbretry::RetryPolicy {
    dbretry::RetryPolicy::builder()
        .max_attempts(u32::MAX)
        .initial_delay(Duration::from_millis(50))
        .max_delay(Duration::from_millis(140))
        .max_elapsed(budget)
        .build()
        .unwrap()
}

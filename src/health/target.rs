use std::future::Future;
use std::pin::Pin;

use super::PoolOccupancy;
use crate::error::ErrorKind;
use crate::{Diagnostics, Error};

/// The future of [`HealthTarget::ping`].
pub type PingFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

/// Something a health check can ping: dbretry's pools implement it.
pub trait HealthTarget: Send + Sync {
    /// Takes a connection and runs `SELECT 1`.
    fn ping(&self) -> PingFuture<'_>;

    /// Pool occupancy, if the pool reports it.
    fn occupancy(&self) -> Option<PoolOccupancy>;

    /// The manager's connection history, if it keeps one.
    fn diagnostics(&self) -> Option<Diagnostics>;

    /// The pool's name (its metrics' `pool` label).
    fn pool_name(&self) -> &str;
}

/// A failed query of the ping, as an [`Error`].
#[cfg_attr(not(pools), allow(dead_code))]
fn query_failed<E: crate::OperationError>(error: E) -> Error {
    let failure = crate::retry::Failure::new(error, crate::Phase::Operation);
    Error::new(
        ErrorKind::Query,
        1,
        std::time::Duration::ZERO,
        Some(failure.class),
        Some(failure.cause),
    )
}

#[cfg(all(pools, feature = "deadpool"))]
fn deadpool_error(error: deadpool::managed::PoolError<Error>) -> Error {
    match error {
        deadpool::managed::PoolError::Backend(error) => error,
        other => query_failed(Box::<dyn std::error::Error + Send + Sync>::from(
            other.to_string(),
        )),
    }
}

#[cfg(all(pools, feature = "deadpool"))]
fn deadpool_occupancy(status: deadpool::Status) -> PoolOccupancy {
    PoolOccupancy {
        size: status.size,
        idle: status.available,
        waiters: status.waiting,
        max_size: status.max_size,
    }
}

#[cfg(all(feature = "postgres", feature = "deadpool"))]
impl HealthTarget for crate::deadpool_postgres::Pool {
    fn ping(&self) -> PingFuture<'_> {
        Box::pin(async move {
            let client = self.get().await.map_err(deadpool_error)?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(query_failed)?;
            Ok(())
        })
    }

    fn occupancy(&self) -> Option<PoolOccupancy> {
        Some(deadpool_occupancy(self.status()))
    }

    fn diagnostics(&self) -> Option<Diagnostics> {
        Some(self.manager().diagnostics())
    }

    fn pool_name(&self) -> &str {
        self.manager().name()
    }
}

#[cfg(all(feature = "sqlite", feature = "deadpool"))]
impl HealthTarget for crate::deadpool_sqlite::Pool {
    fn ping(&self) -> PingFuture<'_> {
        Box::pin(async move {
            let conn = self.get().await.map_err(deadpool_error)?;
            let pinged = conn.interact(crate::sqlite::reset_and_ping).await;
            pinged
                .map_err(|e| {
                    query_failed(Box::<dyn std::error::Error + Send + Sync>::from(
                        e.to_string(),
                    ))
                })?
                .map_err(query_failed)
        })
    }

    fn occupancy(&self) -> Option<PoolOccupancy> {
        Some(deadpool_occupancy(self.status()))
    }

    fn diagnostics(&self) -> Option<Diagnostics> {
        Some(self.manager().diagnostics())
    }

    fn pool_name(&self) -> &str {
        self.manager().name()
    }
}

#[cfg(all(pools, feature = "bb8"))]
fn bb8_occupancy<M: bb8::ManageConnection>(pool: &bb8::Pool<M>) -> PoolOccupancy {
    let state = pool.state();
    PoolOccupancy {
        size: state.connections as usize,
        idle: state.idle_connections as usize,
        waiters: 0,
        max_size: pool.config().max_size as usize,
    }
}

#[cfg(all(feature = "postgres", feature = "bb8"))]
impl<Tls: crate::postgres::MakeTls> HealthTarget
    for crate::bb8::Pool<crate::bb8_postgres::PostgresConnectionManager<Tls>>
{
    fn ping(&self) -> PingFuture<'_> {
        Box::pin(async move {
            let client = self.get().await?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(query_failed)?;
            Ok(())
        })
    }

    fn occupancy(&self) -> Option<PoolOccupancy> {
        Some(bb8_occupancy(self.inner()))
    }

    fn diagnostics(&self) -> Option<Diagnostics> {
        Some(crate::bb8::Pool::diagnostics(self).clone())
    }

    fn pool_name(&self) -> &str {
        crate::bb8::Pool::diagnostics(self).0.name()
    }
}

#[cfg(all(feature = "sqlite", feature = "bb8"))]
impl HealthTarget for crate::bb8::Pool<crate::bb8_sqlite::SqliteConnectionManager> {
    fn ping(&self) -> PingFuture<'_> {
        Box::pin(async move {
            let conn = self.get().await?;
            let pinged = conn.interact(crate::sqlite::reset_and_ping).await;
            pinged.map_err(query_failed)?.map_err(query_failed)
        })
    }

    fn occupancy(&self) -> Option<PoolOccupancy> {
        Some(bb8_occupancy(self.inner()))
    }

    fn diagnostics(&self) -> Option<Diagnostics> {
        Some(crate::bb8::Pool::diagnostics(self).clone())
    }

    fn pool_name(&self) -> &str {
        crate::bb8::Pool::diagnostics(self).0.name()
    }
}

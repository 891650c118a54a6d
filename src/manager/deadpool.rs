//! The deadpool adapter: [`RetryingManager`] as a `deadpool::managed::Manager`, and its pools as
//! health-check targets.

use deadpool::managed::{self, Metrics, PoolError, RecycleError, RecycleResult};
use tokio::time::Instant;

use super::{Backend, PoolShared, RetryingManager};
use crate::Error;
use crate::error::ErrorKind;
use crate::events::Diagnostics;
use crate::health::{HealthTarget, PingFuture, PoolOccupancy};

impl<B: Backend> managed::Manager for RetryingManager<B> {
    type Type = B::Connection;
    type Error = Error;

    async fn create(&self) -> Result<B::Connection, Error> {
        // Boxed: the connect future is large, and deadpool embeds `create` in every `get()`
        // future, so unboxed it would slow down every checkout, not just the rare create.
        Box::pin(self.open()).await
    }

    async fn recycle(
        &self,
        connection: &mut B::Connection,
        metrics: &Metrics,
    ) -> RecycleResult<Error> {
        let shared = &self.shared.0;
        let last_alive = Instant::from_std(metrics.recycled.unwrap_or(metrics.created));
        if self.backend.is_broken(connection) {
            shared.events.recycle_failed(&"connection closed");
            shared.connection_lost(last_alive);
            return Err(RecycleError::message("connection closed"));
        }
        if let Some(check) = self.backend.recycle_check(connection) {
            let checked =
                Box::pin(shared.check(Instant::now(), Some(last_alive), None, || check)).await;
            return checked.map_err(RecycleError::Backend);
        }
        let Some(window) = shared.checks.after_idle else {
            return Ok(());
        };
        // Idle past the window: one clock read, compared without computing the idle time.
        // (`metrics` read again rather than kept from above: keeping it cost ~50 instructions
        // per checkout in `--bench checkout_instructions`.)
        let idle = (metrics.recycled.unwrap_or(metrics.created))
            .checked_add(window)
            .is_none_or(|until| std::time::Instant::now() > until);
        if idle && shared.silent_peers.suspects(last_alive) {
            const WHY: &str = "idle while another connection's peer went silent";
            shared.events.recycle_failed(&WHY);
            return Err(RecycleError::message(WHY));
        }
        if idle || shared.losses.since(last_alive) {
            let check = shared.check(Instant::now(), Some(last_alive), None, || {
                B::ping(connection)
            });
            let checked = Box::pin(check).await;
            return checked.map_err(RecycleError::Backend);
        }
        Ok(())
    }

    fn detach(&self, connection: &mut B::Connection) {
        self.backend.detached(connection);
    }
}

/// A deadpool error as this crate's error: the manager's own error as it is, deadpool's
/// time-outs and closed pool with the last connect failure as their cause.
pub(crate) fn from_pool_error(error: PoolError<Error>, pool: &PoolShared) -> Error {
    match error {
        PoolError::Backend(error) => error,
        PoolError::Timeout(_) => Error::new(
            ErrorKind::Timeout,
            0,
            std::time::Duration::ZERO,
            pool.events.last_connect_failure(),
        ),
        other => Error::new(
            ErrorKind::Connection,
            0,
            std::time::Duration::ZERO,
            Some(crate::Failure::new(
                Box::<dyn std::error::Error + Send + Sync>::from(other.to_string()),
                crate::Phase::Connect,
            )),
        ),
    }
}

impl<B: Backend> HealthTarget for managed::Pool<RetryingManager<B>> {
    fn ping(&self) -> PingFuture<'_> {
        Box::pin(async move {
            let mut connection = self
                .get()
                .await
                .map_err(|e| from_pool_error(e, &self.manager().shared.0))?;
            self.manager().ping(&mut connection).await
        })
    }

    fn occupancy(&self) -> Option<PoolOccupancy> {
        let status = self.status();
        Some(PoolOccupancy {
            size: status.size,
            idle: status.available,
            waiters: status.waiting,
            max_size: status.max_size,
        })
    }

    fn diagnostics(&self) -> Option<Diagnostics> {
        Some(self.manager().diagnostics())
    }

    fn pool_name(&self) -> &str {
        self.manager().name()
    }
}

impl<B: Backend> HealthTarget for crate::deadpool::Pool<RetryingManager<B>> {
    fn ping(&self) -> PingFuture<'_> {
        Box::pin(async move {
            let mut connection = self.get().await?;
            self.inner().manager().ping(&mut connection).await
        })
    }

    fn occupancy(&self) -> Option<PoolOccupancy> {
        self.inner().occupancy()
    }

    fn diagnostics(&self) -> Option<Diagnostics> {
        Some(self.inner().manager().diagnostics())
    }

    fn pool_name(&self) -> &str {
        self.inner().manager().name()
    }
}

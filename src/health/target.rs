use std::future::Future;
use std::pin::Pin;

use super::PoolOccupancy;
use crate::{Diagnostics, Error};

/// The future of [`HealthTarget::ping`].
pub type PingFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

/// Something a health check can ping. dbretry's pools implement it (deadpool pools of its
/// managers and [`dbretry::bb8::Pool`](crate)s); implement it for anything else you want
/// checked the same way.
pub trait HealthTarget: Send + Sync {
    /// Takes a connection and proves it works with a round trip.
    fn ping(&self) -> PingFuture<'_>;

    /// Pool occupancy, if the pool reports it.
    fn occupancy(&self) -> Option<PoolOccupancy>;

    /// The manager's connection history, if it keeps one.
    fn diagnostics(&self) -> Option<Diagnostics>;

    /// The pool's name (its metrics' `pool` label).
    fn pool_name(&self) -> &str;
}

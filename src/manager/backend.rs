//! The backend-specific part of a pool manager: how to open one connection, tell a broken one
//! cheaply, and prove one works with a round trip.

use std::future::Future;
use std::sync::Arc;

use tokio::time::Instant;

use super::PoolShared;
use crate::classify::OperationError;

/// How one kind of connection is opened and checked: implemented by this crate's backends
/// (PostgreSQL and SQLite, each for deadpool and for bb8), and sealed. A
/// [`RetryingManager`](super::RetryingManager) adds the retry policy, the pool's gate and
/// diagnostics around it.
pub trait Backend: sealed::Sealed + Send + Sync + 'static {
    /// The pooled connection.
    type Connection: Send + 'static;
    /// What opening or checking a connection fails with.
    type Error: OperationError;

    /// Opens one connection, once (the manager retries). A backend that runs a task per
    /// connection reports that task's end through `pool`.
    fn connect(
        &self,
        pool: &PoolContext,
    ) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send;

    /// Whether the connection is certainly unusable, without a round trip (closed, poisoned).
    fn is_broken(&self, connection: &mut Self::Connection) -> bool;

    /// The round trip that proves a connection works: the health check's ping and bb8's
    /// `is_valid`.
    fn ping(
        connection: &mut Self::Connection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The check deadpool runs before handing an idle connection out again, if this backend's
    /// recycling asks for one (deadpool-postgres's `Fast` does not).
    fn recycle_check(
        &self,
        connection: &mut Self::Connection,
    ) -> Option<impl Future<Output = Result<(), Self::Error>> + Send>;

    /// Called with every new connection.
    fn created(&self, _connection: &Self::Connection) {}

    /// Called when deadpool detaches a connection from the pool.
    fn detached(&self, _connection: &mut Self::Connection) {}
}

/// What a backend is given to report a connection's life to its pool (the end of a
/// connection's background task, with its error). Opaque.
#[derive(Clone, Debug)]
pub struct PoolContext(pub(crate) Arc<PoolShared>);

impl PoolContext {
    /// A live connection ended with an error: recorded, and the pool checks the database
    /// before reconnecting in bulk (unless the error was a permanent one: the server is up).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn connection_ended_with<E: OperationError>(&self, error: E) {
        let failure = self.0.events.connection_closed_with(error);
        if failure.class().is_transient() {
            self.0.connection_lost(Instant::now());
        }
    }
}

pub(crate) mod sealed {
    /// Only this crate's backends are [`Backend`](super::Backend)s.
    pub trait Sealed {}
}

//! The plain pools' connectors, counting their connect attempts: the scenario benches report
//! how hard each pool pushes on a database that is down.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use deadpool_postgres::{ConfigConnectImpl, Connect};
use tokio_postgres::{Config, NoTls};

/// deadpool-postgres's own connector, counting.
pub struct CountingConnect {
    pub inner: ConfigConnectImpl<NoTls>,
    pub attempts: Arc<AtomicU64>,
}

type ConnectResult =
    Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>;

impl Connect for CountingConnect {
    fn connect(&self, config: &Config) -> Pin<Box<dyn Future<Output = ConnectResult> + Send + '_>> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        self.inner.connect(config)
    }
}

/// A bb8 manager, counting its connects.
pub struct Counting<M> {
    pub inner: M,
    pub attempts: Arc<AtomicU64>,
}

impl<M: bb8::ManageConnection> bb8::ManageConnection for Counting<M> {
    type Connection = M::Connection;
    type Error = M::Error;

    async fn connect(&self) -> Result<M::Connection, M::Error> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        self.inner.connect().await
    }

    async fn is_valid(&self, conn: &mut M::Connection) -> Result<(), M::Error> {
        self.inner.is_valid(conn).await
    }

    fn has_broken(&self, conn: &mut M::Connection) -> bool {
        self.inner.has_broken(conn)
    }
}

//! Opening one PostgreSQL connection: the TLS bounds, and the task that drives the connection,
//! whose terminal error is reported to the pool instead of lost.

use std::future::Future;
use std::pin::Pin;

use tokio::task::JoinHandle;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, Socket};

use crate::manager::PoolContext;

/// A TLS connector usable from spawned tasks: `tokio_postgres::NoTls`, the rustls connector of
/// the `tls-rustls` feature, `postgres-native-tls`'s, … — any `MakeTlsConnect` with the bounds
/// bb8-postgres asks for, in one name.
pub trait MakeTls:
    MakeTlsConnect<Socket, Stream: Send + Sync, TlsConnect: Send + TlsConnect<Socket, Future: Send>>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> MakeTls for T
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
}

pub(crate) type ConnectFuture<'a> = Pin<
    Box<dyn Future<Output = Result<(Client, JoinHandle<()>), tokio_postgres::Error>> + Send + 'a>,
>;

/// Connects once with `config` and `tls`, and spawns the connection's task; an error that
/// ends the connection later goes to `pool`.
pub(crate) async fn connect_with<T: MakeTls>(
    config: &Config,
    tls: T,
    pool: &PoolContext,
) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error> {
    let (client, connection) = config.connect(tls).await?;
    let pool = pool.clone();
    let task = tokio::spawn(async move {
        if let Err(error) = connection.await {
            pool.connection_ended_with(error);
        }
    });
    Ok((client, task))
}

/// A TLS connector with its type erased, so that deadpool's manager need not be generic.
pub(crate) trait ErasedTls: Send + Sync {
    fn connect<'a>(&'a self, config: &'a Config, pool: &'a PoolContext) -> ConnectFuture<'a>;
}

impl<T: MakeTls> ErasedTls for T {
    fn connect<'a>(&'a self, config: &'a Config, pool: &'a PoolContext) -> ConnectFuture<'a> {
        Box::pin(connect_with(config, self.clone(), pool))
    }
}

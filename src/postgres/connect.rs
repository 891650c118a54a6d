//! Opening one PostgreSQL connection: the tokio-postgres config, a TLS connector (type-erased so
//! managers need not be generic over it), and the task that drives the connection, whose
//! terminal error is logged and recorded instead of lost.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, Socket};

use crate::events::PoolEvents;
use crate::reconnect::ConnectOnce;

type ConnectFuture<'a> = Pin<
    Box<dyn Future<Output = Result<(Client, JoinHandle<()>), tokio_postgres::Error>> + Send + 'a>,
>;

/// A TLS connector usable from spawned tasks: `tokio_postgres::NoTls`, the rustls connector of
/// the `tls-rustls` feature, `postgres-native-tls`'s, … — any `MakeTlsConnect` whose parts are
/// `Send + Sync` (the bounds tokio-postgres's own pools ask for, in one name).
pub trait MakeTls:
    MakeTlsConnect<
        Socket,
        Stream: Send + Sync + 'static,
        TlsConnect: Send + Sync + TlsConnect<Socket, Future: Send>,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> MakeTls for T
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync + 'static,
    T::TlsConnect: Send + Sync,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
}

trait ErasedConnect: Send + Sync {
    fn connect<'a>(&'a self, config: &'a Config, events: Arc<PoolEvents>) -> ConnectFuture<'a>;
}

struct WithTls<T>(T);

impl<T: MakeTls> ErasedConnect for WithTls<T> {
    fn connect<'a>(&'a self, config: &'a Config, events: Arc<PoolEvents>) -> ConnectFuture<'a> {
        let tls = self.0.clone();
        Box::pin(async move {
            let (client, connection) = config.connect(tls).await?;
            let task = tokio::spawn(async move {
                if let Err(error) = connection.await {
                    events.connection_closed_with(error);
                }
            });
            Ok((client, task))
        })
    }
}

/// Opens PostgreSQL connections for one pool.
pub(crate) struct PgConnector {
    config: Config,
    tls: Box<dyn ErasedConnect>,
    events: Arc<PoolEvents>,
}

impl PgConnector {
    pub(crate) fn new<T: MakeTls>(config: Config, tls: T, events: Arc<PoolEvents>) -> Self {
        Self {
            config,
            tls: Box::new(WithTls(tls)),
            events,
        }
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }
}

impl ConnectOnce for PgConnector {
    type Connection = (Client, JoinHandle<()>);
    type Error = tokio_postgres::Error;

    fn connect_once(&self) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send {
        self.tls.connect(&self.config, self.events.clone())
    }
}

impl fmt::Debug for PgConnector {
    /// tokio-postgres's `Config` redacts the password in its `Debug`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

//! Opening one PostgreSQL connection: the TLS bounds, and the task that drives the connection,
//! whose terminal error is reported to the pool instead of lost.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::config::TargetSessionAttrs;

use tokio::task::JoinHandle;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, Socket};

use super::hosts::{HostFailures, host_count, host_label, host_order, single_host};
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

#[cfg_attr(not(feature = "deadpool"), allow(dead_code))]
pub(crate) type ConnectFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(Client, JoinHandle<()>), ConnectError>> + Send + 'a>>;

/// What connecting fails with: a [`tokio_postgres::Error`], or [`HostFailures`] when every
/// host of a multi-host configuration failed.
pub(crate) type ConnectError = Box<dyn std::error::Error + Send + Sync>;

/// Connects once with `config` and `tls` — trying its hosts in turn, keeping each one's
/// cause — and spawns the connection's task; an error that ends the connection later goes to
/// `pool`.
pub(crate) async fn connect_with<T: MakeTls>(
    config: &Config,
    tls: T,
    pool: &PoolContext,
) -> Result<(Client, JoinHandle<()>), ConnectError> {
    if host_count(config) <= 1 {
        return Ok(connect_host(config, tls, pool).await?);
    }
    let mut failures = Vec::new();
    for index in host_order(config) {
        match connect_host(&single_host(config, index), tls.clone(), pool).await {
            Ok(connected) => return Ok(connected),
            Err(error) => failures.push((host_label(config, index), error)),
        }
    }
    Err(Box::new(HostFailures::new(failures)))
}

/// Connects to one host, spawns the connection's task and proves the session with a round
/// trip: a pooler (PgBouncer) accepts the login itself and reports a server it cannot reach
/// only at the first query, which should fail the connect (and be retried), not the caller's
/// query.
async fn connect_host<T: MakeTls>(
    config: &Config,
    tls: T,
    pool: &PoolContext,
) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error> {
    let (client, connection) = config.connect(tls).await?;
    let pool = pool.clone();
    // Until the session is proven, its end is this connect's failure, not the pool's news.
    let proven = Arc::new(AtomicBool::new(false));
    let report = {
        let proven = proven.clone();
        move |error: ConnectError| {
            if proven.load(Ordering::Acquire) {
                pool.connection_ended_with(error);
            }
        }
    };
    let task = if config.get_target_session_attrs() == TargetSessionAttrs::ReadWrite {
        tokio::spawn(async move {
            if let Err(error) = drive_while_writable(connection).await {
                report(error);
            }
        })
    } else {
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                report(error.into());
            }
        })
    };
    if let Err(error) = client.simple_query("").await {
        task.abort();
        return Err(error);
    }
    proven.store(true, Ordering::Release);
    Ok((client, task))
}

/// A session of a pool that requires a writable server, on a server that turned read-only:
/// fenced with `default_transaction_read_only` or now a hot standby (PostgreSQL 14 and later
/// report both as they change).
#[derive(Debug, thiserror::Error)]
#[error(
    "the server turned read-only ({0}) and this pool requires a writable one \
     (target_session_attrs=read-write): the connection is closed so the pool finds the new primary"
)]
pub struct ServerTurnedReadOnly(&'static str);

impl crate::Classify for ServerTurnedReadOnly {
    fn classify(&self, _phase: crate::Phase) -> crate::ErrorClass {
        crate::ErrorClass::Transient
    }

    fn breaks_connection(&self) -> bool {
        true
    }
}

/// Drives `connection`, ending it (which closes the client, so the pool discards it) once the
/// server reports that it no longer accepts writes.
async fn drive_while_writable<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
) -> Result<(), ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    std::future::poll_fn(|cx| {
        let polled = Pin::new(&mut connection).poll(cx);
        if polled.is_pending() {
            for setting in ["default_transaction_read_only", "in_hot_standby"] {
                if connection.parameter(setting) == Some("on") {
                    return Poll::Ready(Err(ServerTurnedReadOnly(setting).into()));
                }
            }
        }
        polled.map_err(Into::into)
    })
    .await
}

/// A TLS connector with its type erased, so that deadpool's manager need not be generic.
#[cfg_attr(not(feature = "deadpool"), allow(dead_code))]
pub(crate) trait ErasedTls: Send + Sync {
    fn connect<'a>(&'a self, config: &'a Config, pool: &'a PoolContext) -> ConnectFuture<'a>;
}

impl<T: MakeTls> ErasedTls for T {
    fn connect<'a>(&'a self, config: &'a Config, pool: &'a PoolContext) -> ConnectFuture<'a> {
        Box::pin(connect_with(config, self.clone(), pool))
    }
}

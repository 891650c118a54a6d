//! PostgreSQL through tokio-postgres: error classification, connecting, and the pieces the pool
//! managers share.

mod classify;
#[cfg_attr(not(pools), allow(dead_code))]
mod connect;
#[cfg_attr(not(pools), allow(dead_code))]
mod dead_peer;
#[cfg_attr(not(pools), allow(dead_code))]
mod hosts;
pub(crate) mod pgbouncer;

pub use self::classify::classify_sqlstate;
#[cfg(pools)]
pub(crate) use self::connect::ConnectError;
#[cfg(all(pools, feature = "deadpool"))]
pub(crate) use self::connect::ErasedTls;
#[cfg(all(pools, feature = "bb8"))]
pub(crate) use self::connect::connect_with;
pub use self::connect::{MakeTls, ServerTurnedReadOnly};
pub use self::dead_peer::DeadPeerDetection;
#[cfg(pools)]
pub(crate) use self::dead_peer::PgTarget;
pub use self::hosts::HostFailures;

#[cfg(feature = "tls-rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls-rustls")))]
pub mod tls;

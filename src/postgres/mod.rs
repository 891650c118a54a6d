//! PostgreSQL through tokio-postgres: error classification, connecting, and the pieces the pool
//! managers share.

mod classify;
#[cfg_attr(not(pools), allow(dead_code))]
mod connect;

pub use self::classify::classify_sqlstate;
pub use self::connect::MakeTls;
#[cfg(pools)]
pub(crate) use self::connect::{ErasedTls, connect_with};

#[cfg(feature = "tls-rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls-rustls")))]
pub mod tls;

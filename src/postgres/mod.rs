//! PostgreSQL through tokio-postgres: error classification, connecting with retry, and the
//! pieces the pool managers share.

mod classify;
#[cfg_attr(not(pools), allow(dead_code))]
mod connect;

pub use self::classify::classify_sqlstate;
pub(crate) use self::classify::hint_for_sqlstate;
pub use self::connect::MakeTls;
#[cfg(pools)]
pub(crate) use self::connect::PgConnector;

#[cfg(feature = "tls-rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls-rustls")))]
pub mod tls;

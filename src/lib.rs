#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(rustdoc::broken_intra_doc_links, rustdoc::private_intra_doc_links)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms,
    unused_qualifications
)]

mod circuit;
mod classify;
mod config_error;
mod connect_settings;
mod error;
mod events;
pub mod health;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod http;
pub mod metrics;
pub mod policy;
mod reconnect;
mod redact;
mod retry;

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

#[cfg(all(feature = "postgres", feature = "deadpool"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "postgres", feature = "deadpool"))))]
pub mod deadpool_postgres;

#[cfg(all(feature = "sqlite", feature = "deadpool"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "sqlite", feature = "deadpool"))))]
pub mod deadpool_sqlite;

#[cfg(feature = "bb8")]
#[cfg_attr(docsrs, doc(cfg(feature = "bb8")))]
pub mod bb8;
#[cfg(all(feature = "postgres", feature = "bb8"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "postgres", feature = "bb8"))))]
pub mod bb8_postgres;
#[cfg(all(feature = "sqlite", feature = "bb8"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "sqlite", feature = "bb8"))))]
pub mod bb8_sqlite;

pub use crate::circuit::CircuitBreaker;
pub use crate::classify::{
    AttemptTimedOut, Classify, ErrorClass, Phase, breaks_connection_dyn, classify_dyn,
};
pub use crate::config_error::ConfigError;
pub use crate::error::{Error, ErrorChain, ErrorKind, SharedCause};
pub use crate::events::{ConnectAttempts, Diagnostics, RecordedError};
pub use crate::policy::{
    Jitter, JitterStrategy, Origin, RawValue, RetryConfig, RetryPolicy, Schedule,
};
pub use crate::reconnect::DEFAULT_ATTEMPT_TIMEOUT;
pub use crate::redact::redact_url;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use crate::redact::{RedactedConfig, parse_postgres_config};
pub use crate::retry::{OperationError, Retrier, RetryEvent, SuccessEvent, execute_with_retry};

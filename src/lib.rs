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

mod cause_chain;
mod checkout_deadline;
mod circuit_breaker;
mod classify;
mod codes;
mod config_error;
mod error;
mod events;
mod failure;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod from_driver;
mod gate;
pub mod health;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod http;
mod manager;
pub mod metrics;
pub mod policy;
mod redact;
mod retry;
mod time;
#[cfg(all(
    any(feature = "postgres", feature = "sqlite"),
    any(feature = "deadpool", feature = "bb8")
))]
#[cfg_attr(
    docsrs,
    doc(cfg(all(
        any(feature = "postgres", feature = "sqlite"),
        any(feature = "deadpool", feature = "bb8")
    )))
)]
pub mod transaction;
#[cfg(all(feature = "deadpool", any(feature = "postgres", feature = "sqlite")))]
mod unknown_keys;

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

#[cfg(feature = "deadpool")]
#[cfg_attr(docsrs, doc(cfg(feature = "deadpool")))]
pub mod deadpool;
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

pub use crate::cause_chain::{breaks_connection_dyn, classify_dyn};
pub use crate::circuit_breaker::CircuitBreaker;
pub use crate::classify::{AttemptTimedOut, Classify, ErrorClass, OperationError, Phase};
pub use crate::codes::Code;
pub use crate::config_error::ConfigError;
pub use crate::error::{Error, ErrorKind, PoolState};
pub use crate::events::{ConnectAttempts, Diagnostics};
pub use crate::failure::{ErrorChain, Failure, SharedCause};
pub use crate::gate::DEFAULT_ATTEMPT_TIMEOUT;
pub use crate::manager::{Backend, CheckSettings, ManagerBuilder, PoolContext, RetryingManager};
pub use crate::policy::{
    Jitter, JitterStrategy, Origin, RawValue, RetryConfig, RetryPolicy, Schedule,
};
pub use crate::redact::redact_url;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use crate::redact::{RedactedConfig, parse_postgres_config};
pub use crate::retry::{
    Retrier, RetryBudget, RetryError, RetryEvent, SuccessEvent, execute_with_retry,
};

//! Pool managers for PostgreSQL and SQLite that survive transient database failures.
//!
//! A service loses its database for seconds at a time: a restart, a failover, a deploy, a pod
//! that starts before its database, a network path that silently dies. The managers in this
//! crate implement [deadpool]'s `Manager` and [bb8]'s `ManageConnection` and wrap connection
//! creation and recycling in a [`RetryPolicy`]: what is transient (a refused connection,
//! `57P03` "the database system is starting up", a PgBouncer whose server is restarting, a
//! `SQLITE_BUSY`) is waited out with exponential backoff and jitter, one reconnect effort per
//! pool; what is permanent (a wrong password, a missing database) reaches the caller at once,
//! with its SQLSTATE.
//!
//! [deadpool]: https://docs.rs/deadpool
//! [bb8]: https://docs.rs/bb8
//!
//! # Which module do I need?
//!
//! | you use | build the manager with | and the pool with |
//! |---|---|---|
//! | deadpool-postgres | [`deadpool_postgres::Manager::builder`] or [`deadpool_postgres::Config`] | `deadpool_postgres::Pool::builder`, optionally wrapped in [`deadpool::Pool`] |
//! | deadpool-sqlite | [`deadpool_sqlite::Manager::builder`] or [`deadpool_sqlite::Config`] | `deadpool_sqlite::Pool::builder` |
//! | bb8-postgres | [`bb8_postgres::PostgresConnectionManager`] | [`bb8::Pool::new`] (or a plain `bb8::Pool`) |
//! | rusqlite under bb8 | [`bb8_sqlite::SqliteConnectionManager`] | [`bb8::Pool::new`] |
//!
//! The module names mirror the crates they replace, and the types keep those crates' names and
//! signatures, so swapping is an import change: `pool.get().await?` and everything after it
//! compile unchanged.
//!
//! # A first pool
//!
//! ```no_run
//! # #[cfg(all(feature = "postgres", feature = "deadpool"))]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use dbretry::RetryPolicy;
//! use dbretry::deadpool_postgres::{Manager, Pool};
//! use tokio_postgres::NoTls;
//!
//! // Wait out outages of up to 10 s per checkout, probing at least every 250 ms.
//! let policy = RetryPolicy::builder()
//!     .max_attempts(u32::MAX)
//!     .max_delay(Duration::from_millis(250))
//!     .max_elapsed(Duration::from_secs(10))
//!     .build()?;
//! let manager = Manager::builder("postgres://app@db/app".parse()?, NoTls)
//!     .policy(policy)
//!     .name("primary")
//!     .build();
//! // One budget per `get()`: the wait for a slot, the create and the check together.
//! let pool = dbretry::deadpool::Pool::new(Pool::builder(manager).max_size(16).build()?);
//!
//! let client = pool.get().await?; // waits out a restart; fails fast on a wrong password
//! client.simple_query("SELECT 1").await?;
//! # Ok(()) }
//! ```
//!
//! # Configuring retries
//!
//! [`RetryPolicy`] has one set of names everywhere: the builder, `DB_RETRY_*` environment
//! variables ([`RetryPolicy::from_env`]) and a serde section ([`RetryConfig`]), layered code <
//! file < environment and validated once; every [`ConfigError`] names the setting, where it
//! came from and the accepted range. For pools, bound retries by time (`max_elapsed`) rather
//! than by count. [`RetryPolicy::schedule`] lists the delays without sleeping.
//!
//! # What a pool does for you
//!
//! - **One reconnect effort per pool.** While the database is down, callers share one probe at
//!   a time; all proceed when it succeeds. The pool's gate is one total state machine (up,
//!   down, circuit open, half-open), checked by model tests over every short event sequence.
//! - **Dead connections found in bounded time.** TCP keepalive and `tcp_user_timeout` on every
//!   PostgreSQL connection ([`postgres::DeadPeerDetection`]), a ping on checkout after an idle
//!   window and a bound on every check ([`CheckSettings`]).
//! - **Production topologies.** PgBouncer's own errors are classified, every new connection is
//!   proven with a round trip, multi-host connects keep each host's cause
//!   ([`postgres::HostFailures`]), sessions on a server that turns read-only leave a pool that
//!   asked for `target_session_attrs=read-write`.
//! - **An optional circuit breaker** ([`CircuitBreaker`]) per pool.
//!
//! # Operations and transactions
//!
//! [`Retrier`] retries an async operation of your own when its error is transient
//! ([`Classify`] says which) and returns your error inside a [`RetryError`]; a [`RetryBudget`]
//! caps retries across callers. [`Retrier::transaction`] runs a closure in a transaction on any
//! of the crate's pools and re-runs it after a serialization failure, a deadlock, `SQLITE_BUSY`
//! or a connection lost before `COMMIT` — never after a `COMMIT` whose outcome is unknown
//! ([`ErrorKind::CommitOutcomeUnknown`]).
//!
//! # Errors
//!
//! [`Error`] says why it stopped ([`Error::kind`]), after how many attempts and how long, and
//! carries the last real failure with its SQLSTATE ([`Error::sqlstate`]) or SQLite code. It
//! answers the drivers' own questions too (`code()`, `as_db_error()`, `is_closed()`), so code
//! matching on deadpool's `PoolError::Backend(e)` keeps working. Nothing this crate prints
//! contains a password: targets are printed from parsed configuration ([`redact_url`]).
//!
//! # Health, probes and metrics
//!
//! [`health::check`] and [`health::HealthRegistry`] answer "is the database usable", bounded
//! and cached; the `axum` feature's [`http`] module serves them as Kubernetes readiness and
//! liveness routes; the `cli` feature's `dbretry check --wait` is an init container's wait. The
//! [`metrics`] module lists every series emitted through the `metrics` facade, all labelled
//! `pool` and registered at zero when the pool is built.
//!
//! # Features
//!
//! `postgres`, `sqlite`, `deadpool` and `metrics` are on by default; `bb8`, `axum` (health
//! routes), `cli` (the `dbretry check` binary) and `tls-rustls` (rustls connectors for
//! PostgreSQL, [`postgres::tls`]) are opt-in.
//!
//! The repository's README is the operator's guide: measured behaviour through outages,
//! the Kubernetes manifest, alert rules and the dashboard.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(rustdoc::broken_intra_doc_links, rustdoc::private_intra_doc_links)]
// The front page links to items of every feature; CI builds the docs with all of them.
#![cfg_attr(
    not(all(
        feature = "bb8",
        feature = "axum",
        feature = "tls-rustls",
        feature = "postgres",
        feature = "sqlite",
        feature = "deadpool"
    )),
    allow(rustdoc::broken_intra_doc_links)
)]
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

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

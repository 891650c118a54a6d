mod bb8_postgres;
mod circuit_breaker;
mod classify_postgres;
mod classify_sqlite;
mod cli;
mod deadpool_postgres;
mod drop_in;
mod fault_matrix;
mod harness_netns;
mod harness_selftest;
mod http_health;
mod load;
mod metrics;
mod sqlite_pools;
mod support;
#[cfg(feature = "tls-rustls")]
mod tls;
mod transactions_postgres;

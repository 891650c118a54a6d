//! Metrics through the [`metrics`](https://docs.rs/metrics) facade: dbretry installs no
//! recorder; install one (metrics-exporter-prometheus, say) and they appear.
//!
//! Every metric carries `pool` — the name given to the manager or [`Retrier`](crate::Retrier)
//! (`default` otherwise) — and `phase` (`connect` or `operation`) where it applies; other labels
//! come from closed sets. No label ever holds a host, user, message or SQL.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `dbretry_attempts_total` | counter | pool, phase, outcome = `success`/`transient`/`permanent` | tries made |
//! | `dbretry_retries_total` | counter | pool, phase | retries scheduled (one per backoff sleep; a pool's waiters share one) |
//! | `dbretry_give_ups_total` | counter | pool, phase, reason = `attempts`/`deadline`/`circuit_open`/`permanent` | callers that got an error |
//! | `dbretry_attempt_duration_seconds` | histogram | pool, phase | time one try took |
//! | `dbretry_backoff_seconds` | histogram | pool, phase | delays slept between tries |
//! | `dbretry_recycle_failures_total` | counter | pool | pooled connections that failed their check and were discarded |
//! | `dbretry_connections_closed_total` | counter | pool, class | live connections that ended with an error |
//! | `dbretry_circuit_state` | gauge | pool, state = `closed`/`open`/`half_open` | 1 for the current state, 0 for the others |
//! | `dbretry_health_status` | gauge | database | 1 healthy, 0 not |
//! | `dbretry_pool_size` / `dbretry_pool_idle` / `dbretry_pool_waiters` | gauge | pool | pool occupancy, updated by health checks |

/// Tries made, by `outcome`.
pub const ATTEMPTS_TOTAL: &str = "dbretry_attempts_total";
/// Retries scheduled.
pub const RETRIES_TOTAL: &str = "dbretry_retries_total";
/// Give-ups, by `reason`.
pub const GIVE_UPS_TOTAL: &str = "dbretry_give_ups_total";
/// Duration of one try, in seconds.
pub const ATTEMPT_DURATION_SECONDS: &str = "dbretry_attempt_duration_seconds";
/// Backoff delays, in seconds.
pub const BACKOFF_SECONDS: &str = "dbretry_backoff_seconds";
/// Checkouts that ran out of time, by `cause`: `database` (it did not answer) or
/// `pool_exhausted` (it did, but no connection became free).
pub const CHECKOUT_TIMEOUTS_TOTAL: &str = "dbretry_checkout_timeouts_total";
/// Pooled connections discarded by their recycle check.
pub const RECYCLE_FAILURES_TOTAL: &str = "dbretry_recycle_failures_total";
/// Live connections that ended with an error.
pub const CONNECTIONS_CLOSED_TOTAL: &str = "dbretry_connections_closed_total";
/// Circuit breaker state: 1 for the current `state` (closed, open, half_open), 0 for the others.
pub const CIRCUIT_STATE: &str = "dbretry_circuit_state";
/// 1 when the last health check of a database passed, else 0.
pub const HEALTH_STATUS: &str = "dbretry_health_status";
/// Connections the pool holds.
pub const POOL_SIZE: &str = "dbretry_pool_size";
/// Idle connections in the pool.
pub const POOL_IDLE: &str = "dbretry_pool_idle";
/// Callers waiting for a connection.
pub const POOL_WAITERS: &str = "dbretry_pool_waiters";

/// Describes every dbretry metric to the installed recorder (unit and help text). dbretry
/// calls it whenever a manager or retrier is built; call it yourself after installing a
/// recorder if you want descriptions for metrics not yet emitted.
pub fn describe() {
    #[cfg(feature = "metrics")]
    emit::describe();
}

#[cfg(feature = "metrics")]
pub(crate) use emit::*;

#[cfg(not(feature = "metrics"))]
pub(crate) use noop::*;

#[cfg(feature = "metrics")]
mod emit {
    use std::time::Duration;

    use ::metrics::{
        Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
    };

    use super::*;

    pub(super) fn describe() {
        describe_counter!(ATTEMPTS_TOTAL, Unit::Count, "Tries made, by outcome");
        describe_counter!(
            RETRIES_TOTAL,
            Unit::Count,
            "Retries scheduled after a transient failure"
        );
        describe_counter!(
            GIVE_UPS_TOTAL,
            Unit::Count,
            "Callers that got an error, by reason"
        );
        describe_histogram!(
            ATTEMPT_DURATION_SECONDS,
            Unit::Seconds,
            "Duration of one try"
        );
        describe_histogram!(BACKOFF_SECONDS, Unit::Seconds, "Delay slept before a retry");
        describe_counter!(
            RECYCLE_FAILURES_TOTAL,
            Unit::Count,
            "Pooled connections discarded by their recycle check"
        );
        describe_counter!(
            CONNECTIONS_CLOSED_TOTAL,
            Unit::Count,
            "Live connections that ended with an error"
        );
        describe_gauge!(
            CIRCUIT_STATE,
            "Circuit breaker state: 1 for the current state, 0 for the others"
        );
        describe_gauge!(HEALTH_STATUS, "1 when the last health check passed, else 0");
        describe_gauge!(POOL_SIZE, Unit::Count, "Connections the pool holds");
        describe_gauge!(POOL_IDLE, Unit::Count, "Idle connections in the pool");
        describe_gauge!(
            POOL_WAITERS,
            Unit::Count,
            "Callers waiting for a connection"
        );
    }

    pub(crate) fn attempt(pool: &str, phase: &'static str, outcome: &'static str, took: Duration) {
        counter!(ATTEMPTS_TOTAL, "pool" => pool.to_owned(), "phase" => phase, "outcome" => outcome)
            .increment(1);
        histogram!(ATTEMPT_DURATION_SECONDS, "pool" => pool.to_owned(), "phase" => phase)
            .record(took.as_secs_f64());
    }

    pub(crate) fn retry(pool: &str, phase: &'static str, delay: Duration) {
        counter!(RETRIES_TOTAL, "pool" => pool.to_owned(), "phase" => phase).increment(1);
        histogram!(BACKOFF_SECONDS, "pool" => pool.to_owned(), "phase" => phase)
            .record(delay.as_secs_f64());
    }

    pub(crate) fn give_up(pool: &str, phase: &'static str, reason: &'static str) {
        counter!(GIVE_UPS_TOTAL, "pool" => pool.to_owned(), "phase" => phase, "reason" => reason)
            .increment(1);
    }

    pub(crate) fn checkout_timeout(pool: &str, cause: &'static str) {
        counter!(CHECKOUT_TIMEOUTS_TOTAL, "pool" => pool.to_owned(), "cause" => cause).increment(1);
    }

    pub(crate) fn recycle_failed(pool: &str) {
        counter!(RECYCLE_FAILURES_TOTAL, "pool" => pool.to_owned()).increment(1);
    }

    pub(crate) fn connection_closed(pool: &str, class: &'static str) {
        counter!(CONNECTIONS_CLOSED_TOTAL, "pool" => pool.to_owned(), "class" => class)
            .increment(1);
    }

    /// 1 for the state the circuit is in, 0 for the others.
    pub(crate) fn circuit_state(pool: &str, state: &'static str) {
        for other in ["closed", "open", "half_open"] {
            let value = if other == state { 1.0 } else { 0.0 };
            gauge!(CIRCUIT_STATE, "pool" => pool.to_owned(), "state" => other).set(value);
        }
    }

    /// Registers a pool's connect-phase counters at zero, so that a scrape before the first
    /// outage already has them.
    pub(crate) fn register_pool(pool: &str) {
        describe();
        for outcome in ["success", "transient", "permanent"] {
            counter!(ATTEMPTS_TOTAL, "pool" => pool.to_owned(), "phase" => "connect", "outcome" => outcome)
                .increment(0);
        }
        counter!(RETRIES_TOTAL, "pool" => pool.to_owned(), "phase" => "connect").increment(0);
        for reason in ["attempts", "deadline", "circuit_open", "permanent"] {
            counter!(GIVE_UPS_TOTAL, "pool" => pool.to_owned(), "phase" => "connect", "reason" => reason)
                .increment(0);
        }
    }

    pub(crate) fn health(database: &str, healthy: bool) {
        gauge!(HEALTH_STATUS, "database" => database.to_owned()).set(if healthy {
            1.0
        } else {
            0.0
        });
    }

    pub(crate) fn pool_occupancy(pool: &str, size: usize, idle: usize, waiters: usize) {
        gauge!(POOL_SIZE, "pool" => pool.to_owned()).set(size as f64);
        gauge!(POOL_IDLE, "pool" => pool.to_owned()).set(idle as f64);
        gauge!(POOL_WAITERS, "pool" => pool.to_owned()).set(waiters as f64);
    }
}

#[cfg(not(feature = "metrics"))]
#[allow(unused_variables)]
mod noop {
    use std::time::Duration;

    pub(crate) fn attempt(pool: &str, phase: &'static str, outcome: &'static str, took: Duration) {}
    pub(crate) fn retry(pool: &str, phase: &'static str, delay: Duration) {}
    pub(crate) fn give_up(pool: &str, phase: &'static str, reason: &'static str) {}
    pub(crate) fn checkout_timeout(pool: &str, cause: &'static str) {
        counter!(CHECKOUT_TIMEOUTS_TOTAL, "pool" => pool.to_owned(), "cause" => cause).increment(1);
    }

    pub(crate) fn recycle_failed(pool: &str) {}
    pub(crate) fn checkout_timeout(pool: &str, cause: &'static str) {}
    pub(crate) fn connection_closed(pool: &str, class: &'static str) {}
    pub(crate) fn circuit_state(pool: &str, state: &'static str) {}
    pub(crate) fn register_pool(pool: &str) {}
    pub(crate) fn health(database: &str, healthy: bool) {}
    pub(crate) fn pool_occupancy(pool: &str, size: usize, idle: usize, waiters: usize) {}
}

//! Metrics through the [`metrics`](https://docs.rs/metrics) facade: dbretry installs no
//! recorder; install one (metrics-exporter-prometheus, say) and they appear.
//!
//! Every series carries `pool` — the name given to the manager or [`Retrier`](crate::Retrier)
//! (`default` otherwise; give each pool its own name, or their series add up) — and `phase`
//! (`connect` or `operation`) where it applies; every other label comes from the closed set
//! listed below. No label ever holds a host, user, message or SQL.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `dbretry_attempts_total` | counter | pool, phase, outcome = `success`/`transient`/`permanent` | tries made |
//! | `dbretry_retries_total` | counter | pool, phase | retries scheduled (one per backoff sleep; a pool's waiters share one) |
//! | `dbretry_give_ups_total` | counter | pool, phase, reason = `attempts`/`deadline`/`circuit_open`/`permanent`/`budget` | callers that got an error |
//! | `dbretry_attempt_duration_seconds` | histogram | pool, phase | time one try took |
//! | `dbretry_backoff_seconds` | histogram | pool, phase | delays slept between tries |
//! | `dbretry_recycle_failures_total` | counter | pool | pooled connections that failed their check and were discarded |
//! | `dbretry_connections_closed_total` | counter | pool, class = `transient`/`permanent` | live connections that ended with an error |
//! | `dbretry_checkout_timeouts_total` | counter | pool, cause = `database`/`pool_exhausted` | checkouts that timed out, because the database did not answer or because every connection was busy |
//! | `dbretry_circuit_state` | gauge | pool, state = `closed`/`open`/`half_open` | 1 for the breaker's current state, 0 for the others (always `closed` without a breaker) |
//! | `dbretry_health_status` | gauge | pool | 1 when the last health check passed, 0 when not |
//! | `dbretry_health_check_timeouts_total` | counter | pool | health checks that got no answer within their time bound |
//! | `dbretry_pool_size` / `dbretry_pool_idle` / `dbretry_pool_waiters` / `dbretry_pool_max_size` | gauge | pool | pool occupancy and its limit |
//!
//! # Registered at zero
//!
//! A counter that appears only with its first event hides that event from `increase()` and
//! `rate()` (there is no earlier sample to compare with), so an alert on the first outage
//! would miss it. Building a pool therefore registers every connect-phase series of that pool
//! at zero, one per label combination, and sets the gauges to their initial values (circuit
//! `closed`, an empty pool); naming a [`Retrier`](crate::Retrier) does the same for its
//! operation-phase series. Two series are left out on purpose, because zero would be a lie:
//! `dbretry_health_status` appears with the first health check (0 would read as "down"), and
//! `dbretry_pool_max_size` appears once the pool's limit is known. A histogram registered
//! without samples renders in Prometheus format as every bucket, `_sum` and `_count` at 0
//! (configure buckets: as a summary it would render every quantile at 0 too, which reads as
//! "instant").
//!
//! # Health series and registry names
//!
//! Health series are labelled with the name the check is made under: the name given to
//! [`HealthRegistry::with`](crate::health::HealthRegistry::with) for a registry, the pool's
//! own name for [`check`](crate::health::check) and
//! [`check_detailed`](crate::health::check_detailed). Register each pool under the name you
//! gave it, so that its health series join its other series on `pool`; the registry logs a
//! warning when the two differ.

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
/// Pooled connections discarded by their recycle check.
pub const RECYCLE_FAILURES_TOTAL: &str = "dbretry_recycle_failures_total";
/// Live connections that ended with an error, by `class`.
pub const CONNECTIONS_CLOSED_TOTAL: &str = "dbretry_connections_closed_total";
/// Checkouts that timed out, by `cause`.
pub const CHECKOUT_TIMEOUTS_TOTAL: &str = "dbretry_checkout_timeouts_total";
/// Circuit breaker state: 1 for the current `state`, 0 for the others.
pub const CIRCUIT_STATE: &str = "dbretry_circuit_state";
/// 1 when the last health check of a pool passed, else 0.
pub const HEALTH_STATUS: &str = "dbretry_health_status";
/// Health checks that got no answer within their time bound.
pub const HEALTH_CHECK_TIMEOUTS_TOTAL: &str = "dbretry_health_check_timeouts_total";
/// Connections the pool holds.
pub const POOL_SIZE: &str = "dbretry_pool_size";
/// Idle connections in the pool.
pub const POOL_IDLE: &str = "dbretry_pool_idle";
/// Callers waiting for a connection.
pub const POOL_WAITERS: &str = "dbretry_pool_waiters";
/// The most connections the pool will hold.
pub const POOL_MAX_SIZE: &str = "dbretry_pool_max_size";

/// Every metric name above, for tools that check dashboards or alert rules against them.
pub const ALL: &[&str] = &[
    ATTEMPTS_TOTAL,
    RETRIES_TOTAL,
    GIVE_UPS_TOTAL,
    ATTEMPT_DURATION_SECONDS,
    BACKOFF_SECONDS,
    RECYCLE_FAILURES_TOTAL,
    CONNECTIONS_CLOSED_TOTAL,
    CHECKOUT_TIMEOUTS_TOTAL,
    CIRCUIT_STATE,
    HEALTH_STATUS,
    HEALTH_CHECK_TIMEOUTS_TOTAL,
    POOL_SIZE,
    POOL_IDLE,
    POOL_WAITERS,
    POOL_MAX_SIZE,
];

/// The closed sets of label values, for tools that check dashboards or alert rules.
pub mod labels {
    use super::{CheckoutTimeoutCause, CircuitState};

    /// `phase`: where a failure happened.
    pub const PHASES: &[&str] = &["connect", "operation"];
    /// `outcome` of [`ATTEMPTS_TOTAL`](super::ATTEMPTS_TOTAL).
    pub const OUTCOMES: &[&str] = &["success", "transient", "permanent"];
    /// `reason` of [`GIVE_UPS_TOTAL`](super::GIVE_UPS_TOTAL).
    pub const GIVE_UP_REASONS: &[&str] = &[
        "attempts",
        "deadline",
        "circuit_open",
        "permanent",
        "budget",
        "commit_outcome_unknown",
    ];
    /// `class` of [`CONNECTIONS_CLOSED_TOTAL`](super::CONNECTIONS_CLOSED_TOTAL).
    pub const CLASSES: &[&str] = &["transient", "permanent"];
    /// `cause` of [`CHECKOUT_TIMEOUTS_TOTAL`](super::CHECKOUT_TIMEOUTS_TOTAL).
    pub const CHECKOUT_TIMEOUT_CAUSES: &[&str] = &[
        CheckoutTimeoutCause::Database.as_str(),
        CheckoutTimeoutCause::PoolExhausted.as_str(),
    ];
    /// `state` of [`CIRCUIT_STATE`](super::CIRCUIT_STATE).
    pub const CIRCUIT_STATES: &[&str] = &[
        CircuitState::Closed.as_str(),
        CircuitState::Open.as_str(),
        CircuitState::HalfOpen.as_str(),
    ];
    /// Each label other than `pool` with its values.
    pub const ALL: &[(&str, &[&str])] = &[
        ("phase", PHASES),
        ("outcome", OUTCOMES),
        ("reason", GIVE_UP_REASONS),
        ("class", CLASSES),
        ("cause", CHECKOUT_TIMEOUT_CAUSES),
        ("state", CIRCUIT_STATES),
    ];
}

/// The `state` label of [`CIRCUIT_STATE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(pools), allow(dead_code))]
pub(crate) enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) const ALL: [Self; 3] = [Self::Closed, Self::Open, Self::HalfOpen];

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// The `cause` label of [`CHECKOUT_TIMEOUTS_TOTAL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CheckoutTimeoutCause {
    /// Connecting did not finish in time: the database is slow or down.
    Database,
    /// Every connection was in use and none came back in time.
    PoolExhausted,
}

impl CheckoutTimeoutCause {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) const ALL: [Self; 2] = [Self::Database, Self::PoolExhausted];

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::PoolExhausted => "pool_exhausted",
        }
    }
}

/// Describes every dbretry metric (unit and help text) to the recorder in use now. dbretry
/// describes once by itself, when the first pool or retrier is built; call this after
/// installing a recorder that came later. Describing again is harmless.
pub fn describe() {
    #[cfg(feature = "metrics")]
    emit::describe();
}

/// [`describe`], once per process: cheap enough for every pool and retrier built.
pub(crate) fn describe_once() {
    static DESCRIBED: std::sync::Once = std::sync::Once::new();
    DESCRIBED.call_once(describe);
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

    use super::labels::{CLASSES, GIVE_UP_REASONS, OUTCOMES};
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
            "Live connections that ended with an error, by class"
        );
        describe_counter!(
            CHECKOUT_TIMEOUTS_TOTAL,
            Unit::Count,
            "Checkouts that timed out, by cause (database or pool_exhausted)"
        );
        describe_gauge!(
            CIRCUIT_STATE,
            "Circuit breaker state: 1 for the current state, 0 for the others"
        );
        describe_gauge!(HEALTH_STATUS, "1 when the last health check passed, else 0");
        describe_counter!(
            HEALTH_CHECK_TIMEOUTS_TOTAL,
            Unit::Count,
            "Health checks that got no answer within their time bound"
        );
        describe_gauge!(POOL_SIZE, Unit::Count, "Connections the pool holds");
        describe_gauge!(POOL_IDLE, Unit::Count, "Idle connections in the pool");
        describe_gauge!(
            POOL_WAITERS,
            Unit::Count,
            "Callers waiting for a connection"
        );
        describe_gauge!(
            POOL_MAX_SIZE,
            Unit::Count,
            "The most connections the pool will hold"
        );
    }

    /// Registers the series of one phase at zero (see the module docs).
    fn register_phase(pool: &str, phase: &'static str) {
        for &outcome in OUTCOMES {
            counter!(ATTEMPTS_TOTAL, "pool" => pool.to_owned(), "phase" => phase, "outcome" => outcome)
                .increment(0);
        }
        counter!(RETRIES_TOTAL, "pool" => pool.to_owned(), "phase" => phase).increment(0);
        for &reason in GIVE_UP_REASONS {
            counter!(GIVE_UPS_TOTAL, "pool" => pool.to_owned(), "phase" => phase, "reason" => reason)
                .increment(0);
        }
        // A histogram handle is registered by creating it; no sample is recorded.
        let _ = histogram!(ATTEMPT_DURATION_SECONDS, "pool" => pool.to_owned(), "phase" => phase);
        let _ = histogram!(BACKOFF_SECONDS, "pool" => pool.to_owned(), "phase" => phase);
    }

    /// Registers every connect-phase and pool series of `pool`: counters at zero, the circuit
    /// `closed`, the pool empty. Call once, when the pool is built.
    pub(crate) fn register_pool(pool: &str) {
        describe_once();
        register_phase(pool, "connect");
        counter!(RECYCLE_FAILURES_TOTAL, "pool" => pool.to_owned()).increment(0);
        for &class in CLASSES {
            counter!(CONNECTIONS_CLOSED_TOTAL, "pool" => pool.to_owned(), "class" => class)
                .increment(0);
        }
        for cause in CheckoutTimeoutCause::ALL {
            counter!(CHECKOUT_TIMEOUTS_TOTAL, "pool" => pool.to_owned(), "cause" => cause.as_str())
                .increment(0);
        }
        counter!(HEALTH_CHECK_TIMEOUTS_TOTAL, "pool" => pool.to_owned()).increment(0);
        circuit_state(pool, CircuitState::Closed);
        for name in [POOL_SIZE, POOL_IDLE, POOL_WAITERS] {
            gauge!(name, "pool" => pool.to_owned()).set(0.0);
        }
    }

    /// Registers the operation-phase series of the retrier called `name` at zero.
    pub(crate) fn register_operations(name: &str) {
        describe_once();
        register_phase(name, "operation");
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

    pub(crate) fn recycle_failed(pool: &str) {
        counter!(RECYCLE_FAILURES_TOTAL, "pool" => pool.to_owned()).increment(1);
    }

    pub(crate) fn connection_closed(pool: &str, class: &'static str) {
        counter!(CONNECTIONS_CLOSED_TOTAL, "pool" => pool.to_owned(), "class" => class)
            .increment(1);
    }

    pub(crate) fn checkout_timeout(pool: &str, cause: CheckoutTimeoutCause) {
        counter!(CHECKOUT_TIMEOUTS_TOTAL, "pool" => pool.to_owned(), "cause" => cause.as_str())
            .increment(1);
    }

    /// Sets the current state to 1 and the other two to 0.
    #[cfg_attr(not(pools), allow(dead_code))]
    pub(crate) fn circuit_state(pool: &str, current: CircuitState) {
        for state in CircuitState::ALL {
            gauge!(CIRCUIT_STATE, "pool" => pool.to_owned(), "state" => state.as_str())
                .set(if state == current { 1.0 } else { 0.0 });
        }
    }

    pub(crate) fn health(pool: &str, healthy: bool) {
        gauge!(HEALTH_STATUS, "pool" => pool.to_owned()).set(if healthy { 1.0 } else { 0.0 });
    }

    pub(crate) fn health_check_timed_out(pool: &str) {
        counter!(HEALTH_CHECK_TIMEOUTS_TOTAL, "pool" => pool.to_owned()).increment(1);
    }

    pub(crate) fn pool_occupancy(pool: &str, size: usize, idle: usize, waiters: usize) {
        gauge!(POOL_SIZE, "pool" => pool.to_owned()).set(size as f64);
        gauge!(POOL_IDLE, "pool" => pool.to_owned()).set(idle as f64);
        gauge!(POOL_WAITERS, "pool" => pool.to_owned()).set(waiters as f64);
    }

    pub(crate) fn pool_max_size(pool: &str, max_size: usize) {
        gauge!(POOL_MAX_SIZE, "pool" => pool.to_owned()).set(max_size as f64);
    }
}

#[cfg(not(feature = "metrics"))]
#[allow(unused_variables, dead_code)]
mod noop {
    use std::time::Duration;

    use super::{CheckoutTimeoutCause, CircuitState};

    pub(crate) fn register_pool(pool: &str) {}
    pub(crate) fn register_operations(name: &str) {}
    pub(crate) fn attempt(pool: &str, phase: &'static str, outcome: &'static str, took: Duration) {}
    pub(crate) fn retry(pool: &str, phase: &'static str, delay: Duration) {}
    pub(crate) fn give_up(pool: &str, phase: &'static str, reason: &'static str) {}
    pub(crate) fn recycle_failed(pool: &str) {}
    pub(crate) fn connection_closed(pool: &str, class: &'static str) {}
    pub(crate) fn checkout_timeout(pool: &str, cause: CheckoutTimeoutCause) {}
    pub(crate) fn circuit_state(pool: &str, current: CircuitState) {}
    pub(crate) fn health(pool: &str, healthy: bool) {}
    pub(crate) fn health_check_timed_out(pool: &str) {}
    pub(crate) fn pool_occupancy(pool: &str, size: usize, idle: usize, waiters: usize) {}
    pub(crate) fn pool_max_size(pool: &str, max_size: usize) {}
}

#[cfg(all(test, feature = "metrics"))]
mod tests;

//! What every manager builder sets alike: the retry policy (and hooks), the pool's name and
//! an optional circuit breaker.

#![cfg_attr(not(pools), allow(dead_code, unused_macros, unused_imports))]

use crate::reconnect::Reconnector;
use crate::{CircuitBreaker, Retrier, RetryPolicy};

#[derive(Debug)]
pub(crate) struct ConnectSettings {
    pub(crate) retrier: Retrier,
    pub(crate) circuit_breaker: Option<CircuitBreaker>,
}

impl Default for ConnectSettings {
    fn default() -> Self {
        Self {
            retrier: Retrier::new(RetryPolicy::default()),
            circuit_breaker: None,
        }
    }
}

impl ConnectSettings {
    pub(crate) fn into_reconnector(self) -> Reconnector {
        Reconnector::new(self.retrier, self.circuit_breaker)
    }
}

/// The builder methods for a builder with a `settings: ConnectSettings` field.
macro_rules! connect_settings_methods {
    () => {
        /// The retry policy for connecting. Default: [`RetryPolicy::default`](crate::RetryPolicy).
        /// Each attempt is bounded by the policy's `attempt_timeout`, or by
        /// [`DEFAULT_ATTEMPT_TIMEOUT`](crate::DEFAULT_ATTEMPT_TIMEOUT) if it sets none.
        pub fn policy(mut self, policy: crate::RetryPolicy) -> Self {
            self.settings.retrier = self.settings.retrier.with_policy(policy);
            self
        }

        /// A [`Retrier`](crate::Retrier) with hooks (and a name) to connect with; replaces the
        /// policy and name set so far.
        pub fn retrier(mut self, retrier: crate::Retrier) -> Self {
            self.settings.retrier = retrier;
            self
        }

        /// The pool's name: the `pool` label of its metrics and log events. Default `default`.
        pub fn name(mut self, name: impl AsRef<str>) -> Self {
            self.settings.retrier = self.settings.retrier.name(name);
            self
        }

        /// Fail fast for a while after repeated connect failures; see
        /// [`CircuitBreaker`](crate::CircuitBreaker). Default: no breaker.
        pub fn circuit_breaker(mut self, breaker: crate::CircuitBreaker) -> Self {
            self.settings.circuit_breaker = Some(breaker);
            self
        }
    };
}

pub(crate) use connect_settings_methods;

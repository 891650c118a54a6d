//! The one builder for every retrying manager.

use std::fmt;
use std::sync::Arc;

use super::{CheckSettings, PoolContext, PoolShared, RetryingManager};
use crate::circuit_breaker::CircuitBreaker;
use crate::{Retrier, RetryPolicy};

/// What every manager is built with besides its backend.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) retrier: Retrier,
    pub(crate) circuit_breaker: Option<CircuitBreaker>,
    pub(crate) checks: CheckSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            retrier: Retrier::new(RetryPolicy::default()),
            circuit_breaker: None,
            checks: CheckSettings::default(),
        }
    }
}

/// Builds a [`RetryingManager`]: the retry policy (and hooks), the pool's name and an optional
/// circuit breaker, for any backend. Backend settings (deadpool-postgres's `ManagerConfig`, the
/// SQLite runtime, …) have methods of their own on the builders of those backends.
///
/// # Default
///
/// | setting | default |
/// |---|---|
/// | policy | [`RetryPolicy::default`], with each attempt bounded by [`DEFAULT_ATTEMPT_TIMEOUT`](crate::DEFAULT_ATTEMPT_TIMEOUT) unless it sets `attempt_timeout` |
/// | name | `default` |
/// | circuit breaker | none |
/// | checks | [`CheckSettings::default`]: 1 s bound, ping after 500 ms idle |
/// | checks | [`CheckSettings::default`]: 1 s bound, ping after 500 ms idle |
#[must_use = "call `build()` to get the manager"]
pub struct ManagerBuilder<B> {
    pub(crate) backend: B,
    settings: Settings,
}

impl<B> ManagerBuilder<B> {
    pub(crate) fn new(backend: B) -> Self {
        Self::with_settings(backend, Settings::default())
    }

    pub(crate) fn with_settings(backend: B, settings: Settings) -> Self {
        Self { backend, settings }
    }

    /// The retry policy for connecting. Each attempt is bounded by the policy's
    /// `attempt_timeout`, or by [`DEFAULT_ATTEMPT_TIMEOUT`](crate::DEFAULT_ATTEMPT_TIMEOUT) if
    /// it sets none.
    pub fn policy(mut self, policy: RetryPolicy) -> Self {
        self.settings.retrier = self.settings.retrier.with_policy(policy);
        self
    }

    /// A [`Retrier`] with hooks (and a name) to connect with; replaces the policy and name set
    /// so far.
    pub fn retrier(mut self, retrier: Retrier) -> Self {
        self.settings.retrier = retrier;
        self
    }

    /// The pool's name: the `pool` label of its metrics and log events. Default `default`.
    pub fn name(mut self, name: impl AsRef<str>) -> Self {
        self.settings.retrier = self.settings.retrier.name(name);
        self
    }

    /// Fail fast for a while after repeated connect failures; see [`CircuitBreaker`].
    /// Default: no breaker.
    pub fn circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.settings.circuit_breaker = Some(breaker);
        self
    }

    /// How pooled connections are checked before reuse; see [`CheckSettings`].
    pub fn checks(mut self, checks: CheckSettings) -> Self {
        self.settings.checks = checks;
        self
    }

    /// Builds the manager.
    pub fn build(self) -> RetryingManager<B> {
        let shared = PoolShared::new(
            self.settings.retrier.clone(),
            self.settings.circuit_breaker,
            self.settings.checks,
        );
        RetryingManager {
            backend: self.backend,
            shared: PoolContext(Arc::new(shared)),
            settings: self.settings,
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for ManagerBuilder<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("backend", &self.backend)
            .field("policy", self.settings.retrier.policy())
            .field("circuit_breaker", &self.settings.circuit_breaker)
            .finish_non_exhaustive()
    }
}

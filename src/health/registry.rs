use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{DEFAULT_CHECK_TIMEOUT, HealthReport, HealthTarget, check_as};

/// How a [`HealthRegistry`] checks.
///
/// # Default
///
/// `timeout` 2 s per check; `cache_for` 1 s: probes arriving within a second of a check get
/// its answer, and probes arriving during a check wait for it instead of starting another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthConfig {
    /// The bound on one check.
    pub timeout: Duration,
    /// How long an answer is reused.
    pub cache_for: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_CHECK_TIMEOUT,
            cache_for: Duration::from_secs(1),
        }
    }
}

impl HealthConfig {
    /// Sets the bound on one check.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how long an answer is reused (zero: never).
    #[must_use]
    pub fn cache_for(mut self, cache_for: Duration) -> Self {
        self.cache_for = cache_for;
        self
    }
}

struct Entry {
    target: Box<dyn HealthTarget>,
    last: Mutex<Option<(Instant, HealthReport)>>,
}

/// Named databases to check one at a time or all together, each check time-bounded and its
/// answer cached briefly (see [`HealthConfig`]).
///
/// ```no_run
/// # fn pools() -> (dbretry::deadpool_postgres::Pool, dbretry::deadpool_postgres::Pool) { todo!() }
/// # async fn run() {
/// use dbretry::health::HealthRegistry;
///
/// let (primary, replica) = pools();
/// let registry = HealthRegistry::new()
///     .with("default", primary)
///     .with("replica", replica);
/// let all = registry.check_all().await;
/// assert!(all.iter().all(|report| report.healthy));
/// # }
/// ```
pub struct HealthRegistry {
    config: HealthConfig,
    entries: BTreeMap<String, Entry>,
}

impl Default for HealthRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthRegistry {
    /// An empty registry with the default [`HealthConfig`].
    pub fn new() -> Self {
        Self::with_config(HealthConfig::default())
    }

    /// An empty registry checking as `config` says.
    pub fn with_config(config: HealthConfig) -> Self {
        Self {
            config,
            entries: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) the database called `name`; see [`HealthRegistry::register`].
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, target: impl HealthTarget + 'static) -> Self {
        self.register(name, target);
        self
    }

    /// Adds (or replaces) the database called `name`. `name` is the `pool` label of the
    /// health metrics of its checks; give the pool the same name (a warning is logged when
    /// the two differ, since the pool's other series then carry another label).
    pub fn register(&mut self, name: impl Into<String>, target: impl HealthTarget + 'static) {
        let name = name.into();
        if target.pool_name() != name {
            tracing::warn!(
                target: "dbretry::health",
                database = %name,
                pool = target.pool_name(),
                "registered under another name than its pool's: its health series will not join \
                 the pool's other series on `pool`; give the pool the registry name"
            );
        }
        let entry = Entry {
            target: Box::new(target),
            last: Mutex::new(None),
        };
        self.entries.insert(name, entry);
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Checks the database called `name`; `None` if there is none by that name.
    pub async fn check(&self, name: &str) -> Option<HealthReport> {
        let entry = self.entries.get(name)?;
        Some(self.check_entry(name, entry).await)
    }

    /// Checks every database concurrently, in name order.
    pub async fn check_all(&self) -> Vec<HealthReport> {
        let checks = self
            .entries
            .iter()
            .map(|(name, entry)| self.check_entry(name, entry));
        futures_util::future::join_all(checks).await
    }

    async fn check_entry(&self, name: &str, entry: &Entry) -> HealthReport {
        let mut last = entry.last.lock().await;
        if let Some((at, report)) = &*last
            && at.elapsed() < self.config.cache_for
        {
            return report.clone();
        }
        let report = check_as(name, &*entry.target, self.config.timeout).await;
        *last = Some((Instant::now(), report.clone()));
        report
    }
}

impl fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthRegistry")
            .field("config", &self.config)
            .field("databases", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

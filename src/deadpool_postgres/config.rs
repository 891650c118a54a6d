use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{
    ChannelBinding, CreatePoolError, LoadBalanceHosts, Manager, ManagerConfig, Pool, PoolBuilder,
    PoolConfig, Runtime, SslMode, TargetSessionAttrs,
};
use crate::RetryConfig;
use crate::postgres::MakeTls;

/// deadpool-postgres's `Config` — the same fields with the same types and config-file keys, so
/// struct literals, `cfg.host = …` and `PG__PORT=5432` work as before — plus a `retry` section
/// and a pool `name`; `create_pool` builds a retrying pool.
///
/// Unlike deadpool-postgres 0.14, it applies `target_session_attrs`, `channel_binding` and
/// `load_balance_hosts`, which that crate declares but never passes on. Unknown keys are
/// ignored, as there, with a `tracing` warning naming each.
///
/// Retry settings are layered: [`RetryPolicy::default`](crate::RetryPolicy), then the `retry`
/// section, then each `DB_RETRY_*` variable that is set ([`get_retry_config`](Self::get_retry_config)).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use dbretry::deadpool_postgres::{Config, Runtime};
///
/// let config: Config = toml::from_str(r#"
///     url = "postgres://app@db-1,db-2/app"
///     target_session_attrs = "ReadWrite"
///     [pool]
///     max_size = 16
///     [retry]
///     max_attempts = 100
///     max_elapsed = 10
/// "#)?;
/// let pool = config.create_pool(Some(Runtime::Tokio1), tokio_postgres::NoTls)?;
///
/// let literal = Config { url: Some("postgres://app@db/app".into()), ..Default::default() };
/// # Ok(()) }
/// ```
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct Config {
    /// A connection URL or key-value string, parsed first; the other settings override it,
    /// except `host` and `hosts`, which add to its hosts. Default none.
    pub url: Option<String>,
    /// See [`tokio_postgres::Config::user`]. Default: the URL's, else `$USER`.
    pub user: Option<String>,
    /// See [`tokio_postgres::Config::password`]. Default none.
    pub password: Option<String>,
    /// See [`tokio_postgres::Config::dbname`]. Required, here or in the URL.
    pub dbname: Option<String>,
    /// See [`tokio_postgres::Config::options`]. Default none.
    pub options: Option<String>,
    /// See [`tokio_postgres::Config::application_name`]. Default none.
    pub application_name: Option<String>,
    /// See [`tokio_postgres::Config::ssl_mode`]. Default `Prefer`.
    pub ssl_mode: Option<SslMode>,
    /// One host (an environment variable holds one value); see
    /// [`tokio_postgres::Config::host`]. Default: with no host anywhere, the unix sockets in
    /// `/run/postgresql`, `/var/run/postgresql` and `/tmp`.
    pub host: Option<String>,
    /// Several hosts; see [`tokio_postgres::Config::host`]. Default none.
    pub hosts: Option<Vec<String>>,
    /// See [`tokio_postgres::Config::hostaddr`]. Default none.
    pub hostaddr: Option<IpAddr>,
    /// See [`tokio_postgres::Config::hostaddr`]. Default none.
    pub hostaddrs: Option<Vec<IpAddr>>,
    /// One port; see [`tokio_postgres::Config::port`]. Default 5432.
    pub port: Option<u16>,
    /// One port per host; see [`tokio_postgres::Config::port`]. Default none.
    pub ports: Option<Vec<u16>>,
    /// See [`tokio_postgres::Config::connect_timeout`] (TCP connect only; every attempt is
    /// also bounded by the retry policy's `attempt_timeout`). Default none.
    pub connect_timeout: Option<Duration>,
    /// See [`tokio_postgres::Config::keepalives`]. Default on.
    pub keepalives: Option<bool>,
    /// See [`tokio_postgres::Config::keepalives_idle`]. Default 2 hours.
    pub keepalives_idle: Option<Duration>,
    /// See [`tokio_postgres::Config::target_session_attrs`] (applied, unlike in
    /// deadpool-postgres 0.14). Default `Any`.
    pub target_session_attrs: Option<TargetSessionAttrs>,
    /// See [`tokio_postgres::Config::channel_binding`] (applied, unlike in deadpool-postgres
    /// 0.14). Default `Prefer`.
    pub channel_binding: Option<ChannelBinding>,
    /// See [`tokio_postgres::Config::load_balance_hosts`] (applied, unlike in
    /// deadpool-postgres 0.14). Default `Disable`.
    pub load_balance_hosts: Option<LoadBalanceHosts>,
    /// How connections are recycled. Default: [`ManagerConfig::default`] (`Fast`).
    pub manager: Option<ManagerConfig>,
    /// Pool size, timeouts and queue mode. Default: [`PoolConfig::default`].
    pub pool: Option<PoolConfig>,
    /// Retry settings, under any `DB_RETRY_*` variables. Default:
    /// [`RetryPolicy::default`](crate::RetryPolicy).
    pub retry: Option<RetryConfig>,
    /// The pool's name (its metrics' `pool` label). Default `default`.
    pub name: Option<String>,
}

/// Why a [`Config`] cannot make a pool: deadpool-postgres's three reasons, with the same
/// names, and an invalid retry setting. Messages never contain the URL or the password.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The `url` does not parse. The message says what is wrong in words of its own, never
    /// the driver's, which can quote part of the URL (a password, say).
    #[error("invalid `url`: {}", crate::redact::parse_problem(.0))]
    InvalidUrl(tokio_postgres::Error),
    /// No database name, in `dbname` or the URL.
    #[error("invalid `dbname` = (missing): expected a database name, in `dbname` or the URL")]
    DbnameMissing,
    /// The database name is empty.
    #[error("invalid `dbname` = \"\": expected a non-empty database name")]
    DbnameEmpty,
    /// The `url` parses, but not as it reads: an unencoded `@` in its password would spill
    /// the rest into the host or database (write it `%40`). The message says where, never
    /// what.
    #[error(transparent)]
    Url(crate::ConfigError),
    /// A retry setting (the `retry` section or a `DB_RETRY_*` variable) is out of range.
    #[error(transparent)]
    Retry(#[from] crate::ConfigError),
}

impl fmt::Debug for ConfigError {
    /// As the message: the driver's parse error can quote part of the URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUrl(error) => f
                .debug_tuple("InvalidUrl")
                .field(&crate::redact::parse_problem(error))
                .finish(),
            Self::DbnameMissing => f.write_str("DbnameMissing"),
            Self::DbnameEmpty => f.write_str("DbnameEmpty"),
            Self::Url(error) => f.debug_tuple("Url").field(error).finish(),
            Self::Retry(error) => f.debug_tuple("Retry").field(error).finish(),
        }
    }
}

impl Config {
    /// An empty configuration, as deadpool-postgres's `Config::new`.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates a pool, as deadpool-postgres's `Config::create_pool`.
    ///
    /// # Errors
    /// An invalid setting (named), or a pool build error.
    pub fn create_pool<T: MakeTls>(
        &self,
        runtime: Option<Runtime>,
        tls: T,
    ) -> Result<Pool, CreatePoolError> {
        let mut builder = self.builder(tls).map_err(CreatePoolError::Config)?;
        if let Some(runtime) = runtime {
            builder = builder.runtime(runtime);
        }
        builder.build().map_err(CreatePoolError::Build)
    }

    /// A pool builder from this configuration, as deadpool-postgres's `Config::builder`.
    ///
    /// # Errors
    /// An invalid setting, named with what it accepts.
    pub fn builder<T: MakeTls>(&self, tls: T) -> Result<PoolBuilder, ConfigError> {
        let policy = self.get_retry_config()?.build()?;
        let mut manager = Manager::builder(self.get_pg_config()?, tls)
            .manager_config(self.get_manager_config())
            .policy(policy);
        if let Some(name) = &self.name {
            manager = manager.name(name);
        }
        Ok(Pool::builder(manager.build()).config(self.get_pool_config()))
    }

    /// The tokio-postgres configuration, as deadpool-postgres builds it, with
    /// `target_session_attrs`, `channel_binding` and `load_balance_hosts` applied too.
    ///
    /// # Errors
    /// An invalid URL, or a missing or empty database name.
    pub fn get_pg_config(&self) -> Result<tokio_postgres::Config, ConfigError> {
        // deadpool-postgres's own code builds the rest, so the defaults (`$USER`, the unix
        // sockets) and the URL's precedence are exactly theirs.
        if let Some(url) = &self.url
            && let Err(error) = crate::parse_postgres_config(url)
            && url.parse::<tokio_postgres::Config>().is_ok()
        {
            return Err(ConfigError::Url(error.named("`url`")));
        }
        let mut config = self.to_deadpool().get_pg_config().map_err(from_deadpool)?;
        if let Some(attrs) = self.target_session_attrs {
            config.target_session_attrs(attrs.into());
        }
        if let Some(binding) = self.channel_binding {
            config.channel_binding(binding.into());
        }
        if let Some(balance) = self.load_balance_hosts {
            config.load_balance_hosts(balance.into());
        }
        Ok(config)
    }

    /// The manager configuration: `manager`, or the default.
    #[must_use]
    pub fn get_manager_config(&self) -> ManagerConfig {
        self.manager.clone().unwrap_or_default()
    }

    /// The pool configuration: `pool`, or the default.
    #[must_use]
    pub fn get_pool_config(&self) -> PoolConfig {
        self.pool.unwrap_or_default()
    }

    /// The retry settings [`create_pool`](Self::create_pool) and [`builder`](Self::builder)
    /// use: the `retry` section, with each `DB_RETRY_*` variable that is set taking its place
    /// (the environment is the deployment's word over the file's).
    ///
    /// # Errors
    /// A `DB_RETRY_*` variable that does not parse or is out of range, named.
    pub fn get_retry_config(&self) -> Result<RetryConfig, ConfigError> {
        Ok(RetryConfig::section_under_env(self.retry.as_ref())?)
    }

    /// deadpool-postgres's `Config` with the same settings.
    fn to_deadpool(&self) -> deadpool_postgres::Config {
        deadpool_postgres::Config {
            url: self.url.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            dbname: self.dbname.clone(),
            options: self.options.clone(),
            application_name: self.application_name.clone(),
            ssl_mode: self.ssl_mode,
            host: self.host.clone(),
            hosts: self.hosts.clone(),
            hostaddr: self.hostaddr,
            hostaddrs: self.hostaddrs.clone(),
            port: self.port,
            ports: self.ports.clone(),
            connect_timeout: self.connect_timeout,
            keepalives: self.keepalives,
            keepalives_idle: self.keepalives_idle,
            target_session_attrs: self.target_session_attrs,
            channel_binding: self.channel_binding,
            load_balance_hosts: self.load_balance_hosts,
            manager: self.manager.clone(),
            pool: self.pool,
        }
    }
}

fn from_deadpool(error: deadpool_postgres::ConfigError) -> ConfigError {
    match error {
        deadpool_postgres::ConfigError::InvalidUrl(e) => ConfigError::InvalidUrl(e),
        deadpool_postgres::ConfigError::DbnameMissing => ConfigError::DbnameMissing,
        deadpool_postgres::ConfigError::DbnameEmpty => ConfigError::DbnameEmpty,
    }
}

impl<'de> Deserialize<'de> for Config {
    /// As derived, with a warning for each unknown key (deadpool-postgres ignores them).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut warn = crate::unknown_keys::warn_ignored("deadpool_postgres::Config");
        Config::deserialize(serde_ignored::Deserializer::new(deserializer, &mut warn))
    }
}

impl Serialize for Config {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Config::serialize(self, serializer)
    }
}

impl fmt::Debug for Config {
    /// Every setting, with the password and the URL's password hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.url.as_deref().map(crate::redact_url))
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("dbname", &self.dbname)
            .field("options", &self.options)
            .field("application_name", &self.application_name)
            .field("ssl_mode", &self.ssl_mode)
            .field("host", &self.host)
            .field("hosts", &self.hosts)
            .field("hostaddr", &self.hostaddr)
            .field("hostaddrs", &self.hostaddrs)
            .field("port", &self.port)
            .field("ports", &self.ports)
            .field("connect_timeout", &self.connect_timeout)
            .field("keepalives", &self.keepalives)
            .field("keepalives_idle", &self.keepalives_idle)
            .field("target_session_attrs", &self.target_session_attrs)
            .field("channel_binding", &self.channel_binding)
            .field("load_balance_hosts", &self.load_balance_hosts)
            .field("manager", &self.manager)
            .field("pool", &self.pool)
            .field("retry", &self.retry)
            .field("name", &self.name)
            .finish()
    }
}

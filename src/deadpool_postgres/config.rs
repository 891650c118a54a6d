use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Serialize};

use super::{CreatePoolError, Manager, Pool, PoolBuilder, Runtime};
use crate::postgres::MakeTls;
use crate::{ConfigError, RetryConfig};

/// deadpool-postgres's `Config` (it derefs to it, so `cfg.host = …` and the same config-file
/// keys work) plus a `retry` section and a pool `name`; `create_pool` builds a retrying pool.
///
/// Unlike deadpool-postgres 0.14, it applies `target_session_attrs`, `channel_binding` and
/// `load_balance_hosts`, which that crate declares but never passes on.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use dbretry::deadpool_postgres::{Config, Runtime};
///
/// let config: Config = toml::from_str(r#"
///     url = "postgres://app@db-1,db-2/app"
///     target_session_attrs = "ReadWrite"
///     [retry]
///     max_attempts = 100
///     max_elapsed = 10
/// "#)?;
/// let pool = config.create_pool(Some(Runtime::Tokio1), tokio_postgres::NoTls)?;
/// # Ok(()) }
/// ```
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// deadpool-postgres's settings, at the top level of a config file.
    #[serde(flatten)]
    pub postgres: deadpool_postgres::Config,
    /// Retry settings. Default: [`RetryPolicy::default`](crate::RetryPolicy).
    pub retry: Option<RetryConfig>,
    /// The pool's name (its metrics' `pool` label). Default `default`.
    pub name: Option<String>,
}

impl Config {
    /// An empty configuration, as deadpool-postgres's `Config::new`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The tokio-postgres configuration, with every setting applied.
    ///
    /// # Errors
    /// An invalid URL or a missing database name, named (the URL itself is not printed).
    pub fn get_pg_config(&self) -> Result<tokio_postgres::Config, ConfigError> {
        if let Some(error) = self.postgres.url.as_deref().and_then(url_error) {
            return Err(error);
        }
        let mut config = self.postgres.get_pg_config().map_err(from_deadpool)?;
        if let Some(attrs) = self.postgres.target_session_attrs {
            config.target_session_attrs(attrs.into());
        }
        if let Some(binding) = self.postgres.channel_binding {
            config.channel_binding(binding.into());
        }
        if let Some(balance) = self.postgres.load_balance_hosts {
            config.load_balance_hosts(balance.into());
        }
        Ok(config)
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

    /// A pool builder from this configuration.
    ///
    /// # Errors
    /// An invalid setting, named with its accepted range.
    pub fn builder<T: MakeTls>(&self, tls: T) -> Result<PoolBuilder, ConfigError> {
        let policy = self.retry.clone().unwrap_or_default().build()?;
        let mut manager = Manager::builder(self.get_pg_config()?, tls)
            .manager_config(self.postgres.get_manager_config())
            .policy(policy);
        if let Some(name) = &self.name {
            manager = manager.name(name);
        }
        Ok(Pool::builder(manager.build()).config(self.postgres.get_pool_config()))
    }
}

fn from_deadpool(error: deadpool_postgres::ConfigError) -> ConfigError {
    match error {
        // The URL may hold a password and tokio-postgres's message may quote part of it: the
        // problem comes from parsing the URL again through the redacting parser.
        deadpool_postgres::ConfigError::InvalidUrl(_) => ConfigError::unshown(
            "`url`",
            "it does not parse",
            "a PostgreSQL URL or key=value string",
        ),
        deadpool_postgres::ConfigError::DbnameMissing => ConfigError::unshown(
            "`dbname`",
            "missing",
            "a database name, in `dbname` or the URL",
        ),
        deadpool_postgres::ConfigError::DbnameEmpty => {
            ConfigError::unshown("`dbname`", "empty", "a non-empty database name")
        }
    }
}

/// The URL's parse error, from the parser that never quotes its input.
fn url_error(url: &str) -> Option<ConfigError> {
    crate::parse_postgres_config(url)
        .err()
        .map(|error| error.named("`url`"))
}

impl fmt::Debug for Config {
    /// deadpool-postgres's fields with the password as `***` and the URL printed from its
    /// parsed form ([`redact_url`](crate::redact_url)).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pg = &self.postgres;
        let mut debug = f.debug_struct("Config");
        debug
            .field("url", &pg.url.as_deref().map(crate::redact_url))
            .field("user", &pg.user)
            .field("password", &pg.password.as_ref().map(|_| "***"))
            .field("dbname", &pg.dbname)
            .field("options", &pg.options)
            .field("application_name", &pg.application_name)
            .field("ssl_mode", &pg.ssl_mode)
            .field("host", &pg.host)
            .field("hosts", &pg.hosts)
            .field("hostaddr", &pg.hostaddr)
            .field("hostaddrs", &pg.hostaddrs)
            .field("port", &pg.port)
            .field("ports", &pg.ports)
            .field("connect_timeout", &pg.connect_timeout)
            .field("keepalives", &pg.keepalives)
            .field("keepalives_idle", &pg.keepalives_idle)
            .field("target_session_attrs", &pg.target_session_attrs)
            .field("channel_binding", &pg.channel_binding)
            .field("load_balance_hosts", &pg.load_balance_hosts)
            .field("manager", &pg.manager)
            .field("pool", &pg.pool)
            .field("retry", &self.retry)
            .field("name", &self.name)
            .finish()
    }
}

impl Deref for Config {
    type Target = deadpool_postgres::Config;

    fn deref(&self) -> &deadpool_postgres::Config {
        &self.postgres
    }
}

impl DerefMut for Config {
    fn deref_mut(&mut self) -> &mut deadpool_postgres::Config {
        &mut self.postgres
    }
}

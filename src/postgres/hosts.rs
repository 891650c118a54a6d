//! Connecting to several hosts one at a time, as tokio-postgres does, but keeping what
//! happened on each: tokio-postgres reports only the last host's error, so a pool behind
//! `host=a,b target_session_attrs=read-write` would say "refused" or "does not allow writes"
//! depending on host order. [`HostFailures`] lists every host's cause (host and port only,
//! never a password) and classifies them together.

use std::error::Error as StdError;
use std::fmt;

use tokio_postgres::Config;
use tokio_postgres::config::{Host, LoadBalanceHosts};

use crate::classify::{Classify, ErrorClass, Phase};
use crate::failure::ErrorChain;

/// How many hosts `config` names (by name or by address).
pub(crate) fn host_count(config: &Config) -> usize {
    config.get_hosts().len().max(config.get_hostaddrs().len())
}

/// `config` with only its `index`-th host (and that host's address and port).
pub(crate) fn single_host(config: &Config, index: usize) -> Config {
    let mut single = Config::new();
    if let Some(user) = config.get_user() {
        single.user(user);
    }
    if let Some(password) = config.get_password() {
        single.password(password);
    }
    if let Some(dbname) = config.get_dbname() {
        single.dbname(dbname);
    }
    if let Some(options) = config.get_options() {
        single.options(options);
    }
    if let Some(name) = config.get_application_name() {
        single.application_name(name);
    }
    single
        .ssl_mode(config.get_ssl_mode())
        .ssl_negotiation(config.get_ssl_negotiation());
    match config.get_hosts().get(index) {
        Some(Host::Tcp(name)) => {
            single.host(name);
        }
        #[cfg(unix)]
        Some(Host::Unix(path)) => {
            single.host_path(path);
        }
        None => {}
    }
    if let Some(addr) = config.get_hostaddrs().get(index) {
        single.hostaddr(*addr);
    }
    let ports = config.get_ports();
    if let Some(port) = ports
        .get(index)
        .or_else(|| ports.first().filter(|_| ports.len() == 1))
    {
        single.port(*port);
    }
    if let Some(timeout) = config.get_connect_timeout() {
        single.connect_timeout(*timeout);
    }
    if let Some(timeout) = config.get_tcp_user_timeout() {
        single.tcp_user_timeout(*timeout);
    }
    single
        .keepalives(config.get_keepalives())
        .keepalives_idle(config.get_keepalives_idle());
    if let Some(interval) = config.get_keepalives_interval() {
        single.keepalives_interval(interval);
    }
    if let Some(retries) = config.get_keepalives_retries() {
        single.keepalives_retries(retries);
    }
    single
        .target_session_attrs(config.get_target_session_attrs())
        .channel_binding(config.get_channel_binding())
        .load_balance_hosts(LoadBalanceHosts::Disable);
    single
}

/// The hosts to try, in order: as configured, or shuffled with `load_balance_hosts=random`.
pub(crate) fn host_order(config: &Config) -> Vec<usize> {
    let mut order: Vec<usize> = (0..host_count(config)).collect();
    if config.get_load_balance_hosts() == LoadBalanceHosts::Random {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        order.shuffle(&mut rand::rngs::SmallRng::from_os_rng());
    }
    order
}

/// `host:port` of the `index`-th host, for messages.
pub(crate) fn host_label(config: &Config, index: usize) -> String {
    let host = match config.get_hosts().get(index) {
        Some(Host::Tcp(name)) => name.clone(),
        #[cfg(unix)]
        Some(Host::Unix(path)) => path.display().to_string(),
        None => config
            .get_hostaddrs()
            .get(index)
            .map_or_else(|| "?".to_owned(), ToString::to_string),
    };
    let ports = config.get_ports();
    let port = ports
        .get(index)
        .or_else(|| ports.first().filter(|_| ports.len() == 1))
        .copied()
        .unwrap_or(5432);
    format!("{host}:{port}")
}

/// Every host of a multi-host connect failed: each one's cause, in the order tried.
#[derive(Debug)]
pub struct HostFailures {
    hosts: Vec<(String, tokio_postgres::Error)>,
}

impl HostFailures {
    pub(crate) fn new(hosts: Vec<(String, tokio_postgres::Error)>) -> Self {
        Self { hosts }
    }

    /// Each host (`host:port`) and what happened there, in the order tried.
    pub fn hosts(&self) -> impl Iterator<Item = (&str, &tokio_postgres::Error)> {
        self.hosts
            .iter()
            .map(|(host, error)| (host.as_str(), error))
    }
}

impl fmt::Display for HostFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no host accepted the connection (")?;
        for (i, (host, error)) in self.hosts.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{host}: {}", ErrorChain(error))?;
        }
        f.write_str(")")
    }
}

impl StdError for HostFailures {
    /// The last host's error, as tokio-postgres would report it alone.
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.hosts.last().map(|(_, error)| error as _)
    }
}

impl Classify for HostFailures {
    /// Transient if any host's failure is: one host down and another read-only is a
    /// failover in progress, worth waiting out.
    fn classify(&self, phase: Phase) -> ErrorClass {
        if self
            .hosts
            .iter()
            .any(|(_, error)| error.classify(phase).is_transient())
        {
            ErrorClass::Transient
        } else {
            ErrorClass::Permanent
        }
    }

    fn breaks_connection(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_single_host_copy_keeps_every_other_setting() {
        let mut config: Config = "host=a,b,c port=1,2,3 user=u password=p dbname=d \
            options='-c x=1' application_name=app sslmode=disable connect_timeout=3 \
            target_session_attrs=read-write channel_binding=disable"
            .parse()
            .unwrap();
        config
            .tcp_user_timeout(Duration::from_secs(9))
            .keepalives_idle(Duration::from_secs(7))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(4);
        let single = single_host(&config, 1);
        let mut expected = config.clone();
        // The same, but for the hosts: tokio-postgres's Debug lists every field, so a field
        // added to its Config and not copied above makes this fail.
        let mut only_b: Config = "host=b port=2".parse().unwrap();
        let render = |c: &Config| format!("{c:?}").replace(&format!("{:?}", c.get_hosts()), "H");
        only_b.user("u");
        expected.load_balance_hosts(LoadBalanceHosts::Disable);
        let strip_ports = |s: String| s.replace("[1, 2, 3]", "P").replace("[2]", "P");
        assert_eq!(strip_ports(render(&single)), strip_ports(render(&expected)));
        assert_eq!(single.get_hosts(), only_b.get_hosts());
        assert_eq!(single.get_ports(), &[2]);
        assert_eq!(host_label(&config, 2), "c:3");
    }
}

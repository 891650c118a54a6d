//! TCP settings that find a silently dropped peer in bounded time, applied to the connections
//! the pools open wherever the user's configuration leaves them unset.

use std::time::Duration;

use tokio_postgres::Config;

/// TCP keepalive and `tcp_user_timeout` for the connections a pool opens, so that a peer that
/// vanished without closing (a dead NAT entry, a failed-over address, a network partition) is
/// noticed without a round trip per checkout.
///
/// tokio-postgres turns keepalives on but starts them after 2 hours idle and sets no user
/// timeout, so such a connection looks alive until TCP gives up (15+ minutes for data in
/// flight). With these settings (Linux):
///
/// * a connection with a query in flight fails once its data has gone unacknowledged for
///   `tcp_user_timeout`;
/// * an idle connection is closed once keepalive probes have gone unanswered: after about
///   `max(tcp_user_timeout, keepalives_idle + keepalives_interval)` since it last heard from
///   the server (Linux lets the user timeout decide when probes stop, rather than
///   `keepalives_retries`).
///
/// The defaults bound both at about **10 s**. Each setting applies only where the
/// tokio-postgres configuration leaves it unset (for `keepalives_idle`: at tokio-postgres's
/// 2-hour default); a configuration with `keepalives(false)` keeps them off.
///
/// # Default
///
/// | setting | default |
/// |---|---|
/// | `keepalives_idle` | 5 s |
/// | `keepalives_interval` | 1 s |
/// | `keepalives_retries` | 3 |
/// | `tcp_user_timeout` | 10 s |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadPeerDetection {
    /// Idle time before the first keepalive probe.
    pub keepalives_idle: Duration,
    /// Time between probes.
    pub keepalives_interval: Duration,
    /// Unanswered probes before the connection is dropped (without a user timeout).
    pub keepalives_retries: u32,
    /// How long sent data may stay unacknowledged before the connection is dropped (Linux).
    pub tcp_user_timeout: Duration,
}

impl Default for DeadPeerDetection {
    fn default() -> Self {
        Self {
            keepalives_idle: Duration::from_secs(5),
            keepalives_interval: Duration::from_secs(1),
            keepalives_retries: 3,
            tcp_user_timeout: Duration::from_secs(10),
        }
    }
}

/// tokio-postgres's own idle time before keepalives: taken to mean "not set".
const TOKIO_POSTGRES_DEFAULT_IDLE: Duration = Duration::from_secs(2 * 60 * 60);

impl DeadPeerDetection {
    /// `config` with these settings wherever it leaves them unset.
    pub(crate) fn applied_to(&self, config: &Config) -> Config {
        let mut config = config.clone();
        if config.get_keepalives() {
            if config.get_keepalives_idle() == TOKIO_POSTGRES_DEFAULT_IDLE {
                config.keepalives_idle(self.keepalives_idle);
            }
            if config.get_keepalives_interval().is_none() {
                config.keepalives_interval(self.keepalives_interval);
            }
            if config.get_keepalives_retries().is_none() {
                config.keepalives_retries(self.keepalives_retries);
            }
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(self.tcp_user_timeout);
        }
        config
    }
}

/// A tokio-postgres configuration as the user gave it, and as the pool connects with it.
#[derive(Clone, Debug)]
pub(crate) struct PgTarget {
    given: Config,
    effective: Config,
    dead_peer: Option<DeadPeerDetection>,
}

impl PgTarget {
    pub(crate) fn new(given: Config) -> Self {
        let dead_peer = Some(DeadPeerDetection::default());
        let effective = apply(&given, dead_peer);
        Self {
            given,
            effective,
            dead_peer,
        }
    }

    pub(crate) fn set_dead_peer_detection(&mut self, detection: Option<DeadPeerDetection>) {
        self.dead_peer = detection;
        self.effective = apply(&self.given, detection);
    }

    /// The configuration as given.
    pub(crate) fn given(&self) -> &Config {
        &self.given
    }

    /// The configuration connections are made with.
    pub(crate) fn effective(&self) -> &Config {
        &self.effective
    }
}

fn apply(config: &Config, detection: Option<DeadPeerDetection>) -> Config {
    match detection {
        Some(detection) => detection.applied_to(config),
        None => config.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_settings_get_the_defaults_and_explicit_ones_are_kept() {
        let mut config: Config = "host=db user=app".parse().unwrap();
        let applied = DeadPeerDetection::default().applied_to(&config);
        assert_eq!(applied.get_keepalives_idle(), Duration::from_secs(5));
        assert_eq!(
            applied.get_keepalives_interval(),
            Some(Duration::from_secs(1))
        );
        assert_eq!(applied.get_keepalives_retries(), Some(3));
        assert_eq!(
            applied.get_tcp_user_timeout(),
            Some(&Duration::from_secs(10))
        );

        config
            .keepalives_idle(Duration::from_secs(60))
            .tcp_user_timeout(Duration::from_secs(30));
        let applied = DeadPeerDetection::default().applied_to(&config);
        assert_eq!(applied.get_keepalives_idle(), Duration::from_secs(60));
        assert_eq!(
            applied.get_tcp_user_timeout(),
            Some(&Duration::from_secs(30))
        );
        assert_eq!(
            applied.get_keepalives_interval(),
            Some(Duration::from_secs(1))
        );

        config.keepalives(false);
        let applied = DeadPeerDetection::default().applied_to(&config);
        assert!(!applied.get_keepalives());
        assert_eq!(applied.get_keepalives_interval(), None);
    }

    #[test]
    fn the_detection_can_be_turned_off() {
        let mut target = PgTarget::new("host=db".parse().unwrap());
        assert!(target.effective().get_tcp_user_timeout().is_some());
        target.set_dead_peer_detection(None);
        assert!(target.effective().get_tcp_user_timeout().is_none());
        assert!(target.given().get_tcp_user_timeout().is_none());
    }
}

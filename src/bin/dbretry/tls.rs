//! TLS for PostgreSQL targets: rustls (with the `tls-rustls` feature) when the target requires
//! TLS (`sslmode=require`) or a CA is given; plain otherwise, as before.
//!
//! The server certificate is always verified (against the Mozilla roots, or the `--ca-file` /
//! `$PGSSLROOTCERT` certificates). `sslmode=prefer`, the default, stays plain unless a CA is
//! given: libpq's `prefer` encrypts without verifying, which rustls does not offer, and a
//! failed verification must not turn a check that worked before into a permanent error.

use dbretry::postgres::MakeTls;
use tokio_postgres::config::SslMode;

use crate::args::Check;

/// The CA file as messages name it: with its path, unless the path may hold a password.
#[cfg(feature = "tls-rustls")]
fn ca_file_named(path: &std::path::Path, from: &str) -> String {
    if crate::config_file::looks_like_a_connection_string(path) {
        format!(
            "the CA file given by {from} (its name is not shown: it looks like a connection string)"
        )
    } else {
        format!("the CA file {} ({from})", path.display())
    }
}

/// How PostgreSQL targets are reached.
pub(crate) struct Tls {
    #[cfg(feature = "tls-rustls")]
    rustls: dbretry::postgres::tls::MakeRustlsConnect,
    #[cfg_attr(not(feature = "tls-rustls"), allow(dead_code))]
    ca_given: bool,
}

impl Tls {
    /// The connector for this run; a CA file that cannot be read is a bad parameter.
    pub(crate) fn from_args(check: &Check) -> Result<Self, String> {
        let ca_file = check
            .ca_file
            .clone()
            .map(|path| (path, "--ca-file"))
            .or_else(|| {
                let from_env = std::env::var_os("PGSSLROOTCERT")?;
                // libpq's `system` means the default roots.
                (from_env != "system").then(|| (from_env.into(), "PGSSLROOTCERT"))
            });
        #[cfg(feature = "tls-rustls")]
        {
            use dbretry::postgres::tls;
            let rustls = match &ca_file {
                None => tls::rustls_webpki_roots(),
                Some((path, from)) => {
                    let pem = std::fs::read(path)
                        .map_err(|e| format!("cannot read {}: {e}", ca_file_named(path, from)))?;
                    tls::rustls_trusting_pem(&pem)
                        .map_err(|e| format!("invalid {}: {e}", ca_file_named(path, from)))?
                }
            };
            Ok(Self {
                rustls,
                ca_given: ca_file.is_some(),
            })
        }
        #[cfg(not(feature = "tls-rustls"))]
        match ca_file {
            Some((_, "--ca-file")) => Err(
                "--ca-file needs TLS, and this dbretry was built without it (the tls-rustls \
                 feature)"
                    .to_owned(),
            ),
            // $PGSSLROOTCERT may be set for other tools; without TLS it has nothing to do.
            _ => Ok(Self { ca_given: false }),
        }
    }

    /// Refuses, before any attempt, a target this build cannot reach as asked.
    pub(crate) fn check_supports(&self, config: &tokio_postgres::Config) -> Result<(), String> {
        if cfg!(not(feature = "tls-rustls")) && config.get_ssl_mode() == SslMode::Require {
            return Err(
                "sslmode=require needs TLS, and this dbretry was built without it (the \
                 tls-rustls feature)"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// Connects and runs `SELECT 1`.
    pub(crate) async fn ping(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<(), tokio_postgres::Error> {
        #[cfg(feature = "tls-rustls")]
        if self.ca_given || config.get_ssl_mode() == SslMode::Require {
            return ping_with(config, self.rustls.clone()).await;
        }
        ping_with(config, tokio_postgres::NoTls).await
    }
}

async fn ping_with<T: MakeTls>(
    config: &tokio_postgres::Config,
    tls: T,
) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = config.connect(tls).await?;
    let task = tokio::spawn(connection);
    let answered = client.simple_query("SELECT 1").await;
    drop(client);
    // The connection task ends once the client is gone; how it ended adds nothing.
    let _ = task.await;
    answered.map(drop)
}

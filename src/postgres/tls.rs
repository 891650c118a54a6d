//! TLS for PostgreSQL through rustls (the `tls-rustls` feature), with the ring crypto provider
//! chosen explicitly so that no process-wide default has to be installed.
//!
//! A certificate that does not verify is a permanent error: the pool reports it after one
//! attempt instead of retrying.
//!
//! ```no_run
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use dbretry::deadpool_postgres::Manager;
//! use dbretry::postgres::tls;
//!
//! let config: tokio_postgres::Config = "postgres://app@db.internal/app?sslmode=require".parse()?;
//! let ca = std::fs::read("/etc/ssl/db-ca.pem")?;
//! let manager = Manager::new(config, tls::rustls_trusting_pem(&ca)?);
//! # Ok(()) }
//! ```

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
pub use tokio_postgres_rustls::MakeRustlsConnect;

/// Why a TLS connector could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// The PEM data holds no usable certificate.
    #[error("no CA certificate could be read from the PEM data: {0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
    /// A certificate was rejected as a trust anchor.
    #[error("invalid CA certificate: {0}")]
    Certificate(#[from] rustls::Error),
}

/// A connector trusting the Mozilla root certificates (webpki-roots): for managed databases
/// whose certificates chain to a public CA.
pub fn rustls_webpki_roots() -> MakeRustlsConnect {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    connector(roots)
}

/// A connector trusting only the CA certificates in `pem` (your own or your provider's CA).
///
/// # Errors
/// The PEM data holds no certificate, or one that cannot be a trust anchor.
pub fn rustls_trusting_pem(pem: &[u8]) -> Result<MakeRustlsConnect, TlsConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(pem) {
        roots.add(certificate?)?;
    }
    if roots.is_empty() {
        return Err(TlsConfigError::Pem(
            rustls::pki_types::pem::Error::NoItemsFound,
        ));
    }
    Ok(connector(roots))
}

fn connector(roots: rustls::RootCertStore) -> MakeRustlsConnect {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    MakeRustlsConnect::new(config)
}

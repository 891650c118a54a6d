//! PostgreSQL over TLS with the rustls connector, against a real server with its own CA.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dbretry::deadpool_postgres::{Manager, Pool, PoolError};
use dbretry::postgres::tls;
use dbretry::{ErrorKind, RetryPolicy};

use crate::support::PgCluster;
use crate::support::pg::chown_to_pg_user;

/// Makes a CA and a server certificate for 127.0.0.1 in the cluster's data directory, turns
/// TLS on and restarts; returns the CA certificate (PEM).
pub(crate) async fn enable_tls(pg: &PgCluster) -> Vec<u8> {
    let dir = pg.data_dir();
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=dbretry test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    ]);
    restrict(&dir.join("server.key"));
    chown_to_pg_user(&dir.join("server.key"));
    chown_to_pg_user(&dir.join("server.crt"));
    pg.set_conf("ssl", "on");
    pg.set_conf("ssl_cert_file", "server.crt");
    pg.set_conf("ssl_key_file", "server.key");
    pg.restart_fast().await;
    std::fs::read(dir.join("ca.crt")).unwrap()
}

fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn require_tls(pg: &PgCluster) -> tokio_postgres::Config {
    format!("{}?sslmode=require", pg.url()).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_connects_over_tls_with_a_trusted_ca() {
    let pg = PgCluster::start().await;
    let ca = enable_tls(&pg).await;
    let manager = Manager::new(require_tls(&pg), tls::rustls_trusting_pem(&ca).unwrap());
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    let client = pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the session is encrypted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_permanent_and_not_retried() {
    let pg = PgCluster::start().await;
    enable_tls(&pg).await;
    let seen = pg.connection_count_seen();
    let policy = RetryPolicy::builder()
        .max_attempts(10)
        .initial_delay(Duration::from_millis(10))
        .build()
        .unwrap();
    let manager = Manager::builder(require_tls(&pg), tls::rustls_webpki_roots())
        .policy(policy)
        .build();
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    let error = match pool.get().await {
        Err(PoolError::Backend(error)) => error,
        other => panic!("expected a TLS failure, got {:?}", other.map(drop)),
    };
    assert_eq!(error.kind(), ErrorKind::Connection);
    assert_eq!(error.attempts(), 1);
    assert_eq!(pg.connection_count_seen() - seen, 1);
    assert!(error.to_string().contains("certificate"), "{error}");
}

#[test]
fn pem_without_a_certificate_is_rejected() {
    assert!(tls::rustls_trusting_pem(b"not a certificate").is_err());
}

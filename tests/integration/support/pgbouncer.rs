//! A throwaway PgBouncer (Debian `pgbouncer`, 1.18 here) in front of a
//! [`PgCluster`], for tests of pools behind a pooler.
//!
//! PgBouncer runs as a plain child process (in the foreground, as the
//! `postgres` OS user when the tests run as root: it refuses root) on
//! 127.0.0.1 at a port outside the ephemeral range, with its own temp dir
//! holding `pgbouncer.ini`, the auth file and `pgbouncer.log`. Clients log in
//! to PgBouncer as the cluster's superuser with SCRAM; PgBouncer logs in to
//! the server with the same plaintext password from its auth file (SCRAM on
//! the server side works with a plaintext auth file entry). The admin console
//! is database `pgbouncer`, for the same user.
//!
//! Helpers panic on failure with the tail of PgBouncer's log.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio_postgres::{Config, SimpleQueryMessage};

use super::daemon::{
    Daemon, Watchdog, create_owned_dir, log_tail, read_log, unprivileged_command, write_owned_file,
};
use super::packages::require;
use super::pg::{DATABASE, HOST, PASSWORD, SUPERUSER};
use super::{PgCluster, connect, error_chain, free_port};

/// PgBouncer's admin console database.
pub const ADMIN_DATABASE: &str = "pgbouncer";
/// How long PgBouncer may take to accept connections, or to exit on a stop.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between polls.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// `application_name` of the harness's own admin-console connections.
const ADMIN_APPLICATION_NAME: &str = "dbretry-harness";

/// PgBouncer's `pool_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection per client for the client's whole session.
    Session,
    /// A server connection per transaction: session state (named prepared
    /// statements, `SET`, temp tables) does not survive a transaction.
    Transaction,
}

impl PoolMode {
    /// The `pool_mode` value.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }
}

/// How to run the PgBouncer: pool mode and `[pgbouncer]` settings.
///
/// # Default
///
/// Session pooling and PgBouncer's own defaults (`server_login_retry` 15 s,
/// `query_wait_timeout` 120 s, `default_pool_size` 20, ...), except what the
/// harness needs: listen address and port, auth file, admin user, log to
/// stderr (captured in `pgbouncer.log`), and `ignore_startup_parameters =
/// extra_float_digits` (some clients send it).
#[derive(Clone, Debug)]
pub struct PgBouncerOptions {
    pool_mode: PoolMode,
    settings: Vec<(String, String)>,
}

impl Default for PgBouncerOptions {
    fn default() -> Self {
        Self::session()
    }
}

impl PgBouncerOptions {
    /// Session pooling.
    #[must_use]
    pub fn session() -> Self {
        PgBouncerOptions {
            pool_mode: PoolMode::Session,
            settings: Vec::new(),
        }
    }

    /// Transaction pooling.
    #[must_use]
    pub fn transaction() -> Self {
        Self::session().pool_mode(PoolMode::Transaction)
    }

    /// Sets the pool mode.
    #[must_use]
    pub fn pool_mode(mut self, mode: PoolMode) -> Self {
        self.pool_mode = mode;
        self
    }

    /// Sets a `[pgbouncer]` setting (`"server_login_retry"`, `"1"`), replacing
    /// the harness's value or an earlier one for the same key.
    #[must_use]
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The pool mode.
    pub fn mode(&self) -> PoolMode {
        self.pool_mode
    }
}

/// A throwaway PgBouncer, killed and deleted on drop.
pub struct PgBouncer {
    root: TempDir,
    ini: PathBuf,
    log: PathBuf,
    pid_file: PathBuf,
    port: u16,
    upstream: SocketAddr,
    options: PgBouncerOptions,
    daemon: Option<Daemon>,
    watchdog: Option<Watchdog>,
}

impl PgBouncer {
    /// Starts a PgBouncer in front of `cluster` (database `app` only) and
    /// returns once its admin console answers. Retries on another port if
    /// the chosen one was taken between choosing and binding.
    pub async fn start(cluster: &PgCluster, options: PgBouncerOptions) -> PgBouncer {
        let program = require("pgbouncer", "pgbouncer");
        let began = Instant::now();
        let root = tempfile::Builder::new()
            .prefix("dbretry-pgbouncer-")
            .tempdir()
            .expect("create PgBouncer temp dir");
        create_owned_dir(root.path(), 0o755);
        let ini = root.path().join("pgbouncer.ini");
        let log = root.path().join("pgbouncer.log");
        let pid_file = root.path().join("daemon.pid");
        write_owned_file(
            &root.path().join("userlist.txt"),
            &format!("\"{SUPERUSER}\" \"{PASSWORD}\"\n"),
            0o600,
        );
        let watchdog = Watchdog::spawn(root.path(), std::slice::from_ref(&pid_file));
        let mut bouncer = PgBouncer {
            root,
            ini,
            log,
            pid_file,
            port: free_port(),
            upstream: cluster.socket_addr(),
            options,
            daemon: None,
            watchdog: Some(watchdog),
        };
        for _ in 0..5 {
            bouncer.write_ini();
            match bouncer.try_start(&program).await {
                Ok(()) => {
                    println!(
                        "PgBouncer ({} mode) on port {} ready in {:?}",
                        bouncer.options.pool_mode.as_str(),
                        bouncer.port,
                        began.elapsed()
                    );
                    return bouncer;
                }
                Err(_) if bouncer.log_contents().contains("Address already in use") => {
                    bouncer.port = free_port();
                }
                Err(message) => panic!("{message}"),
            }
        }
        panic!(
            "{}",
            bouncer.failure("could not find a free port to start on")
        );
    }

    // ----- addresses and connection settings -----

    /// The port PgBouncer listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `postgres://dbretry:pw-s3cret-dbretry@127.0.0.1:PORT/app` (through PgBouncer).
    pub fn url(&self) -> String {
        format!(
            "postgres://{SUPERUSER}:{PASSWORD}@{}/{DATABASE}",
            self.addr()
        )
    }

    /// Config for database `app` through PgBouncer, as the superuser.
    pub fn config(&self) -> Config {
        self.config_for(SUPERUSER, PASSWORD, DATABASE)
    }

    /// Config through PgBouncer with another user, password or database.
    pub fn config_for(&self, user: &str, password: &str, dbname: &str) -> Config {
        let mut config = Config::new();
        config
            .host(HOST)
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(dbname);
        config
    }

    /// The server PgBouncer forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// The options it was started with.
    pub fn options(&self) -> &PgBouncerOptions {
        &self.options
    }

    // ----- lifecycle -----

    /// Whether the PgBouncer process is alive.
    pub fn is_running(&mut self) -> bool {
        self.daemon.as_mut().is_some_and(Daemon::is_running)
    }

    /// The PgBouncer process's pid; panics when it is not running.
    pub fn pid(&self) -> i32 {
        self.daemon
            .as_ref()
            .map(Daemon::pid)
            .unwrap_or_else(|| panic!("{}", self.failure("PgBouncer is not running")))
    }

    /// Immediate shutdown (`SIGTERM` in 1.18: like `SHUTDOWN` on the
    /// console; clients are disconnected) and waits for the process to exit.
    pub async fn stop(&mut self) {
        if let Some(mut daemon) = self.daemon.take()
            && !daemon.stop("TERM", READY_TIMEOUT).await
        {
            panic!("{}", self.failure("PgBouncer did not exit on SIGTERM"));
        }
    }

    /// Safe shutdown without waiting (`SIGINT` in 1.18: like `PAUSE` then
    /// `SHUTDOWN`): open sessions keep working, new clients log in but their
    /// queries wait (and fail after `query_wait_timeout`); the process exits
    /// once every server connection is released (see
    /// [`PgBouncer::wait_stopped`]).
    pub fn shutdown_safe(&self) {
        if let Some(daemon) = &self.daemon {
            daemon.signal("INT");
        }
    }

    /// `kill -9`: the listening socket and every client connection close at once.
    pub fn kill(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.kill();
        }
    }

    /// Starts PgBouncer again on the same port with the same settings (after
    /// [`PgBouncer::stop`], [`PgBouncer::kill`] or a console `SHUTDOWN`) and
    /// waits until it accepts connections.
    pub async fn start_again(&mut self) {
        assert!(!self.is_running(), "stop PgBouncer first");
        self.daemon = None;
        let program = require("pgbouncer", "pgbouncer");
        if let Err(message) = self.try_start(&program).await {
            panic!("{message}");
        }
    }

    /// [`PgBouncer::stop`] then [`PgBouncer::start_again`].
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again().await;
    }

    /// Waits until the process has exited, e.g. after a console `SHUTDOWN`.
    pub async fn wait_stopped(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while self.is_running() {
            assert!(
                Instant::now() < deadline,
                "{}",
                self.failure("timed out waiting for PgBouncer to exit")
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        self.daemon = None;
    }

    // ----- admin console -----

    /// Runs `sql` on a fresh admin-console connection (simple query protocol,
    /// the only one the console speaks). `PAUSE` returns once every server
    /// connection is released, which in session mode means once every client
    /// holding one has disconnected.
    pub async fn admin_command(
        &self,
        sql: &str,
    ) -> Result<Vec<SimpleQueryMessage>, tokio_postgres::Error> {
        let mut config = self.config_for(SUPERUSER, PASSWORD, ADMIN_DATABASE);
        config.application_name(ADMIN_APPLICATION_NAME);
        let client = connect(&config).await?;
        client.simple_query(sql).await
    }

    /// The rows of a console `SHOW <what>` (`"POOLS"`, `"SERVERS"`,
    /// `"CLIENTS"`, ...) as column → value maps.
    pub async fn show(&self, what: &str) -> Vec<HashMap<String, String>> {
        let messages = self
            .admin_command(&format!("SHOW {what}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{}",
                    self.failure(&format!("SHOW {what}: {}", error_chain(&e)))
                )
            });
        messages
            .iter()
            .filter_map(|message| match message {
                SimpleQueryMessage::Row(row) => Some(
                    row.columns()
                        .iter()
                        .enumerate()
                        .map(|(i, column)| {
                            let value = row.get(i).unwrap_or_default().to_owned();
                            (column.name().to_owned(), value)
                        })
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }

    /// `PAUSE` on the console (see [`PgBouncer::admin_command`] for when it
    /// returns): clients keep their PgBouncer connections, their queries wait
    /// until `RESUME` (or fail after `query_wait_timeout`).
    pub async fn pause(&self) {
        self.console("PAUSE").await;
    }

    /// `RESUME` on the console.
    pub async fn resume(&self) {
        self.console("RESUME").await;
    }

    /// Runs a console command that must succeed.
    async fn console(&self, sql: &str) {
        if let Err(e) = self.admin_command(sql).await {
            panic!("{}", self.failure(&format!("{sql}: {}", error_chain(&e))));
        }
    }

    // ----- files -----

    /// PgBouncer's log (stderr), over all starts.
    pub fn log_contents(&self) -> String {
        read_log(&self.log)
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The ini file.
    pub fn ini_path(&self) -> &Path {
        &self.ini
    }

    // ----- internals -----

    /// Writes `pgbouncer.ini` for the current port and options.
    fn write_ini(&self) {
        let root = self.root.path().display();
        let mut settings: Vec<(String, String)> = [
            ("listen_addr", HOST.to_owned()),
            ("listen_port", self.port.to_string()),
            ("unix_socket_dir", root.to_string()),
            ("auth_type", "scram-sha-256".to_owned()),
            ("auth_file", format!("{root}/userlist.txt")),
            ("admin_users", SUPERUSER.to_owned()),
            ("pool_mode", self.options.pool_mode.as_str().to_owned()),
            ("ignore_startup_parameters", "extra_float_digits".to_owned()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        for (key, value) in &self.options.settings {
            settings.retain(|(k, _)| k != key);
            settings.push((key.clone(), value.clone()));
        }
        let mut text = format!(
            "[databases]\n{DATABASE} = host={} port={} dbname={DATABASE}\n\n[pgbouncer]\n",
            self.upstream.ip(),
            self.upstream.port()
        );
        for (key, value) in settings {
            let _ = writeln!(text, "{key} = {value}");
        }
        write_owned_file(&self.ini, &text, 0o600);
    }

    /// Spawns PgBouncer and waits for its console; `Err` (with the log tail)
    /// if it exits first or never answers.
    async fn try_start(&mut self, program: &Path) -> Result<(), String> {
        let mut cmd = unprivileged_command(program);
        cmd.arg(&self.ini);
        self.daemon = Some(Daemon::spawn("pgbouncer", cmd, &self.log, &self.pid_file));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if !self.is_running() {
                self.daemon = None;
                return Err(self.failure("PgBouncer exited during start"));
            }
            if self.admin_command("SHOW VERSION").await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.failure("timed out waiting for PgBouncer's console"));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// A panic message: what failed and the tail of the log.
    fn failure(&self, what: &str) -> String {
        format!(
            "PgBouncer (port {}, {}): {what}\n--- pgbouncer log tail ---\n{}",
            self.port,
            self.root.path().display(),
            log_tail(&self.log)
        )
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        self.watchdog.take();
        self.kill();
    }
}

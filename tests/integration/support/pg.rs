//! Throwaway PostgreSQL clusters for integration tests.
//!
//! `initdb` runs once into a template under `CARGO_TARGET_TMPDIR` (shared by
//! all test processes, created atomically); each [`PgCluster`] is a copy of
//! that template in its own temp dir, listening on 127.0.0.1 at a port outside
//! the kernel's ephemeral range. When the tests run as root, every PostgreSQL
//! program runs as the `postgres` user through `setpriv`.
//!
//! Every helper panics on failure with the failing command's output and the
//! tail of the server log.

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio_postgres::{Client, Config};

use super::{
    child_pids, connect, error_chain, free_port, pid_alive, random_u64, send_signal, sqlstate,
};

/// Superuser of every cluster (also the owner of database [`DATABASE`]).
pub const SUPERUSER: &str = "dbretry";
/// Password of [`SUPERUSER`] (TCP connections use scram-sha-256).
pub const PASSWORD: &str = "pw-s3cret-dbretry";
/// Database created in the template; [`PgCluster::url`] and
/// [`PgCluster::config`] point at it.
pub const DATABASE: &str = "app";
/// The loopback address clusters listen on.
pub const HOST: &str = "127.0.0.1";

/// Bumped whenever the template recipe changes, so stale templates are ignored.
const TEMPLATE_VERSION: u32 = 1;
/// OS user that runs PostgreSQL when the tests run as root.
const PG_OS_USER: &str = "postgres";
/// How long `pg_ctl` may wait for start or stop.
const PG_CTL_TIMEOUT_SECS: &str = "60";
/// How long the polling helpers wait for the server to reach a state.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between polls of the server.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Lines of server log quoted in panic messages.
const LOG_TAIL_LINES: usize = 40;
/// `application_name` of the harness's own connections, which
/// [`PgCluster::backend_pids`] and [`PgCluster::terminate_backends`] skip.
const ADMIN_APPLICATION_NAME: &str = "dbretry-harness";

/// A throwaway PostgreSQL cluster, stopped and deleted on drop.
///
/// Layout: a temp dir `root` (owned by the server's OS user, mode 0755) holds
/// `data/` (mode 0700), `server.log` and the Unix socket. Harness connections
/// ([`PgCluster::admin`]) go through the Unix socket with trust auth, so they
/// never show up in [`PgCluster::connection_count_seen`], which counts TCP
/// connections only.
///
/// A watchdog shell process cleans the cluster up if the test process dies
/// without running `Drop` (for example when killed on a timeout).
pub struct PgCluster {
    root: TempDir,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    watchdog: Option<Child>,
}

impl PgCluster {
    /// Creates a cluster from the template and starts it; returns once it
    /// accepts connections. Retries on another port if the chosen one was
    /// taken between choosing and binding.
    pub async fn start() -> PgCluster {
        let mut cluster = Self::init().await;
        for _ in 0..5 {
            match cluster.try_pg_ctl_start(true).await {
                Ok(()) => return cluster,
                Err(_) if cluster.log_contents().contains("Address already in use") => {
                    cluster.port = free_port();
                    cluster.append_conf(&[("port", &cluster.port.to_string())]);
                }
                Err(message) => panic!("{message}"),
            }
        }
        panic!(
            "{}",
            cluster.failure("could not find a free port to start on", None)
        );
    }

    /// Creates a cluster from the template without starting it (its port is
    /// already chosen, so [`PgCluster::url`] etc. work); start it with
    /// [`PgCluster::start_server`] or [`PgCluster::start_as_not_ready_standby`].
    pub async fn init() -> PgCluster {
        let template = tokio::task::spawn_blocking(template_data_dir)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let cluster = Self::empty();
        let data = cluster.data.to_string_lossy().into_owned();
        let mut copy = Command::new("cp");
        copy.args(["-a", &template.to_string_lossy(), &data]);
        cluster.run("copy the template", copy).await;
        cluster.write_base_conf();
        cluster
    }

    /// Makes a streaming replica of `primary` with `pg_basebackup -R -X
    /// stream`, on its own port, and starts it (hot standby, read-only). Use
    /// [`PgCluster::promote`] to turn it into a primary.
    pub async fn replica_of(primary: &PgCluster) -> PgCluster {
        let cluster = Self::empty();
        let mut backup = pg_command("pg_basebackup");
        backup
            .args(["-h", HOST, "-p", &primary.port.to_string(), "-U", SUPERUSER])
            .arg("-D")
            .arg(&cluster.data)
            .args(["-R", "-X", "stream", "--checkpoint=fast"])
            .env("PGPASSWORD", PASSWORD);
        cluster.run("pg_basebackup", backup).await;
        cluster.write_base_conf();
        cluster.start_server().await;
        cluster
    }

    /// A cluster value with its directories, port and watchdog but no data.
    fn empty() -> PgCluster {
        let root = tempfile::Builder::new()
            .prefix("dbretry-pg-")
            .tempdir_in(scratch_base_dir())
            .expect("create cluster temp dir");
        prepare_owned_dir(root.path());
        let data = root.path().join("data");
        let log = root.path().join("server.log");
        let watchdog = spawn_watchdog(root.path(), &data);
        PgCluster {
            root,
            data,
            log,
            port: free_port(),
            watchdog,
        }
    }

    /// Appends the harness settings (port, socket dir, speed, logging,
    /// replication) to `postgresql.conf`.
    fn write_base_conf(&self) {
        let port = self.port.to_string();
        let socket_dir = self.root.path().to_string_lossy().into_owned();
        self.append_conf(&[
            ("listen_addresses", HOST),
            ("port", &port),
            ("unix_socket_directories", &socket_dir),
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("max_connections", "50"),
            ("shared_buffers", "16MB"),
            ("log_connections", "on"),
            ("log_disconnections", "on"),
            ("logging_collector", "off"),
            ("wal_level", "replica"),
            ("max_wal_senders", "5"),
            ("hot_standby", "on"),
        ]);
    }

    // ----- addresses and connection settings -----

    /// The TCP port the cluster listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host the cluster listens on: `"127.0.0.1"`.
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// `127.0.0.1:port`, e.g. as the upstream of a [`super::FaultProxy`].
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `postgres://dbretry:pw-s3cret-dbretry@127.0.0.1:PORT/app`.
    pub fn url(&self) -> String {
        self.url_with(SUPERUSER, PASSWORD, DATABASE)
    }

    /// A URL for this cluster with another user, password or database.
    pub fn url_with(&self, user: &str, password: &str, dbname: &str) -> String {
        format!("postgres://{user}:{password}@{HOST}:{}/{dbname}", self.port)
    }

    /// Like [`PgCluster::url`] but for another address, such as a proxy's.
    pub fn url_via(&self, addr: SocketAddr) -> String {
        format!("postgres://{SUPERUSER}:{PASSWORD}@{addr}/{DATABASE}")
    }

    /// TCP config for the superuser on database `app`, with password.
    pub fn config(&self) -> Config {
        self.config_via(self.socket_addr())
    }

    /// Like [`PgCluster::config`] but for another address, such as a proxy's.
    pub fn config_via(&self, addr: SocketAddr) -> Config {
        let mut config = Config::new();
        config
            .host(addr.ip().to_string())
            .port(addr.port())
            .user(SUPERUSER)
            .password(PASSWORD)
            .dbname(DATABASE);
        config
    }

    /// The data directory (also what `pgrep -f` finds in the postmaster's
    /// command line).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The server log file (written through `pg_ctl -l`).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    // ----- lifecycle -----

    /// Starts the server (`pg_ctl -w start`) and waits until it accepts
    /// connections. (Named `start_server` because [`PgCluster::start`] is the
    /// constructor.)
    pub async fn start_server(&self) {
        if let Err(message) = self.try_pg_ctl_start(true).await {
            panic!("{message}");
        }
    }

    /// Starts the server without waiting and returns the moment `postmaster.pid` first says
    /// `ready` (polled every millisecond): when the server began accepting connections. For
    /// measuring how soon clients notice.
    pub async fn start_server_timing_ready(&self) -> Instant {
        if let Err(message) = self.try_pg_ctl_start(false).await {
            panic!("{message}");
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        while self.postmaster_status().as_deref() != Some("ready") {
            assert!(
                Instant::now() < deadline,
                "{}",
                self.failure("timed out waiting for ready", None)
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Instant::now()
    }

    /// Stops with `pg_ctl stop -m fast` (sessions are terminated) and waits.
    pub async fn stop_fast(&self) {
        self.pg_ctl_stop("fast", true).await;
    }

    /// Stops with `pg_ctl stop -m smart` and waits, which lasts until every
    /// session has disconnected (at most 60 s, then it panics).
    pub async fn stop_smart(&self) {
        self.pg_ctl_stop("smart", true).await;
    }

    /// Requests a smart shutdown without waiting for it to finish: existing
    /// sessions keep working, new connections get SQLSTATE 57P03 ("the
    /// database system is shutting down"). Returns once the postmaster has
    /// begun the shutdown (`postmaster.pid` says "stopping"), so the next
    /// connection attempt is already refused.
    pub async fn stop_smart_nowait(&self) {
        self.pg_ctl_stop("smart", false).await;
        self.wait_for("the smart shutdown to begin", || async move {
            !self.is_running() || self.postmaster_status().as_deref() == Some("stopping")
        })
        .await;
    }

    /// Stops with `pg_ctl stop -m immediate` (like a crash: no checkpoint,
    /// crash recovery on the next start) and waits.
    pub async fn stop_immediate(&self) {
        self.pg_ctl_stop("immediate", true).await;
    }

    /// [`PgCluster::stop_fast`] then [`PgCluster::start_server`].
    pub async fn restart_fast(&self) {
        self.stop_fast().await;
        self.start_server().await;
    }

    /// Whether the postmaster is alive (pid file present and process not gone
    /// or a zombie). A SIGSTOPped postmaster counts as running.
    pub fn is_running(&self) -> bool {
        self.read_postmaster_pid().is_some_and(pid_alive)
    }

    /// Sends `SIGHUP` (`pg_ctl reload`) so changed settings apply.
    pub async fn reload(&self) {
        let mut cmd = self.pg_ctl();
        cmd.arg("reload");
        self.run("pg_ctl reload", cmd).await;
    }

    /// Appends `key = 'value'` to `postgresql.conf` (the value is quoted for
    /// you; PostgreSQL accepts quotes around any value). Takes effect on the
    /// next start, or on [`PgCluster::reload`] for reloadable settings.
    pub fn set_conf(&self, key: &str, value: &str) {
        self.append_conf(&[(key, value)]);
    }

    /// Turns the cluster into a standby that never becomes ready and starts
    /// it without waiting: `standby.signal` plus `hot_standby = off`. Returns
    /// once the server listens, so every connection attempt from then on gets
    /// SQLSTATE 57P03 ("the database system is not accepting connections").
    /// The readiness probe goes through the Unix socket, so it does not count
    /// in [`PgCluster::connection_count_seen`].
    /// The cluster must be stopped (e.g. fresh from [`PgCluster::init`]).
    /// End it with [`PgCluster::promote`].
    pub async fn start_as_not_ready_standby(&self) {
        assert!(!self.is_running(), "stop the cluster first");
        let signal = self.data.join("standby.signal");
        fs::write(&signal, "").expect("write standby.signal");
        chown_to_pg_user(&signal);
        self.set_conf("hot_standby", "off");
        if let Err(message) = self.try_pg_ctl_start(false).await {
            panic!("{message}");
        }
        self.wait_for("SQLSTATE 57P03 on connect", || async move {
            let result = connect(&self.admin_config()).await;
            result.is_err_and(|e| sqlstate(&e) == Some("57P03"))
        })
        .await;
    }

    /// Waits until the server accepts (Unix-socket) connections, e.g. after
    /// a backend was killed with `SIGKILL` and the server is recovering.
    pub async fn wait_ready(&self) {
        self.wait_for("the server to accept connections", || async move {
            connect(&self.admin_config()).await.is_ok()
        })
        .await;
    }

    /// Waits until the postmaster has exited, e.g. after
    /// [`PgCluster::stop_smart_nowait`] once the last session closed.
    pub async fn wait_stopped(&self) {
        self.wait_for("the server to stop", || async move { !self.is_running() })
            .await;
    }

    /// Promotes a standby (`pg_ctl promote -W`) and waits until it accepts
    /// connections and is out of recovery.
    pub async fn promote(&self) {
        let mut cmd = self.pg_ctl();
        cmd.args(["promote", "-W"]);
        self.run("pg_ctl promote", cmd).await;
        self.wait_for("promotion", || async move {
            let Ok(client) = connect(&self.admin_config()).await else {
                return false;
            };
            let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await;
            row.is_ok_and(|row| !row.get::<_, bool>(0))
        })
        .await;
    }

    // ----- processes and signals -----

    /// The postmaster's pid (first line of `postmaster.pid`); panics when the
    /// cluster has no pid file (not running).
    pub fn postmaster_pid(&self) -> i32 {
        self.read_postmaster_pid()
            .unwrap_or_else(|| panic!("{}", self.failure("no postmaster.pid", None)))
    }

    /// `SIGSTOP`s the postmaster: new connections hang (the kernel still
    /// completes the TCP handshake, nobody answers), while existing sessions,
    /// served by their own backend processes, keep working.
    pub fn sigstop(&self) {
        self.signal_postmaster("STOP");
    }

    /// `SIGCONT`s the postmaster after [`PgCluster::sigstop`].
    pub fn sigcont(&self) {
        self.signal_postmaster("CONT");
    }

    /// `SIGSTOP`s the postmaster and all its children (backends, checkpointer
    /// ...): existing sessions hang too, like a frozen host.
    pub fn sigstop_all(&self) {
        let pid = self.postmaster_pid();
        self.signal_postmaster("STOP");
        for child in child_pids(pid) {
            send_signal(child, "STOP");
        }
    }

    /// `SIGCONT`s the postmaster and all its children.
    pub fn sigcont_all(&self) {
        let pid = self.postmaster_pid();
        for child in child_pids(pid) {
            send_signal(child, "CONT");
        }
        self.signal_postmaster("CONT");
    }

    /// Sends `signal` (`"KILL"`, `"9"`, `"TERM"`, `"STOP"`, ...) to a backend.
    /// Note that `KILL` makes the postmaster terminate every session and run
    /// crash recovery (connections meanwhile get SQLSTATE 57P03).
    pub fn kill_backend(&self, pid: i32, signal: &str) {
        assert!(
            send_signal(pid, signal),
            "kill -s {signal} {pid} failed (no such process?)"
        );
    }

    /// Pids of client backends, except the harness's own admin connections.
    pub async fn backend_pids(&self) -> Vec<i32> {
        let rows = self
            .admin()
            .await
            .query(
                "SELECT pid FROM pg_stat_activity \
                 WHERE backend_type = 'client backend' AND application_name <> $1 \
                 ORDER BY pid",
                &[&ADMIN_APPLICATION_NAME],
            )
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{}",
                    self.failure("query pg_stat_activity", Some(&error_chain(&e)))
                )
            });
        rows.iter().map(|row| row.get(0)).collect()
    }

    /// `pg_terminate_backend` on every client backend except the harness's
    /// own; returns how many. Each client's next request fails with either
    /// SQLSTATE 57P01 or, if its connection task already read the FATAL
    /// message and the EOF, a "connection closed" error (`is_closed()`).
    pub async fn terminate_backends(&self) -> usize {
        let row = self
            .admin()
            .await
            .query_one(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) \
                 FROM pg_stat_activity \
                 WHERE backend_type = 'client backend' AND application_name <> $1",
                &[&ADMIN_APPLICATION_NAME],
            )
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{}",
                    self.failure("terminate backends", Some(&error_chain(&e)))
                )
            });
        usize::try_from(row.get::<_, i64>(0)).expect("count is not negative")
    }

    // ----- SQL -----

    /// A fresh superuser connection through the Unix socket (trust auth, not
    /// counted by [`PgCluster::connection_count_seen`]); its connection task
    /// is spawned on the current runtime.
    ///
    /// Hangs while the postmaster is SIGSTOPped. There is deliberately no
    /// tokio timeout here: under a paused test clock it would fire at once.
    pub async fn admin(&self) -> Client {
        match connect(&self.admin_config()).await {
            Ok(client) => client,
            Err(e) => panic!(
                "{}",
                self.failure("admin connection", Some(&error_chain(&e)))
            ),
        }
    }

    /// Runs `sql` (one or more statements) on a fresh admin connection.
    pub async fn execute(&self, sql: &str) {
        if let Err(e) = self.admin().await.batch_execute(sql).await {
            panic!(
                "{}",
                self.failure(&format!("execute {sql:?}"), Some(&error_chain(&e)))
            );
        }
    }

    /// Unix-socket config used by [`PgCluster::admin`].
    fn admin_config(&self) -> Config {
        let mut config = Config::new();
        config
            .host_path(self.root.path())
            .port(self.port)
            .user(SUPERUSER)
            .dbname(DATABASE)
            .application_name(ADMIN_APPLICATION_NAME);
        config
    }

    // ----- log -----

    /// The whole server log so far (all starts of this cluster).
    pub fn log_contents(&self) -> String {
        fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Number of TCP connection attempts the server has logged ("connection
    /// received: host=127.0.0.1" lines), over all starts. Attempts that never
    /// reached a backend (port closed, postmaster stopped) are not counted;
    /// attempts rejected with 57P03, bad passwords etc. are.
    pub fn connection_count_seen(&self) -> usize {
        self.log_contents()
            .lines()
            .filter(|line| line.contains("connection received: host=127.0.0.1"))
            .count()
    }

    // ----- internals -----

    /// `pg_ctl -D <data>` (as the PostgreSQL OS user).
    fn pg_ctl(&self) -> Command {
        let mut cmd = pg_command("pg_ctl");
        cmd.arg("-D").arg(&self.data);
        cmd
    }

    /// `pg_ctl start`, waiting for readiness (`-w`) or not (`-W`).
    async fn try_pg_ctl_start(&self, wait: bool) -> Result<(), String> {
        let mut cmd = self.pg_ctl();
        cmd.arg("-l").arg(&self.log);
        cmd.args([
            if wait { "-w" } else { "-W" },
            "-t",
            PG_CTL_TIMEOUT_SECS,
            "start",
        ]);
        let output = self.output("pg_ctl start", cmd).await;
        if output.status.success() {
            Ok(())
        } else {
            Err(self.command_failure("pg_ctl start", &output))
        }
    }

    /// `pg_ctl stop -m <mode>`, waiting for the postmaster to exit or not.
    async fn pg_ctl_stop(&self, mode: &str, wait: bool) {
        let mut cmd = self.pg_ctl();
        cmd.args(["stop", "-m", mode, if wait { "-w" } else { "-W" }]);
        cmd.args(["-t", PG_CTL_TIMEOUT_SECS]);
        self.run(&format!("pg_ctl stop -m {mode}"), cmd).await;
    }

    /// Polls `check` until it returns true; panics after [`READY_TIMEOUT`] of
    /// wall-clock time (a paused tokio clock only makes the polling faster).
    async fn wait_for<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + READY_TIMEOUT;
        while !check().await {
            if Instant::now() > deadline {
                panic!(
                    "{}",
                    self.failure(&format!("timed out waiting for {what}"), None)
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Appends `key = 'value'` lines to `postgresql.conf` (later lines win).
    fn append_conf(&self, settings: &[(&str, &str)]) {
        let mut text = String::from("\n# dbretry test harness\n");
        for (key, value) in settings {
            let _ = writeln!(text, "{key} = '{}'", value.replace('\'', "''"));
        }
        OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .unwrap_or_else(|e| panic!("append to postgresql.conf: {e}"));
    }

    /// The status line of `postmaster.pid` ("starting", "stopping", "ready",
    /// "standby"), if the file has one.
    fn postmaster_status(&self) -> Option<String> {
        let text = fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        Some(text.lines().nth(7)?.trim().to_owned())
    }

    /// The pid in `postmaster.pid`, if the file exists.
    fn read_postmaster_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Sends `signal` to the postmaster, panicking if that fails.
    fn signal_postmaster(&self, signal: &str) {
        let pid = self.postmaster_pid();
        if !send_signal(pid, signal) {
            panic!("{}", self.failure(&format!("kill -s {signal} {pid}"), None));
        }
    }

    /// Runs `cmd` to completion; panics (with log tail) unless it succeeds.
    async fn run(&self, what: &str, cmd: Command) -> Output {
        let output = self.output(what, cmd).await;
        if !output.status.success() {
            panic!("{}", self.command_failure(what, &output));
        }
        output
    }

    /// Runs `cmd` to completion asynchronously and collects its output.
    async fn output(&self, what: &str, mut cmd: Command) -> Output {
        cmd.stdin(Stdio::null());
        let description = format!("{cmd:?}");
        tokio::process::Command::from(cmd)
            .output()
            .await
            .unwrap_or_else(|e| panic!("{what}: cannot run {description}: {e}"))
    }

    /// A panic message for a failed command.
    fn command_failure(&self, what: &str, output: &Output) -> String {
        let details = format!(
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim_end(),
            String::from_utf8_lossy(&output.stderr).trim_end(),
        );
        self.failure(what, Some(&details))
    }

    /// A panic message: what failed, why, and the tail of the server log.
    fn failure(&self, what: &str, cause: Option<&dyn std::fmt::Display>) -> String {
        let log = self.log_contents();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        let cause = cause.map(|c| format!(": {c}")).unwrap_or_default();
        format!(
            "PgCluster (port {}, {}): {what}{cause}\n--- server log tail ---\n{tail}",
            self.port,
            self.data.display()
        )
    }

    /// Stops the postmaster however it is: continue it (it may be stopped),
    /// `SIGQUIT` (immediate shutdown), then `SIGKILL` after 5 s.
    fn shut_down_hard(&self) {
        let Some(pid) = self.read_postmaster_pid().filter(|&pid| pid_alive(pid)) else {
            return;
        };
        let children = child_pids(pid);
        for &child in &children {
            send_signal(child, "CONT");
        }
        send_signal(pid, "CONT");
        send_signal(pid, "QUIT");
        if wait_until_dead(pid, Duration::from_secs(5)) {
            return;
        }
        send_signal(pid, "KILL");
        for child in children.into_iter().filter(|&child| pid_alive(child)) {
            send_signal(child, "KILL");
        }
        wait_until_dead(pid, Duration::from_secs(5));
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        self.shut_down_hard();
        // `root` (a TempDir) is removed when the fields drop.
    }
}

/// Polls until `pid` is gone; returns whether it went within `limit`.
fn wait_until_dead(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while pid_alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Whether the tests run as root (then PostgreSQL runs as [`PG_OS_USER`]).
fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        let output = Command::new("id").arg("-u").output().expect("run id -u");
        String::from_utf8_lossy(&output.stdout).trim() == "0"
    })
}

/// A command for PostgreSQL program `program`, from the directory of the
/// `pg_ctl` on `PATH` (or `$DBRETRY_PG_BIN`), run as [`PG_OS_USER`] when root.
fn pg_command(program: &str) -> Command {
    let path = pg_bin_dir()
        .map(|dir| dir.join(program))
        .filter(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from(program));
    let mut cmd = if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            &format!("--reuid={PG_OS_USER}"),
            &format!("--regid={PG_OS_USER}"),
            "--init-groups",
            "--",
        ]);
        cmd.arg(path);
        cmd
    } else {
        Command::new(path)
    };
    // The server's OS user may not be allowed into the caller's directory.
    cmd.current_dir("/");
    cmd
}

/// The PostgreSQL binaries' directory: `$DBRETRY_PG_BIN`, else the real
/// directory of the first `pg_ctl` on `PATH` (so `/usr/local/bin` symlinks
/// lead to `/usr/lib/postgresql/15/bin`, where `pg_basebackup` lives too).
fn pg_bin_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("DBRETRY_PG_BIN") {
            return Some(PathBuf::from(dir));
        }
        let path = std::env::var_os("PATH")?;
        let pg_ctl = std::env::split_paths(&path)
            .map(|dir| dir.join("pg_ctl"))
            .find(|candidate| candidate.is_file())?;
        Some(fs::canonicalize(pg_ctl).ok()?.parent()?.to_path_buf())
    })
    .clone()
}

/// Where cluster directories go: `$DBRETRY_PG_TMPDIR`, else `/dev/shm` when
/// it is a writable directory (tmpfs: creating the ~1200 files of a cluster
/// there takes milliseconds instead of about a second on the disk), else the
/// system temp dir. Must be reachable by the server's OS user.
fn scratch_base_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("DBRETRY_PG_TMPDIR") {
            return PathBuf::from(dir);
        }
        let shm = Path::new("/dev/shm");
        let writable = shm.is_dir() && tempfile::tempdir_in(shm).is_ok();
        if writable {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        }
    })
    .clone()
}

/// Makes `dir` usable by the server's OS user: mode 0755 and, as root,
/// owned by [`PG_OS_USER`].
fn prepare_owned_dir(dir: &Path) {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
    chown_to_pg_user(dir);
}

/// As root, gives `path` to [`PG_OS_USER`]; does nothing otherwise.
pub fn chown_to_pg_user(path: &Path) {
    if is_root() {
        run_sync(
            Command::new("chown")
                .arg(format!("{PG_OS_USER}:{PG_OS_USER}"))
                .arg(path),
        );
    }
}

/// Runs `cmd` to completion, panicking with its output unless it succeeds.
fn run_sync(cmd: &mut Command) -> Output {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim_end(),
        String::from_utf8_lossy(&output.stderr).trim_end(),
    );
    output
}

/// The template's data directory, built on first use (once per process, and
/// across processes only once thanks to the atomic rename).
fn template_data_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| ensure_template().join("data")).clone()
}

/// Returns the template directory under `CARGO_TARGET_TMPDIR`, building it
/// into a staging name and renaming it into place if it does not exist yet.
/// If another process wins the rename race, its template is used.
fn ensure_template() -> PathBuf {
    let parent = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let name = format!(
        "dbretry-pg-template-v{TEMPLATE_VERSION}-{}",
        server_version_tag()
    );
    let target = parent.join(name);
    if target.is_dir() {
        return target;
    }
    fs::create_dir_all(parent).expect("create CARGO_TARGET_TMPDIR");
    let scratch = build_template_in_tmp();
    let staging = parent.join(format!(
        ".staging-{}-{:x}",
        std::process::id(),
        random_u64()
    ));
    fs::create_dir(&staging).expect("create template staging dir");
    run_sync(
        Command::new("cp")
            .arg("-a")
            .arg(scratch.path().join("data"))
            .arg(&staging),
    );
    if fs::rename(&staging, &target).is_err() {
        // Lost the race (or the target appeared meanwhile): use the winner's.
        let _ = fs::remove_dir_all(&staging);
        assert!(
            target.is_dir(),
            "cannot rename template into {}",
            target.display()
        );
    }
    target
}

/// Runs `initdb` and creates database `app` in a fresh temp dir under
/// [`scratch_base_dir`] (which the server's OS user can reach, unlike
/// possibly `CARGO_TARGET_TMPDIR`).
fn build_template_in_tmp() -> TempDir {
    let scratch = tempfile::Builder::new()
        .prefix("dbretry-pg-template-")
        .tempdir_in(scratch_base_dir())
        .expect("create template scratch dir");
    prepare_owned_dir(scratch.path());
    let pwfile = scratch.path().join("pwfile");
    fs::write(&pwfile, format!("{PASSWORD}\n")).expect("write pwfile");
    chown_to_pg_user(&pwfile);
    let data = scratch.path().join("data");
    run_sync(
        pg_command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["-E", "UTF8", "--no-locale", "--no-sync"]),
    );
    create_app_database(&data);
    scratch
}

/// Creates database `app` with a single-user `postgres --single` backend.
fn create_app_database(data: &Path) {
    let mut cmd = pg_command("postgres");
    cmd.args(["--single", "-c", "fsync=off", "-D"])
        .arg(data)
        .arg("postgres")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn postgres --single");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(format!("CREATE DATABASE {DATABASE} OWNER {SUPERUSER};\n").as_bytes())
        .expect("write to postgres --single");
    drop(stdin);
    let output = child
        .wait_with_output()
        .expect("wait for postgres --single");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && !stderr.contains("ERROR"),
        "postgres --single failed: {}\n{stderr}",
        output.status
    );
}

/// `postgres --version` reduced to `[0-9A-Za-z.]`, e.g. `15.20`, so a server
/// upgrade gets a fresh template.
fn server_version_tag() -> String {
    let output = run_sync(pg_command("postgres").arg("--version"));
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .nth(2)
        .unwrap_or("unknown")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect()
}

/// Starts a detached shell that, once this test process is gone, stops the
/// cluster's postmaster (`SIGQUIT`, then `SIGKILL`) and deletes `root`. Drop
/// kills it first; it only matters when the process dies without unwinding.
fn spawn_watchdog(root: &Path, data: &Path) -> Option<Child> {
    // `alive` treats zombies as dead: PID 1 may be slow to reap postmasters.
    const SCRIPT: &str = r#"
alive() { [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat"; }
while alive "$1"; do sleep 1; done
pid=$(head -n 1 "$2/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ]; then
  kill -CONT "$pid" 2>/dev/null; kill -QUIT "$pid" 2>/dev/null
  i=0
  while [ $i -lt 50 ] && alive "$pid"; do sleep 0.1; i=$((i+1)); done
  kill -KILL "$pid" 2>/dev/null
fi
rm -rf "$3"
"#;
    Command::new("sh")
        .args(["-c", SCRIPT, "dbretry-pg-watchdog"])
        .arg(std::process::id().to_string())
        .arg(data)
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ok()
}

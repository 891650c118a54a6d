//! An optional HAProxy (Debian `haproxy`, 2.6 here) in front of a
//! [`PatroniCluster`]: one TCP frontend on 127.0.0.1 routed to whichever node
//! is leader, found by Patroni's REST check `/primary` (200 on the leader
//! only) against each node, checked every 200 ms, down after 2 failures, up
//! after 1 success, and `on-marked-down shutdown-sessions` so connections to
//! a demoted leader are cut, as in Patroni's documented setup. The check uses
//! `OPTIONS /primary` (same answer as `GET`, status line only), as Patroni's
//! HAProxy template does: HAProxy drops a check connection once it has the
//! status, and with `GET` Patroni logs a traceback for every such reset.
//!
//! HAProxy runs in the foreground (`-db`) as a plain child process with its
//! own config, log and pid file, as the `postgres` OS user when root, with a
//! watchdog; its admin socket answers [`HaProxy::server_states`].

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio_postgres::Config;

use super::daemon::{
    Daemon, Watchdog, create_owned_dir, log_tail, read_log, unprivileged_command, write_owned_file,
};
use super::packages::require;
use super::pg::{DATABASE, HOST, PASSWORD, SUPERUSER};
use super::{PatroniCluster, connect, free_port};

/// How long HAProxy may take to start or to route to a node.
const WAIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between polls.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Name of the frontend/backend section (`listen`).
const PROXY_NAME: &str = "postgres";

/// A throwaway HAProxy, killed and deleted on drop.
pub struct HaProxy {
    root: TempDir,
    port: u16,
    nodes: Vec<u16>,
    config: PathBuf,
    log: PathBuf,
    pid_file: PathBuf,
    daemon: Option<Daemon>,
    watchdog: Option<Watchdog>,
}

impl HaProxy {
    /// Starts HAProxy for `cluster`'s nodes and returns once its admin socket
    /// answers (not once it routes: see [`HaProxy::wait_routes_to`]).
    pub async fn start(cluster: &PatroniCluster) -> HaProxy {
        let program = require("haproxy", "haproxy");
        let began = Instant::now();
        let root = tempfile::Builder::new()
            .prefix("dbretry-haproxy-")
            .tempdir()
            .expect("create HAProxy temp dir");
        create_owned_dir(root.path(), 0o755);
        let pid_file = root.path().join("daemon.pid");
        let watchdog = Watchdog::spawn(root.path(), std::slice::from_ref(&pid_file));
        let mut proxy = HaProxy {
            config: root.path().join("haproxy.cfg"),
            log: root.path().join("haproxy.log"),
            pid_file,
            root,
            port: free_port(),
            nodes: (0..cluster.node_count())
                .map(|i| cluster.pg_port(i))
                .collect(),
            daemon: None,
            watchdog: Some(watchdog),
        };
        let rest_ports: Vec<u16> = (0..cluster.node_count())
            .map(|i| cluster.rest_port(i))
            .collect();
        for _ in 0..5 {
            proxy.write_config(&rest_ports);
            match proxy.try_start(&program).await {
                Ok(()) => {
                    println!(
                        "HAProxy on port {} ready in {:?}",
                        proxy.port,
                        began.elapsed()
                    );
                    return proxy;
                }
                Err(_) if proxy.log_contents().contains("cannot bind socket") => {
                    proxy.port = free_port();
                }
                Err(message) => panic!("{message}"),
            }
        }
        panic!(
            "{}",
            proxy.failure("could not find a free port to start on")
        );
    }

    /// The frontend port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `postgres://dbretry:…@127.0.0.1:PORT/app` through HAProxy.
    pub fn url(&self) -> String {
        format!(
            "postgres://{SUPERUSER}:{PASSWORD}@{}/{DATABASE}",
            self.addr()
        )
    }

    /// Config for database `app` through HAProxy, as the superuser.
    pub fn config(&self) -> Config {
        let mut config = Config::new();
        config
            .host(HOST)
            .port(self.port)
            .user(SUPERUSER)
            .password(PASSWORD)
            .dbname(DATABASE);
        config
    }

    /// Each node's state as HAProxy sees it (`"UP"`, `"DOWN"`, `"UP 1/2"`,
    /// `"no check"`, ...), by node index, from `show stat` on the admin socket.
    pub fn server_states(&self) -> std::io::Result<Vec<String>> {
        let mut stream = UnixStream::connect(self.socket())?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        stream.write_all(b"show stat\n")?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        let header: Vec<&str> = text
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let column = |name: &str| header.iter().position(|c| *c == name);
        let (Some(proxy), Some(server), Some(status)) =
            (column("pxname"), column("svname"), column("status"))
        else {
            return Err(std::io::Error::other(format!(
                "unexpected show stat: {text}"
            )));
        };
        let mut states = vec![String::new(); self.nodes.len()];
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split(',').collect();
            if fields.get(proxy) != Some(&PROXY_NAME) {
                continue;
            }
            let Some(index) = fields
                .get(server)
                .and_then(|name| name.strip_prefix("node"))
                .and_then(|i| i.parse::<usize>().ok())
            else {
                continue;
            };
            if let (Some(slot), Some(value)) = (states.get_mut(index), fields.get(status)) {
                *slot = (*value).to_owned();
            }
        }
        Ok(states)
    }

    /// Waits until HAProxy has node `node` up and every other node down, and
    /// a connection through it lands on that node's PostgreSQL.
    pub async fn wait_routes_to(&self, node: usize) {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            let only_that_one = self.server_states().is_ok_and(|states| {
                states
                    .iter()
                    .enumerate()
                    .all(|(i, s)| (i == node) == (s == "UP"))
            });
            if only_that_one && self.routed_port().await == Some(self.nodes[node]) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}",
                    self.failure(&format!(
                        "timed out waiting to route to node{node} (states {:?})",
                        self.server_states()
                    ))
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The PostgreSQL port a connection through HAProxy lands on, if one
    /// succeeds.
    pub async fn routed_port(&self) -> Option<u16> {
        let client = connect(&self.config()).await.ok()?;
        let row = client
            .query_one("SELECT inet_server_port()", &[])
            .await
            .ok()?;
        u16::try_from(row.get::<_, i32>(0)).ok()
    }

    /// Stops HAProxy (`SIGTERM`: immediate stop, connections cut).
    pub async fn stop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.stop("TERM", WAIT_TIMEOUT).await;
        }
    }

    /// HAProxy's log (stderr), over all starts.
    pub fn log_contents(&self) -> String {
        read_log(&self.log)
    }

    /// The admin socket.
    fn socket(&self) -> PathBuf {
        self.root.path().join("admin.sock")
    }

    /// Writes `haproxy.cfg`.
    fn write_config(&self, rest_ports: &[u16]) {
        let mut servers = String::new();
        for (i, (pg, rest)) in self.nodes.iter().zip(rest_ports).enumerate() {
            servers.push_str(&format!(
                "    server node{i} {HOST}:{pg} check port {rest}\n"
            ));
        }
        let text = format!(
            "global\n\
             \x20   maxconn 1000\n\
             \x20   stats socket {socket} mode 600 level admin\n\
             \x20   log stderr format short local0 info\n\
             defaults\n\
             \x20   mode tcp\n\
             \x20   log global\n\
             \x20   timeout connect 2s\n\
             \x20   timeout client 1h\n\
             \x20   timeout server 1h\n\
             \x20   timeout check 2s\n\
             listen {PROXY_NAME}\n\
             \x20   bind {HOST}:{port}\n\
             \x20   option httpchk OPTIONS /primary\n\
             \x20   http-check expect status 200\n\
             \x20   default-server inter 200ms fall 2 rise 1 on-marked-down shutdown-sessions\n\
             {servers}",
            socket = self.socket().display(),
            port = self.port,
        );
        write_owned_file(&self.config, &text, 0o600);
    }

    /// Spawns HAProxy and waits for its admin socket.
    async fn try_start(&mut self, program: &Path) -> Result<(), String> {
        let mut cmd = unprivileged_command(program);
        cmd.arg("-db").arg("-f").arg(&self.config);
        self.daemon = Some(Daemon::spawn("haproxy", cmd, &self.log, &self.pid_file));
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            if !self.daemon.as_mut().is_some_and(Daemon::is_running) {
                self.daemon = None;
                return Err(self.failure("HAProxy exited during start"));
            }
            if self.server_states().is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.failure("timed out waiting for HAProxy's admin socket"));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// A panic message: what failed and the tail of the log.
    fn failure(&self, what: &str) -> String {
        format!(
            "HaProxy (port {}, {}): {what}\n--- haproxy log tail ---\n{}",
            self.port,
            self.root.path().display(),
            log_tail(&self.log)
        )
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        self.watchdog.take();
        if let Some(mut daemon) = self.daemon.take() {
            daemon.kill();
        }
    }
}

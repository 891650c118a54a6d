//! A throwaway Patroni cluster: one etcd member (Debian `etcd-server`) and
//! three Patroni nodes (Debian `patroni`, run by Debian's `/usr/bin/python3`,
//! never a `python3` found first on `PATH`) managing PostgreSQL 15, all plain
//! child processes on 127.0.0.1 (ports outside the ephemeral range), as the
//! `postgres` OS user when the tests run as root, in one temp dir.
//!
//! The cluster uses the same credentials as [`super::PgCluster`]: superuser
//! `dbretry` / `pw-s3cret-dbretry` (SCRAM over TCP) and database `app`, so the
//! pools' tests need nothing new. Replicas stream from the leader through
//! replication slots; a rejoining old leader is rewound (`pg_rewind`) or, if
//! that fails, rebuilt.
//!
//! Fault recipes (see DESIGN.md §8): a switchover goes through Patroni's REST
//! API; a failover is `kill -9` of the leader's Patroni *and* postmaster (the
//! postmaster alone is restarted in place by its Patroni: that is
//! [`PatroniCluster::crash_postmaster`]).
//!
//! The REST calls use blocking sockets with wall-clock timeouts on a blocking
//! thread, and every wait polls against a wall-clock deadline, so the helpers
//! also work under a paused tokio clock.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_postgres::Config;
use tokio_postgres::config::TargetSessionAttrs;

use super::daemon::{
    Daemon, Watchdog, create_owned_dir, log_tail, read_log, unprivileged_command,
    wait_until_dead_blocking, write_owned_file,
};
use super::packages::require;
use super::pg::{DATABASE, HOST, PASSWORD, SUPERUSER};
use super::{connect, free_port, pid_alive, send_signal};

/// Replication role (created by Patroni at bootstrap).
const REPLICATION_USER: &str = "replicator";
/// Its password (only Patroni and the replicas use it).
const REPLICATION_PASSWORD: &str = "pw-repl-dbretry";
/// How long the waits may take (wall clock) before they panic: generous, so
/// a loaded machine slows the tests down instead of failing them.
const WAIT_TIMEOUT: Duration = Duration::from_secs(90);
/// Pause between polls.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Timeout of one REST call (connect, and each read or write).
const REST_TIMEOUT: Duration = Duration::from_secs(3);
/// Lines of each node's log quoted in panic messages.
const NODE_LOG_LINES: usize = 40;

/// Timing settings of the cluster (Patroni's `bootstrap.dcs`).
///
/// # Default
///
/// `ttl` 6 s, `loop_wait` 1 s, `retry_timeout` 2 s (Patroni's rule
/// `loop_wait + 2 × retry_timeout ≤ ttl` holds); a failover then takes about
/// `ttl` seconds. Measured on the 2-core machine: stable for minutes with six
/// CPU burners beside it. Three nodes.
#[derive(Clone, Copy, Debug)]
pub struct PatroniOptions {
    /// Leader key TTL (seconds): how long a dead leader keeps its lock.
    pub ttl: u32,
    /// Seconds between Patroni's HA loops.
    pub loop_wait: u32,
    /// Seconds Patroni retries DCS and PostgreSQL operations.
    pub retry_timeout: u32,
    /// Number of Patroni nodes (at least 1).
    pub nodes: usize,
}

impl Default for PatroniOptions {
    fn default() -> Self {
        PatroniOptions {
            ttl: 6,
            loop_wait: 1,
            retry_timeout: 2,
            nodes: 3,
        }
    }
}

/// What Patroni's `GET /cluster` says about one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Node index in [`PatroniCluster`].
    pub node: usize,
    /// `"leader"`, `"replica"`, `"standby_leader"`, `"sync_standby"`.
    pub role: String,
    /// `"running"`, `"starting"`, `"stopped"`, `"crashed"`, `"creating replica"`, ...
    pub state: String,
    /// PostgreSQL timeline, when reported.
    pub timeline: Option<u64>,
}

/// One Patroni node: its directory, ports and process.
struct Node {
    name: String,
    dir: PathBuf,
    pg_port: u16,
    rest_port: u16,
    patroni: Option<Daemon>,
}

impl Node {
    fn config_file(&self) -> PathBuf {
        self.dir.join("node.yml")
    }
    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    fn log(&self) -> PathBuf {
        self.dir.join("patroni.log")
    }
    fn pid_file(&self) -> PathBuf {
        self.dir.join("patroni.pid")
    }
    fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }
}

/// A throwaway etcd + Patroni cluster; every process is killed and the
/// directory deleted on drop (or by a watchdog if the test process dies).
pub struct PatroniCluster {
    root: TempDir,
    options: PatroniOptions,
    etcd_port: u16,
    etcd: Option<Daemon>,
    nodes: Vec<Node>,
    python: PathBuf,
    patroni: PathBuf,
    watchdog: Option<Watchdog>,
}

impl PatroniCluster {
    /// [`PatroniCluster::start_with`] the default options.
    pub async fn start() -> PatroniCluster {
        Self::start_with(PatroniOptions::default()).await
    }

    /// Starts etcd and the nodes, and returns once there is a leader, every
    /// other node streams from it, and database `app` accepts the superuser
    /// (prints how long that took).
    pub async fn start_with(options: PatroniOptions) -> PatroniCluster {
        assert!(options.nodes >= 1, "a Patroni cluster needs a node");
        let etcd = require("etcd", "etcd-server");
        let python = require("/usr/bin/python3", "python3");
        let patroni = require("/usr/bin/patroni", "patroni");
        let pg_bin = postgres_bin_dir();
        let began = Instant::now();
        let root = tempfile::Builder::new()
            .prefix("dbretry-patroni-")
            .tempdir_in(scratch_dir())
            .expect("create Patroni temp dir");
        create_owned_dir(root.path(), 0o755);
        let nodes: Vec<Node> = (0..options.nodes)
            .map(|i| Node {
                name: format!("node{i}"),
                dir: root.path().join(format!("node{i}")),
                pg_port: free_port(),
                rest_port: free_port(),
                patroni: None,
            })
            .collect();
        let mut pid_files: Vec<PathBuf> = nodes.iter().map(Node::pid_file).collect();
        pid_files.extend(nodes.iter().map(|n| n.data_dir().join("postmaster.pid")));
        pid_files.push(root.path().join("etcd.pid"));
        let watchdog = Watchdog::spawn(root.path(), &pid_files);
        let mut cluster = PatroniCluster {
            root,
            options,
            etcd_port: 0,
            etcd: None,
            nodes,
            python,
            patroni,
            watchdog: Some(watchdog),
        };
        cluster.start_etcd(&etcd).await;
        let post_bootstrap = cluster.write_post_bootstrap_script(&pg_bin);
        for i in 0..cluster.nodes.len() {
            cluster.write_node_config(i, &pg_bin, &post_bootstrap);
            cluster.start_node(i);
        }
        cluster.wait_until_healthy().await;
        println!(
            "Patroni cluster ({} nodes, ttl {} / loop_wait {} / retry_timeout {}) healthy in {:?}, \
             leader node{}",
            cluster.nodes.len(),
            options.ttl,
            options.loop_wait,
            options.retry_timeout,
            began.elapsed(),
            cluster.leader().await
        );
        cluster
    }

    // ----- addresses and connection settings -----

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// PostgreSQL port of node `node`.
    pub fn pg_port(&self, node: usize) -> u16 {
        self.nodes[node].pg_port
    }

    /// Patroni REST API port of node `node`.
    pub fn rest_port(&self, node: usize) -> u16 {
        self.nodes[node].rest_port
    }

    /// `127.0.0.1:pg_port` of node `node`.
    pub fn pg_addr(&self, node: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.pg_port(node)))
    }

    /// The node index whose PostgreSQL listens on `port`, if any.
    pub fn node_of_port(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.pg_port == port)
    }

    /// etcd's client port.
    pub fn etcd_port(&self) -> u16 {
        self.etcd_port
    }

    /// Multi-host config (every node, in index order) for database `app` as
    /// the superuser, with `target_session_attrs=read-write`: tokio-postgres
    /// tries the hosts in order and keeps the first that accepts writes.
    pub fn config(&self) -> Config {
        let mut config = Config::new();
        for node in &self.nodes {
            config.host(HOST).port(node.pg_port);
        }
        config
            .user(SUPERUSER)
            .password(PASSWORD)
            .dbname(DATABASE)
            .target_session_attrs(TargetSessionAttrs::ReadWrite);
        config
    }

    /// [`PatroniCluster::config`] as a URL:
    /// `postgres://dbretry:…@127.0.0.1:P0,127.0.0.1:P1,127.0.0.1:P2/app?target_session_attrs=read-write`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{HOST}:{}", n.pg_port))
            .collect();
        format!(
            "postgres://{SUPERUSER}:{PASSWORD}@{}/{DATABASE}?target_session_attrs=read-write",
            hosts.join(",")
        )
    }

    /// Config for node `node` alone (no session attribute: replicas too).
    pub fn node_config(&self, node: usize) -> Config {
        let mut config = Config::new();
        config
            .host(HOST)
            .port(self.pg_port(node))
            .user(SUPERUSER)
            .password(PASSWORD)
            .dbname(DATABASE);
        config
    }

    // ----- state -----

    /// The members as `GET /cluster` on the first answering node reports them
    /// (empty if no node answers).
    pub async fn members(&self) -> Vec<Member> {
        for i in 0..self.nodes.len() {
            if let Ok((_, body)) = self.rest(i, "GET", "/cluster", None).await
                && let Ok(value) = serde_json::from_str::<Value>(&body)
            {
                return self.parse_members(&value);
            }
        }
        Vec::new()
    }

    /// The node that is leader right now: running, `role == "leader"` in
    /// `GET /cluster`, and its own `GET /primary` answers 200.
    pub async fn current_leader(&self) -> Option<usize> {
        let members = self.members().await;
        let leader = members
            .iter()
            .find(|m| m.role == "leader" && m.state == "running")?
            .node;
        let (status, _) = self.rest(leader, "GET", "/primary", None).await.ok()?;
        (status == 200).then_some(leader)
    }

    /// Waits for a leader (see [`PatroniCluster::current_leader`]) and returns it.
    pub async fn leader(&self) -> usize {
        self.wait_for("a leader", || self.current_leader()).await
    }

    /// Waits until a node other than `old` is leader *and* accepts a write
    /// through [`PatroniCluster::config`]; returns it.
    pub async fn wait_for_leader_change(&self, old: usize) -> usize {
        self.wait_for("a new leader", || async move {
            let leader = self.current_leader().await.filter(|&l| l != old)?;
            (self.writable_node().await == Some(leader)).then_some(leader)
        })
        .await
    }

    /// Waits until there is a leader, every node whose Patroni runs is a
    /// streaming replica of it (checked on the leader's `GET /patroni`), and
    /// database `app` accepts writes through [`PatroniCluster::config`].
    /// Returns the leader.
    pub async fn wait_until_healthy(&mut self) -> usize {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i]
                    .patroni
                    .as_mut()
                    .is_some_and(Daemon::is_running)
            })
            .collect();
        let running = &running;
        let this = &*self;
        this.wait_for("a leader and streaming replicas", || async move {
            let leader = this.current_leader().await?;
            let (_, body) = this.rest(leader, "GET", "/patroni", None).await.ok()?;
            let status: Value = serde_json::from_str(&body).ok()?;
            // Streaming replicas by name (pg_basebackup's WAL stream shows
            // up here too, as application "pg_basebackup").
            let replicas: Vec<&str> = running
                .iter()
                .filter(|&&i| i != leader)
                .map(|&i| this.nodes[i].name.as_str())
                .collect();
            let streaming_replicas: Vec<&Value> = status["replication"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter(|r| r["state"] == "streaming")
                        .filter(|r| replicas.iter().any(|name| r["application_name"] == *name))
                        .collect()
                })
                .unwrap_or_default();
            let members = this.members().await;
            let all_running = running
                .iter()
                .all(|&i| members.iter().any(|m| m.node == i && m.state == "running"));
            let ready = streaming_replicas.len() == replicas.len()
                && all_running
                && this.writable_node().await == Some(leader);
            ready.then_some(leader)
        })
        .await
    }

    /// The node a read-write connect through [`PatroniCluster::config`] lands
    /// on, if one succeeds and runs a write (`CREATE TEMP TABLE`).
    pub async fn writable_node(&self) -> Option<usize> {
        let client = connect(&self.config()).await.ok()?;
        client
            .batch_execute("CREATE TEMP TABLE dbretry_harness_probe (x int)")
            .await
            .ok()?;
        let row = client
            .query_one("SELECT inet_server_port()", &[])
            .await
            .ok()?;
        self.node_of_port(u16::try_from(row.get::<_, i32>(0)).ok()?)
    }

    // ----- faults -----

    /// Switchover through the leader's REST API (`POST /switchover`) to
    /// `candidate`, or to a replica Patroni picks; waits until the new leader
    /// accepts writes and returns it (prints how long that took).
    pub async fn switchover(&self, candidate: Option<usize>) -> usize {
        let old = self.leader().await;
        let began = Instant::now();
        let mut body = json!({ "leader": self.nodes[old].name });
        if let Some(candidate) = candidate {
            body["candidate"] = json!(self.nodes[candidate].name);
        }
        let answer = self
            .rest(old, "POST", "/switchover", Some(&body.to_string()))
            .await;
        match &answer {
            Ok((200, _)) => {}
            _ => panic!(
                "{}",
                self.failure(&format!("POST /switchover {body}: {answer:?}"))
            ),
        }
        let new = self.wait_for_leader_change(old).await;
        if let Some(candidate) = candidate {
            assert_eq!(new, candidate, "switchover went to another node");
        }
        println!(
            "Patroni switchover node{old} -> node{new}: writable after {:?}",
            began.elapsed()
        );
        new
    }

    /// Failover: `kill -9` the leader's Patroni and postmaster, wait until
    /// another node accepts writes, and return it (prints how long that
    /// took). The old leader stays down; [`PatroniCluster::start_node`]
    /// brings it back as a replica.
    pub async fn failover(&mut self) -> usize {
        let old = self.leader().await;
        let began = Instant::now();
        self.kill_node(old);
        let new = self.wait_for_leader_change(old).await;
        println!(
            "Patroni failover (node{old}'s Patroni and postmaster killed) -> node{new}: writable \
             after {:?}",
            began.elapsed()
        );
        new
    }

    /// `kill -9` of node `node`'s postmaster only: its Patroni notices and
    /// restarts it in place (crash recovery), so the node keeps its role.
    /// Returns the pid that was killed.
    pub fn crash_postmaster(&self, node: usize) -> i32 {
        let pid = self.postmaster_pid(node).unwrap_or_else(|| {
            panic!("{}", self.failure(&format!("node{node} has no postmaster")))
        });
        send_signal(pid, "KILL");
        pid
    }

    /// `kill -9` of node `node`'s Patroni and then its postmaster (the
    /// postmaster's children exit on their own when it is gone).
    pub fn kill_node(&mut self, node: usize) {
        if let Some(mut patroni) = self.nodes[node].patroni.take() {
            patroni.kill();
        }
        if let Some(pid) = self.nodes[node].postmaster_pid().filter(|&p| pid_alive(p)) {
            send_signal(pid, "KILL");
            wait_until_dead_blocking(pid, Duration::from_secs(10));
        }
    }

    /// Starts node `node`'s Patroni (a fresh node bootstraps or clones; a
    /// known one rejoins). Does not wait: see
    /// [`PatroniCluster::wait_until_healthy`].
    pub fn start_node(&mut self, node: usize) {
        assert!(
            self.nodes[node].patroni.is_none(),
            "node{node}'s Patroni is already running"
        );
        let mut cmd = unprivileged_command(&self.python);
        let dir = &self.nodes[node].dir;
        cmd.arg(&self.patroni)
            .arg(self.nodes[node].config_file())
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", dir)
            .env("LANG", "C.UTF-8");
        let daemon = Daemon::spawn(
            &format!("patroni node{node}"),
            cmd,
            &self.nodes[node].log(),
            &self.nodes[node].pid_file(),
        );
        self.nodes[node].patroni = Some(daemon);
    }

    /// The postmaster pid of node `node`, if its `postmaster.pid` names a live one.
    pub fn postmaster_pid(&self, node: usize) -> Option<i32> {
        self.nodes[node].postmaster_pid().filter(|&p| pid_alive(p))
    }

    /// The Patroni pid of node `node`, if it runs.
    pub fn patroni_pid(&self, node: usize) -> Option<i32> {
        self.nodes[node].patroni.as_ref().map(Daemon::pid)
    }

    /// Node `node`'s log: Patroni's and its PostgreSQL's output.
    pub fn node_log(&self, node: usize) -> String {
        read_log(&self.nodes[node].log())
    }

    /// The options the cluster was started with.
    pub fn options(&self) -> PatroniOptions {
        self.options
    }

    // ----- internals -----

    /// Starts etcd on fresh ports (retrying if a port was taken) and waits
    /// for `GET /health`.
    async fn start_etcd(&mut self, program: &Path) {
        let data = self.root.path().join("etcd");
        let log = self.root.path().join("etcd.log");
        let pid_file = self.root.path().join("etcd.pid");
        for _ in 0..5 {
            let client_url = format!("http://{HOST}:{}", free_port());
            let peer_url = format!("http://{HOST}:{}", free_port());
            let _ = std::fs::remove_dir_all(&data);
            let mut cmd = unprivileged_command(program);
            cmd.arg("--name=etcd0")
                .arg(format!("--data-dir={}", data.display()))
                .arg(format!("--listen-client-urls={client_url}"))
                .arg(format!("--advertise-client-urls={client_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster=etcd0={peer_url}"))
                .args([
                    "--initial-cluster-state=new",
                    "--logger=zap",
                    "--log-outputs=stderr",
                    // Throwaway data on tmpfs: skipping fsync costs nothing.
                    "--unsafe-no-fsync",
                ])
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("HOME", self.root.path());
            let mut daemon = Daemon::spawn("etcd", cmd, &log, &pid_file);
            self.etcd_port = client_url
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("port in URL");
            let deadline = Instant::now() + WAIT_TIMEOUT;
            loop {
                if !daemon.is_running() {
                    break;
                }
                if http(self.etcd_port, "GET", "/health", None)
                    .await
                    .is_ok_and(|(status, body)| status == 200 && body.contains("true"))
                {
                    self.etcd = Some(daemon);
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "etcd did not become healthy:\n{}",
                    log_tail(&log)
                );
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            if !read_log(&log).contains("address already in use") {
                panic!("etcd exited during start:\n{}", log_tail(&log));
            }
        }
        panic!("etcd: no free ports found:\n{}", log_tail(&log));
    }

    /// Writes the `post_bootstrap` script that creates database `app` (Patroni
    /// passes it a connection string to the new leader).
    fn write_post_bootstrap_script(&self, pg_bin: &Path) -> PathBuf {
        let script = self.root.path().join("post_bootstrap.sh");
        write_owned_file(
            &script,
            &format!(
                "#!/bin/sh\nexec {} -X -v ON_ERROR_STOP=1 \"$1\" -c 'CREATE DATABASE {DATABASE} \
                 OWNER {SUPERUSER}'\n",
                pg_bin.join("psql").display()
            ),
            0o755,
        );
        script
    }

    /// Writes node `i`'s Patroni config (JSON, which YAML reads as is).
    fn write_node_config(&self, i: usize, pg_bin: &Path, post_bootstrap: &Path) {
        let node = &self.nodes[i];
        create_owned_dir(&node.dir, 0o700);
        let options = self.options;
        let rest = format!("{HOST}:{}", node.rest_port);
        let pg = format!("{HOST}:{}", node.pg_port);
        let config = json!({
            "scope": "dbretry",
            "namespace": "/dbretry/",
            "name": node.name,
            "log": { "level": "INFO" },
            "restapi": { "listen": rest, "connect_address": rest },
            "etcd3": { "hosts": format!("{HOST}:{}", self.etcd_port) },
            "bootstrap": {
                "dcs": {
                    "ttl": options.ttl,
                    "loop_wait": options.loop_wait,
                    "retry_timeout": options.retry_timeout,
                    "maximum_lag_on_failover": 1_048_576,
                    "postgresql": {
                        "use_pg_rewind": true,
                        "remove_data_directory_on_rewind_failure": true,
                        "remove_data_directory_on_diverged_timelines": true,
                        "use_slots": true,
                        // full_page_writes stays on: pg_rewind and crash
                        // recovery of a killed leader need it.
                        "parameters": {
                            "fsync": "off",
                            "synchronous_commit": "off",
                            "max_connections": 50,
                            "shared_buffers": "16MB",
                            "wal_level": "replica",
                            "hot_standby": "on",
                            "max_wal_senders": 10,
                            "max_replication_slots": 10,
                            // A replica whose first try failed (its slot not
                            // created yet) retries after 0.5 s, not 5 s.
                            "wal_retrieve_retry_interval": "500ms",
                            "wal_log_hints": "on",
                        },
                    },
                },
                "initdb": [
                    { "encoding": "UTF8" },
                    "no-locale",
                    "no-sync",
                    { "auth-host": "scram-sha-256" },
                    { "auth-local": "trust" },
                ],
                "post_bootstrap": post_bootstrap,
            },
            "postgresql": {
                "listen": pg,
                "connect_address": pg,
                "data_dir": node.data_dir(),
                "bin_dir": pg_bin,
                "pgpass": node.dir.join("pgpass"),
                "authentication": {
                    "superuser": { "username": SUPERUSER, "password": PASSWORD },
                    "replication": {
                        "username": REPLICATION_USER,
                        "password": REPLICATION_PASSWORD,
                    },
                },
                "parameters": {
                    "unix_socket_directories": node.dir,
                    "log_connections": "on",
                },
                // Clone with a fast checkpoint: the default (spread) makes a
                // replica wait minutes for pg_basebackup.
                "basebackup": [{ "checkpoint": "fast" }],
                "pg_hba": [
                    "local all all trust",
                    format!("host all all {HOST}/32 scram-sha-256"),
                    format!("host replication {REPLICATION_USER} {HOST}/32 scram-sha-256"),
                ],
            },
        });
        write_owned_file(&node.config_file(), &config.to_string(), 0o600);
    }

    /// Maps `GET /cluster`'s members to node indexes.
    fn parse_members(&self, cluster: &Value) -> Vec<Member> {
        let Some(members) = cluster["members"].as_array() else {
            return Vec::new();
        };
        members
            .iter()
            .filter_map(|m| {
                let node = self
                    .nodes
                    .iter()
                    .position(|n| m["name"] == n.name.as_str())?;
                Some(Member {
                    node,
                    role: m["role"].as_str().unwrap_or_default().to_owned(),
                    state: m["state"].as_str().unwrap_or_default().to_owned(),
                    timeline: m["timeline"].as_u64(),
                })
            })
            .collect()
    }

    /// A REST call to node `node`'s Patroni: `(status, body)`.
    async fn rest(
        &self,
        node: usize,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> std::io::Result<(u16, String)> {
        http(self.nodes[node].rest_port, method, path, body).await
    }

    /// Polls `check` until it returns `Some`; panics with every node's log
    /// tail after [`WAIT_TIMEOUT`] of wall-clock time.
    async fn wait_for<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if Instant::now() > deadline {
                let members = self.members().await;
                panic!(
                    "{}",
                    self.failure(&format!(
                        "timed out waiting for {what} (members: {members:?})"
                    ))
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// A panic message: what failed and the tail of every node's log.
    fn failure(&self, what: &str) -> String {
        let mut text = format!("PatroniCluster ({}): {what}", self.root.path().display());
        for node in &self.nodes {
            let log = read_log(&node.log());
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(NODE_LOG_LINES)..].join("\n");
            text.push_str(&format!(
                "\n--- {} (pg {}, rest {}) log tail ---\n{tail}",
                node.name, node.pg_port, node.rest_port
            ));
        }
        text
    }

    /// Kills everything: Patronis first (so none restarts a postmaster),
    /// then the postmasters (`SIGQUIT`, then `SIGKILL`), then etcd.
    fn shut_down_hard(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut patroni) = node.patroni.take() {
                patroni.kill();
            }
        }
        let postmasters: Vec<i32> = self
            .nodes
            .iter()
            .filter_map(|n| n.postmaster_pid().filter(|&p| pid_alive(p)))
            .collect();
        for &pid in &postmasters {
            send_signal(pid, "CONT");
            send_signal(pid, "QUIT");
        }
        for &pid in &postmasters {
            if !wait_until_dead_blocking(pid, Duration::from_secs(5)) {
                send_signal(pid, "KILL");
                wait_until_dead_blocking(pid, Duration::from_secs(5));
            }
        }
        if let Some(mut etcd) = self.etcd.take() {
            etcd.kill();
        }
    }
}

impl Drop for PatroniCluster {
    fn drop(&mut self) {
        self.watchdog.take();
        self.shut_down_hard();
    }
}

/// One HTTP/1.1 request to `127.0.0.1:port` (`Connection: close`), on a
/// blocking thread with wall-clock timeouts: `(status, body)`.
async fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.map_or(0, str::len),
        body.unwrap_or_default()
    );
    tokio::task::spawn_blocking(move || {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream = TcpStream::connect_timeout(&addr, REST_TIMEOUT)?;
        stream.set_read_timeout(Some(REST_TIMEOUT))?;
        stream.set_write_timeout(Some(REST_TIMEOUT))?;
        stream.write_all(request.as_bytes())?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let response = String::from_utf8_lossy(&response);
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad HTTP response: {head:?}")))?;
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Ok((status, body))
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// The payload of a chunked HTTP body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// PostgreSQL's bin directory: `$DBRETRY_PG_BIN`, else the real directory of
/// the `pg_ctl` [`require`] finds (through `/usr/local/bin` symlinks).
fn postgres_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DBRETRY_PG_BIN") {
        return PathBuf::from(dir);
    }
    let pg_ctl = require("pg_ctl", "postgresql-15");
    std::fs::canonicalize(&pg_ctl)
        .ok()
        .and_then(|path| Some(path.parent()?.to_path_buf()))
        .unwrap_or_else(|| panic!("cannot resolve {}", pg_ctl.display()))
}

/// Where the cluster directory goes (as for [`super::PgCluster`]):
/// `$DBRETRY_PG_TMPDIR`, else `/dev/shm` when writable (three clusters' files
/// and WAL are written fast there), else the temp dir.
fn scratch_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DBRETRY_PG_TMPDIR") {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && tempfile::tempdir_in(shm).is_ok() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

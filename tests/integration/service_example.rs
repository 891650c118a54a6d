//! The built `service` example, run as a process against a real PostgreSQL: started while the
//! database is down, then brought up; stopped with SIGTERM while a request is in flight.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ops_rules::run_promtool;
use crate::support::{self, PASSWORD, PgCluster};

/// How long the service may take to reach a state we poll for (start, become ready, exit).
/// Generous: the bound only matters when something is broken.
const POLL_BOUND: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
const READINESS: &str = dbretry::http::DATABASE_HEALTH_PATH;
const LIVENESS: &str = dbretry::http::LIVENESS_PATH;

/// Variables cargo sets for a test process (`*`: a prefix).
const SET_FOR_TESTS: &[&str] = &[
    "CARGO_PKG_*",
    "CARGO_MANIFEST_*",
    "CARGO_BIN_EXE_*",
    "CARGO_CRATE_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "OUT_DIR",
];

/// The example's binary, built (or found up to date) once per test process with the features
/// it needs, next to the test executable: `target/<profile>/examples/service`.
fn example_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("the test executable's path");
            // target/<profile>/deps/integration-HASH
            let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
            let binary = profile_dir.join("examples").join("service");
            // `cargo test` builds examples, but a filtered run (`--test integration`) does not:
            // build it here, so that the test never drives a stale binary.
            if let Ok(cargo) = std::env::var("CARGO") {
                let target_dir = profile_dir.parent().unwrap();
                let mut build = Command::new(cargo);
                // The variables cargo sets for this test process are not the outer cargo's:
                // build scripts that watch them (ring's watches OUT_DIR) would rebuild.
                for (name, _) in std::env::vars_os() {
                    let name = name.to_string_lossy();
                    if SET_FOR_TESTS.iter().any(|set| match set.strip_suffix('*') {
                        Some(prefix) => name.starts_with(prefix),
                        None => name == *set,
                    }) {
                        build.env_remove(&*name);
                    }
                }
                build
                    .args(["build", "--example", "service", "--all-features"])
                    .arg("--target-dir")
                    .arg(target_dir)
                    .current_dir(env!("CARGO_MANIFEST_DIR"));
                if profile_dir.file_name().is_some_and(|p| p == "release") {
                    build.arg("--release");
                }
                let output = build.output().expect("run cargo build --example service");
                assert!(
                    output.status.success(),
                    "cargo build --example service failed:\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            assert!(
                binary.exists(),
                "{} is missing: run `cargo build --example service --all-features`",
                binary.display()
            );
            binary
        })
        .clone()
}

/// The example running as a child process, its output collected for failure messages.
struct Service {
    child: Child,
    addr: SocketAddr,
    output: Arc<Mutex<String>>,
}

impl Service {
    /// Starts the example with `env` on a free loopback port; returns once it listens.
    /// Retries on another port if the chosen one was taken in between.
    async fn start(env: &[(&str, &str)]) -> Service {
        for _ in 0..5 {
            let addr = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
            let mut command = Command::new(example_binary());
            command
                .env("LISTEN", addr.to_string())
                .env("RUST_LOG", "info,dbretry=info")
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = command.spawn().expect("start the service example");
            let output = Arc::new(Mutex::new(String::new()));
            collect(child.stdout.take().unwrap(), &output);
            collect(child.stderr.take().unwrap(), &output);
            let mut service = Service {
                child,
                addr,
                output,
            };
            let listening = service
                .poll("the service to listen", |s| {
                    if s.log().contains("listening on") {
                        Some(true)
                    } else if s.exit_status().is_some() {
                        Some(false)
                    } else {
                        None
                    }
                })
                .await;
            if listening {
                return service;
            }
            assert!(
                service.log().contains("cannot listen"),
                "the service exited at start-up:\n{}",
                service.log()
            );
        }
        panic!("no free port to start the service on");
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    fn log(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait for the service")
    }

    fn signal(&self, signal: &str) {
        assert!(
            support::send_signal(self.pid(), signal),
            "kill -{signal} failed"
        );
    }

    /// Polls `check` until it answers, within [`POLL_BOUND`].
    async fn poll<T>(&mut self, what: &str, mut check: impl FnMut(&mut Self) -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(answer) = check(self) {
                return answer;
            }
            assert!(
                started.elapsed() < POLL_BOUND,
                "timed out waiting for {what}; the service's output:\n{}",
                self.log()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// GETs `path` until `accept` takes the answer, within [`POLL_BOUND`].
    async fn get_until(
        &mut self,
        path: &str,
        what: &str,
        accept: impl Fn(u16, &str) -> bool,
    ) -> (u16, String) {
        let started = Instant::now();
        loop {
            let answer = get(self.addr, path).await;
            if let Ok((status, body)) = &answer
                && accept(*status, body)
            {
                return (*status, body.clone());
            }
            assert!(
                self.exit_status().is_none(),
                "the service exited while waiting for {what}:\n{}",
                self.log()
            );
            assert!(
                started.elapsed() < POLL_BOUND,
                "timed out waiting for {what}; last answer {answer:?}; the service's output:\n{}",
                self.log()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn get(&mut self, path: &str) -> (u16, String) {
        match get(self.addr, path).await {
            Ok(answer) => answer,
            Err(e) => panic!("GET {path}: {e}; the service's output:\n{}", self.log()),
        }
    }

    /// Waits for the process to exit, within [`POLL_BOUND`].
    async fn exited(&mut self) -> ExitStatus {
        self.poll("the service to exit", Self::exit_status).await
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.exit_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Appends every line of `stream` to `output`, on a thread of its own.
fn collect(stream: impl std::io::Read + Send + 'static, output: &Arc<Mutex<String>>) {
    let output = Arc::clone(output);
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut output = output.lock().unwrap();
            output.push_str(&line);
            output.push('\n');
        }
    });
}

/// A plain HTTP/1.1 GET: the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let malformed = || std::io::Error::other(format!("malformed response: {response:?}"));
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(malformed)?;
    let body = response.split_once("\r\n\r\n").ok_or_else(malformed)?.1;
    Ok((status, body.to_owned()))
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The value of the series `series` (name and labels exactly as rendered) in a scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_while_the_database_is_down_it_is_live_not_ready_and_serves_once_the_database_is_up()
 {
    let pg = PgCluster::init().await;
    let url = pg.url();
    // Requests wait out the whole outage instead of the example's default 10 s.
    let mut service =
        Service::start(&[("DATABASE_URL", &url), ("DB_RETRY_MAX_ELAPSED", "600")]).await;

    // Before any give-up, the series an outage alert needs are there at zero, so that
    // increase() sees this very first outage.
    let scrape = service.get("/metrics").await.1;
    for (series, value) in [
        (
            r#"dbretry_give_ups_total{pool="default",phase="connect",reason="deadline"}"#,
            0.0,
        ),
        (
            r#"dbretry_checkout_timeouts_total{pool="default",cause="pool_exhausted"}"#,
            0.0,
        ),
        (
            r#"dbretry_circuit_state{pool="default",state="closed"}"#,
            1.0,
        ),
        (r#"dbretry_circuit_state{pool="default",state="open"}"#, 0.0),
    ] {
        assert_eq!(sample(&scrape, series), Some(value), "{series}\n{scrape}");
    }

    let (status, body) = service.get(LIVENESS).await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = service
        .get_until(
            &format!("{READINESS}?details=yes"),
            "readiness to name the cause of the outage",
            |status, body| status == 503 && body.contains("connection refused"),
        )
        .await;
    let report = &json(&body)["databases"]["default"];
    assert_eq!(report["status"], "unhealthy", "{body}");
    assert!(
        report["message"]
            .as_str()
            .unwrap()
            .starts_with("no answer within 2s; last connect error"),
        "{body}"
    );
    assert_eq!(report["last_error"]["class"], "transient", "{body}");
    assert_eq!(
        report["last_error"]["io_error"], "connection refused",
        "{body}"
    );
    assert!(!body.contains(PASSWORD), "{body}");

    // The errors of the health route are JSON too.
    let (status, body) = service.get(&format!("{READINESS}?details=maybe")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(json(&body)["status"], "bad_request", "{body}");
    let (status, body) = service.get(&format!("{READINESS}?detials=1")).await;
    assert_eq!(status, 400, "{body}");
    assert!(json(&body)["message"].as_str().unwrap().contains("detials"));
    let (status, body) = service.get(&format!("{READINESS}?database=nope")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(json(&body)["databases"], serde_json::json!(["default"]));
    let (_, body) = service.get(&format!("{READINESS}?details=OFF")).await;
    assert!(
        json(&body)["databases"]["default"]["last_error"].is_null(),
        "{body}"
    );

    let scrape = service.get("/metrics").await.1;
    run_promtool(&["check", "metrics"], Some(&scrape));
    let refused = sample(
        &scrape,
        r#"dbretry_attempts_total{pool="default",phase="connect",outcome="transient"}"#,
    );
    assert!(refused.is_some_and(|n| n >= 1.0), "{scrape}");
    assert_eq!(
        sample(&scrape, r#"dbretry_health_status{pool="default"}"#),
        Some(0.0),
        "{scrape}"
    );
    assert!(
        sample(
            &scrape,
            r#"dbretry_health_check_timeouts_total{pool="default"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{scrape}"
    );

    // A request made during the outage waits for the database.
    let addr = service.addr;
    let early = tokio::spawn(async move { get(addr, "/visits").await });
    assert!(service.exit_status().is_none(), "{}", service.log());

    pg.start_server().await;
    service
        .get_until(
            READINESS,
            "readiness once the database is up",
            |status, _| status == 200,
        )
        .await;
    let (status, body) = early.await.unwrap().expect("the early request");
    assert_eq!((status, body.as_str()), (200, "1 visits\n"));
    let (status, body) = service.get("/visits").await;
    assert_eq!((status, body.as_str()), (200, "2 visits\n"));

    let scrape = service.get("/metrics").await.1;
    run_promtool(&["check", "metrics"], Some(&scrape));
    assert_eq!(
        sample(&scrape, r#"dbretry_health_status{pool="default"}"#),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(
        sample(&scrape, r#"dbretry_pool_max_size{pool="default"}"#),
        Some(8.0),
        "{scrape}"
    );
    assert!(!service.log().contains(PASSWORD), "{}", service.log());

    service.signal("TERM");
    let status = service.exited().await;
    assert!(status.success(), "{status}\n{}", service.log());
}

/// Holds an exclusive lock on the example's table, so that a request's INSERT waits for it:
/// a request in flight for as long as the test wants.
struct TableLock(tokio_postgres::Client);

impl TableLock {
    async fn take(pg: &PgCluster) -> TableLock {
        let admin = pg.admin().await;
        admin
            .batch_execute("BEGIN; LOCK TABLE visits IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        TableLock(admin)
    }

    /// Waits until a statement is blocked on the lock.
    async fn wait_for_a_waiter(&self) {
        let started = Instant::now();
        loop {
            let waiting: i64 = self
                .0
                // Not pg_stat_activity: a statement blocked while being parsed still shows
                // the connection's previous query there.
                .query_one(
                    "SELECT count(*) FROM pg_locks \
                     WHERE relation = 'visits'::regclass AND NOT granted",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if waiting > 0 {
                return;
            }
            assert!(
                started.elapsed() < POLL_BOUND,
                "no request waits on the lock"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn release(self) {
        self.0.batch_execute("ROLLBACK").await.unwrap();
    }
}

/// Starts the example on a running database, puts a request in flight and sends SIGTERM;
/// `while_draining` runs after the signal, with the request still blocked. Then releases the
/// request and checks that it completes and that the process exits 0.
async fn drain_scenario(drain_delay: &str, while_draining: impl AsyncFnOnce(&mut Service)) {
    let pg = PgCluster::start().await;
    let url = pg.url();
    let mut service =
        Service::start(&[("DATABASE_URL", &url), ("DRAIN_DELAY_SECS", drain_delay)]).await;
    service
        .get_until(READINESS, "readiness", |status, _| status == 200)
        .await;
    let (status, body) = service.get("/visits").await;
    assert_eq!((status, body.as_str()), (200, "1 visits\n"));

    let lock = TableLock::take(&pg).await;
    let addr = service.addr;
    let in_flight = tokio::spawn(async move { get(addr, "/visits").await });
    lock.wait_for_a_waiter().await;

    service.signal("TERM");
    while_draining(&mut service).await;
    // New connections are refused now, and the process waits for the request.
    let started = Instant::now();
    while get(service.addr, LIVENESS).await.is_ok() {
        assert!(
            started.elapsed() < POLL_BOUND,
            "still accepting connections:\n{}",
            service.log()
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    assert!(
        service.exit_status().is_none(),
        "exited with a request in flight:\n{}",
        service.log()
    );

    lock.release().await;
    let (status, body) = in_flight.await.unwrap().expect("the in-flight request");
    assert_eq!((status, body.as_str()), (200, "2 visits\n"));
    let status = service.exited().await;
    assert!(status.success(), "{status}\n{}", service.log());
    let log = service.log();
    assert!(log.contains("every in-flight request finished"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_off_at_once_then_finishes_the_in_flight_request_and_exits_0() {
    // A delay longer than the test: a second SIGTERM ends it, so that nothing depends on time.
    drain_scenario("3600", async |service: &mut Service| {
        let (_, body) = service
            .get_until(READINESS, "readiness to turn off", |status, _| {
                status == 503
            })
            .await;
        assert_eq!(json(&body)["status"], "draining", "{body}");
        let (status, _) = service.get(LIVENESS).await;
        assert_eq!(status, 200);
        service.signal("TERM");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_drain_delay_sigterm_stops_accepting_and_still_finishes_the_in_flight_request() {
    // The Kubernetes manifest's setting: preStop has already waited.
    drain_scenario("0", async |_: &mut Service| {}).await;
}

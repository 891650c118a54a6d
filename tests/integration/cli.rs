//! `dbretry check`, run as the built binary against real servers and files.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, PgCluster};

fn dbretry(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_dbretry"));
    command
        .arg("check")
        .args(args)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn run(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let output = dbretry(args).output().await.unwrap();
    (output, started.elapsed())
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(output)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_0_soon_after_a_real_server_comes_up() {
    let pg = PgCluster::init().await;
    let url = pg.url();
    let child = dbretry(&["--url", &url, "--wait", "--timeout", "30", "--json"])
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pg.start_server().await;
    let ready = Instant::now();
    let output = child.wait_with_output().await.unwrap();
    println!("server ready → dbretry exited: {:?}", ready.elapsed());
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let body = json(&output);
    assert_eq!(body["databases"][0]["status"], "accepting connections");
    assert!(body["databases"][0]["attempts"].as_u64().unwrap() > 1);
    assert!(!stdout(&output).contains(support::PASSWORD));
}

#[tokio::test]
async fn a_wrong_password_exits_3_at_once_after_one_attempt() {
    let pg = PgCluster::start().await;
    let url = pg.url_with(support::SUPERUSER, "wrong-pw-xyz", support::DATABASE);
    let (output, took) = run(&["--url", &url, "--wait", "--timeout", "30", "--json"]).await;
    println!("wrong password reported in {took:?}");
    assert_eq!(output.status.code(), Some(3), "{}", stdout(&output));
    let body = json(&output);
    assert_eq!(body["databases"][0]["attempts"], 1);
    assert_eq!(body["databases"][0]["error"]["sqlstate"], "28P01");
    assert!(took < Duration::from_secs(30));
    let printed = stdout(&output);
    assert!(!printed.contains("wrong-pw-xyz"), "{printed}");
    assert!(
        printed.contains(":***@127.0.0.1"),
        "the target is printed redacted: {printed}"
    );
}

#[tokio::test]
async fn a_closed_port_exits_2_at_the_timeout() {
    let port = support::free_port().to_string();
    let url = format!("postgres://app:pw@127.0.0.1:{port}/app");
    let (output, took) = run(&["--url", &url, "--wait", "--timeout", "2", "--json"]).await;
    println!("closed port gave up after {took:?}");
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    assert!(
        took >= Duration::from_millis(1500),
        "waited until about the timeout: {took:?}"
    );
    assert!(json(&output)["databases"][0]["attempts"].as_u64().unwrap() > 2);
}

#[tokio::test]
async fn a_server_that_is_starting_up_at_the_deadline_exits_1() {
    let pg = PgCluster::init().await;
    pg.start_as_not_ready_standby().await;
    let (output, _) = run(&["--url", &pg.url(), "--wait", "--timeout", "1", "--json"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert_eq!(json(&output)["databases"][0]["error"]["sqlstate"], "57P03");
}

#[tokio::test]
async fn all_reports_each_named_database() {
    let pg = PgCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("app.sqlite3");
    rusqlite::Connection::open(&sqlite).unwrap();
    let config = dir.path().join("dbretry.toml");
    std::fs::write(
        &config,
        format!(
            "[retry]\nmax_delay = 0.2\n\n[databases.default]\nurl = \"{}\"\n\n[databases.cache]\nurl = \"sqlite:{}\"\n",
            pg.url(),
            sqlite.display()
        ),
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    let (output, _) = run(&["--config", &config, "--all"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let printed = stdout(&output);
    let lines: Vec<_> = printed.lines().collect();
    assert_eq!(lines.len(), 2, "{printed}");
    // In the file's order.
    assert!(
        lines[0].starts_with("default (postgres://dbretry:***@127.0.0.1:"),
        "{printed}"
    );
    assert!(lines[1].starts_with("cache (sqlite:"), "{printed}");
    assert!(
        lines.iter().all(|l| l.contains("accepting connections")),
        "{printed}"
    );

    pg.stop_fast().await;
    let (output, _) = run(&["--config", &config, "--all", "--json"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let body = json(&output);
    assert_eq!(body["databases"][0]["exit_code"], 2);
    assert_eq!(body["databases"][1]["exit_code"], 0);

    let (output, _) = run(&["--config", &config, "--database", "nope"]).await;
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no database \"nope\""));
}

#[tokio::test]
async fn bad_parameters_exit_3() {
    for args in [
        vec!["--url", "mysql://x/y"],
        vec!["--url", "postgres://a:b@h/d", "--timeout", "-1"],
        vec!["--unknown-flag"],
        vec![],
    ] {
        let (output, _) = run(&args).await;
        assert_eq!(
            output.status.code(),
            Some(3),
            "{args:?}: {}",
            stdout(&output)
        );
    }
}

#[tokio::test]
async fn a_missing_sqlite_file_is_not_created_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.sqlite3");
    let url = format!("sqlite:{}", path.display());
    let (output, _) = run(&["--url", &url]).await;
    assert_eq!(output.status.code(), Some(3), "{}", stdout(&output));
    assert!(!path.exists());
}

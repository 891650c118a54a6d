//! `dbretry check` given bad or tricky input, one test per message the issue found wrong, run
//! as the built binary: passwords stay hidden, every rejected value exits 3 with a message
//! saying where it came from and what is accepted, and `--wait` follows the whole policy.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::support;

/// `dbretry check ARGS` with only the given `DB_RETRY_*` / `DATABASE_URL` variables.
fn dbretry(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dbretry"));
    command.arg("check").args(args).env_remove("DATABASE_URL");
    for (name, _) in std::env::vars_os() {
        let upper = name.to_string_lossy().to_ascii_uppercase();
        if upper.starts_with("DB_RETRY_") || upper == "PGSSLROOTCERT" {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command.output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn both(output: &Output) -> String {
    format!("{}{}", stdout(output), stderr(output))
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", both(output)))
}

fn closed_url(userinfo: &str) -> String {
    format!(
        "postgres://{userinfo}@127.0.0.1:{}/app",
        support::free_port()
    )
}

const DURATIONS: &str =
    "seconds (0.5) or a number with a unit (500ms, 2s, 1m, 1h), up to 1 year (31536000 s)";

#[test]
fn a_base64_password_prints_redacted_in_plain_verbose_and_json() {
    let port = support::free_port();
    let url = format!("postgres://b64:q8Z/x+Kp3w==@127.0.0.1:{port}/app");
    let expected = format!("postgres://b64:***@127.0.0.1:{port}/app");
    for mode in [None, Some("-v"), Some("--json")] {
        let mut args = vec!["--url", url.as_str()];
        args.extend(mode);
        let output = dbretry(&args, &[]);
        let printed = both(&output);
        assert_eq!(output.status.code(), Some(2), "{printed}");
        assert!(printed.contains(&expected), "{mode:?}: {printed}");
        assert!(!printed.contains("q8Z/x+Kp3w=="), "{mode:?}: {printed}");
    }
}

#[test]
fn key_value_passwords_with_spaces_around_the_equals_or_escaped_quotes_print_redacted() {
    let port = support::free_port();
    for (password, secret) in [("password = s3cret", "s3cret"), (r"password='a\'b'", "a'b")] {
        let url = format!("host=127.0.0.1 port={port} user=u {password}");
        let output = dbretry(&["--url", &url, "--json"], &[]);
        assert_eq!(output.status.code(), Some(2), "{}", both(&output));
        assert_eq!(
            json(&output)["databases"][0]["target"],
            format!("postgres://u:***@127.0.0.1:{port}")
        );
        let printed = both(&output);
        assert!(
            !printed.contains(secret) && !printed.contains("b'"),
            "{printed}"
        );
    }
}

/// A config file in a temporary directory (removed when dropped).
struct ConfigFile {
    _dir: tempfile::TempDir,
    path: String,
}

impl ConfigFile {
    fn new(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dbretry.toml");
        std::fs::write(&path, text).unwrap();
        Self {
            path: path.to_string_lossy().into_owned(),
            _dir: dir,
        }
    }

    fn check(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut all = vec!["--config", self.path.as_str()];
        all.extend_from_slice(args);
        dbretry(&all, env)
    }
}

fn with_config(text: &str, args: &[&str]) -> Output {
    ConfigFile::new(text).check(args, &[])
}

#[test]
fn config_file_errors_name_the_file_line_and_key_without_printing_the_line() {
    let cases = [
        (
            "[databases.default]\nurl = [\"postgres://app:TOPSECRET@h/d\"\n",
            "dbretry.toml:2, key `databases.default.url`: invalid array; expected `]`",
        ),
        (
            "[databases.default]\nurl = \"postgres://app:TOPSECRET@h/d\"\nurl = \"postgres://app:TOPSECRET@h/d\"\n",
            "dbretry.toml:3, key `databases.default.url`: duplicate key `url` in table `databases.default`",
        ),
        (
            "[databases]\ndefault = { url = \"postgres://app:TOPSECRET@h/d\"\n",
            "dbretry.toml:2, key `databases.default`: invalid inline table; expected `}`",
        ),
        (
            "[databases.default]\nurl = [\"postgres://app:TOPSECRET@h/d\"]\n",
            "invalid `databases.default.url` (",
        ),
    ];
    for (text, expected) in cases {
        let output = with_config(text, &[]);
        let printed = both(&output);
        assert_eq!(output.status.code(), Some(3), "{printed}");
        assert!(printed.contains(expected), "{text}: {printed}");
        assert!(!printed.contains("TOPSECRET"), "{printed}");
    }
}

#[test]
fn an_invalid_connection_string_is_described_not_echoed_and_v_keeps_the_reason() {
    let output = dbretry(
        &["--url", "postgres://app:TOPSECRET@h/d?TOPSECRET", "-v"],
        &[],
    );
    let printed = both(&output);
    assert_eq!(output.status.code(), Some(3), "{printed}");
    assert!(
        printed.contains("invalid connection string (--url): a URL parameter has no `=`"),
        "{printed}"
    );
    assert!(!printed.contains("TOPSECRET"), "{printed}");

    let env = [(
        "DATABASE_URL",
        "host=127.0.0.1 port=notaport password=TOPSECRET",
    )];
    let output = dbretry(&["-v"], &env);
    let printed = both(&output);
    assert_eq!(output.status.code(), Some(3), "{printed}");
    assert!(
        printed
            .contains("invalid connection string (DATABASE_URL): invalid value for option `port`"),
        "{printed}"
    );
    assert!(!printed.contains("TOPSECRET"), "{printed}");
}

#[test]
fn a_connection_string_on_the_command_line_without_url_is_not_echoed_by_the_argument_parser() {
    let output = dbretry(&["postgres://app:TOPSECRET@h/d"], &[]);
    let printed = both(&output);
    assert_eq!(output.status.code(), Some(3), "{printed}");
    assert!(
        printed.contains("unexpected argument found (not shown"),
        "{printed}"
    );
    assert!(!printed.contains("TOPSECRET"), "{printed}");
}

#[test]
fn every_rejected_timeout_exits_3_with_the_accepted_range() {
    let url = closed_url("u");
    let cases = [
        (
            "1e20",
            "invalid --timeout = 1e20 s: expected a duration > 0",
        ),
        (
            "18446744073709551616",
            "invalid --timeout = 1.8446744073709552e19 s: expected a duration > 0",
        ),
        (
            "nan",
            "invalid --timeout: not a duration; expected a duration > 0",
        ),
        ("-1", "invalid --timeout = -1 s: expected a duration > 0"),
        ("0", "invalid --timeout = 0 s: expected a duration > 0"),
        (
            "1us",
            "invalid --timeout: not a duration; expected a duration > 0",
        ),
        (
            "",
            "invalid --timeout: not a duration; expected a duration > 0",
        ),
    ];
    for wait in [false, true] {
        for (timeout, message) in cases {
            let mut args = vec!["--url", url.as_str(), "--timeout", timeout];
            if wait {
                args.push("--wait");
            }
            let output = dbretry(&args, &[]);
            let printed = stderr(&output);
            assert_eq!(output.status.code(), Some(3), "{timeout}: {printed}");
            assert_eq!(
                printed.trim(),
                format!("dbretry: {message}: {DURATIONS}"),
                "{timeout}"
            );
        }
    }
}

#[test]
fn initial_delay_alone_in_the_environment_is_not_an_error_about_max_delay() {
    let url = closed_url("u");
    let env = [("DB_RETRY_INITIAL_DELAY", "2")];
    let output = dbretry(&["--url", &url, "--wait", "--timeout", "100ms", "-v"], &env);
    let printed = both(&output);
    assert_eq!(output.status.code(), Some(2), "{printed}");
    assert!(!printed.contains("invalid"), "{printed}");
    assert!(
        printed.contains("initial_delay: 2 s (DB_RETRY_INITIAL_DELAY)"),
        "{printed}"
    );
}

#[test]
fn a_conflict_between_two_settings_names_both_and_where_each_came_from() {
    let url = closed_url("u");
    let file = ConfigFile::new(&format!(
        "[retry]\ninitial_delay = \"2s\"\n[databases.default]\nurl = \"{url}\"\n"
    ));
    // Alone, the file's initial delay raises the CLI's default 1 s cap.
    let output = file.check(&["--wait", "--timeout", "100ms"], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", both(&output));
    // With a cap set by the environment, the two conflict: both are named.
    let output = file.check(&["--wait"], &[("DB_RETRY_MAX_DELAY", "1")]);
    assert_eq!(output.status.code(), Some(3), "{}", both(&output));
    assert_eq!(
        stderr(&output).trim(),
        format!(
            "dbretry: invalid DB_RETRY_MAX_DELAY = 1 s: expected a duration ≥ the initial delay, \
             2 s from `retry.initial_delay` ({}:2)",
            file.path
        )
    );
}

#[test]
fn misspelled_variables_exit_3_naming_the_closest_known_name() {
    let url = closed_url("u");
    for (var, value, closest) in [
        ("DB_RETRY_MAX_ATTEMPT", "0", "DB_RETRY_MAX_ATTEMPTS"),
        ("DB_RETRY_MAXDELAY", "abc", "DB_RETRY_MAX_DELAY"),
    ] {
        let output = dbretry(&["--url", &url], &[(var, value)]);
        let printed = stderr(&output);
        assert_eq!(output.status.code(), Some(3), "{printed}");
        assert!(
            printed.starts_with(&format!(
                "dbretry: unknown variable {var}: did you mean {closest}?"
            )),
            "{printed}"
        );
    }
}

#[test]
fn durations_beyond_a_year_say_the_range_and_units_are_accepted() {
    let url = closed_url("u");
    let output = dbretry(&["--url", &url], &[("DB_RETRY_MAX_DELAY", "1e20")]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        stderr(&output).trim(),
        format!(
            "dbretry: invalid DB_RETRY_MAX_DELAY = 1e20 s: expected a duration ≥ 0: {DURATIONS}"
        )
    );
    let env = [
        ("DB_RETRY_MAX_DELAY", "500ms"),
        ("DB_RETRY_INITIAL_DELAY", "0.05s"),
        ("DB_RETRY_ATTEMPT_TIMEOUT", "2s"),
    ];
    let output = dbretry(&["--url", &url, "--wait", "--timeout", "200ms"], &env);
    assert_eq!(output.status.code(), Some(2), "{}", both(&output));
}

/// The delays `dbretry check -v` logged before each retry, in order.
fn logged_delays(output: &Output) -> Vec<u128> {
    stderr(output)
        .lines()
        .filter(|line| line.contains("transient failure, retrying"))
        .filter_map(|line| {
            let value = line.split("delay_ms=").nth(1)?;
            value.split(' ').next()?.parse().ok()
        })
        .collect()
}

#[test]
fn wait_follows_max_attempts_and_jitter_from_the_environment() {
    let url = closed_url("u");
    let env = [
        ("DB_RETRY_MAX_ATTEMPTS", "4"),
        ("DB_RETRY_SEED", "7"),
        ("DB_RETRY_JITTER_STRATEGY", "full"),
    ];
    let output = dbretry(
        &["--url", &url, "--wait", "--timeout", "1m", "-v", "--json"],
        &env,
    );
    assert_eq!(output.status.code(), Some(2), "{}", both(&output));
    let body = json(&output);
    assert_eq!(body["databases"][0]["attempts"], 4);
    assert_eq!(body["databases"][0]["error"]["kind"], "retry_exhausted");
    // The same settings over the CLI's defaults (at most 1 s between tries) give the schedule
    // the CLI must have slept: full jitter, seeded.
    let expected: Vec<u128> = dbretry::RetryPolicy::builder()
        .max_attempts(4)
        .max_delay(std::time::Duration::from_secs(1))
        .seed(7)
        .jitter_strategy(dbretry::JitterStrategy::Full)
        .build()
        .unwrap()
        .schedule()
        .map(|delay| delay.as_millis())
        .collect();
    assert_eq!(logged_delays(&output), expected, "{}", stderr(&output));
}

#[test]
fn wait_follows_max_elapsed_from_the_environment_and_timeout_overrides_it() {
    let url = closed_url("u");
    // A first delay of 5 s cannot fit in a 1 s deadline: one last try is squeezed in before it,
    // after a sleep shorter than the deadline, and then the check gives up on the deadline.
    let env = [
        ("DB_RETRY_MAX_ELAPSED", "1"),
        ("DB_RETRY_INITIAL_DELAY", "5"),
    ];
    let output = dbretry(&["--url", &url, "--wait", "-v", "--json"], &env);
    assert_eq!(output.status.code(), Some(2), "{}", both(&output));
    assert_eq!(json(&output)["databases"][0]["error"]["kind"], "timeout");
    let delays = logged_delays(&output);
    assert!(
        !delays.is_empty() && delays.iter().all(|ms| *ms < 1000),
        "{delays:?}: {}",
        stderr(&output)
    );
    let output = dbretry(&["--url", &url, "--wait", "--timeout", "0.5", "-v"], &env);
    assert!(
        stderr(&output).contains("max_elapsed: 500 ms (--timeout)"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn sqlite_result_codes_are_shown_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-database.sqlite3");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let url = format!("sqlite:{}", path.display());
    let output = dbretry(&["--url", &url], &[]);
    assert_eq!(output.status.code(), Some(3), "{}", both(&output));
    assert!(
        stdout(&output).contains("SQLITE_NOTADB (26)"),
        "{}",
        both(&output)
    );
    let output = dbretry(&["--url", &url, "--json"], &[]);
    let error = &json(&output)["databases"][0]["error"];
    assert_eq!(error["sqlite_code"], 26);
    assert_eq!(error["sqlite_code_name"], "SQLITE_NOTADB");
}

fn sqlite_file(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    rusqlite::Connection::open(&path).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn all_checks_the_databases_in_the_order_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["zeta", "alpha", "mid"];
    let mut text = String::new();
    for name in names {
        let file = sqlite_file(dir.path(), &format!("{name}.db"));
        text.push_str(&format!("[databases.{name}]\nurl = \"sqlite:{file}\"\n\n"));
    }
    let output = with_config(&text, &["--all"]);
    assert_eq!(output.status.code(), Some(0), "{}", both(&output));
    let order: Vec<String> = stdout(&output)
        .lines()
        .map(|line| line.split(' ').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(order, names);
    let output = with_config(&text, &["--all", "--json"]);
    let body = json(&output);
    let order: Vec<&str> = body["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|db| db["database"].as_str().unwrap())
        .collect();
    assert_eq!(order, names);
}

#[cfg(not(feature = "tls-rustls"))]
#[test]
fn sslmode_require_without_tls_support_exits_3_saying_so() {
    let url = format!("{}?sslmode=require", closed_url("u"));
    let output = dbretry(&["--url", &url, "--wait", "--timeout", "1m"], &[]);
    assert_eq!(output.status.code(), Some(3), "{}", both(&output));
    assert!(stdout(&output).contains("built without it (the tls-rustls feature)"));
}

#[cfg(feature = "tls-rustls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_connects_over_tls_verifying_the_server_certificate() {
    let pg = support::PgCluster::start().await;
    let ca = crate::tls::enable_tls(&pg).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, ca).unwrap();
    let ca_file = ca_file.to_string_lossy().into_owned();
    let url = format!("{}?sslmode=require", pg.url());
    let run = |args: Vec<String>, env: Vec<(&'static str, String)>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            dbretry(&args, &env)
        })
    };
    let output = run(
        vec![
            "--url".into(),
            url.clone(),
            "--ca-file".into(),
            ca_file.clone(),
        ],
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", both(&output));
    let output = run(
        vec!["--url".into(), url.clone()],
        vec![("PGSSLROOTCERT", ca_file.clone())],
    )
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", both(&output));
    // Against the Mozilla roots the test CA is unknown: a permanent error, at once.
    let output = run(
        vec![
            "--url".into(),
            url,
            "--wait".into(),
            "--timeout".into(),
            "1m".into(),
            "--json".into(),
        ],
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", both(&output));
    assert_eq!(json(&output)["databases"][0]["attempts"], 1);
    assert!(!both(&output).contains(support::PASSWORD));
}

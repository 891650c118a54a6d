//! No accepted value panics anywhere, and no input makes the CLI panic.
//!
//! - Every policy the validation accepts, extremes included (one attempt or four billion,
//!   delays of zero or a year, a base of `f64::MAX`, deadlines of a nanosecond or a year), runs
//!   through `Retrier::run` and a pool's reconnect on tokio's paused clock.
//! - Random command lines (flags, values out of range, URLs with passwords, broken files) never
//!   make `dbretry check` exit 101 or die of a signal, and never print the password.

use std::io;
use std::process::Command;
use std::time::Duration;

use dbretry::policy::MAX_DURATION;
use dbretry::{JitterStrategy, Retrier, RetryConfig, RetryPolicy};
use proptest::prelude::*;

use crate::support;

fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(1)),
        Just(MAX_DURATION),
        Just(MAX_DURATION - Duration::from_nanos(1)),
        (0..=MAX_DURATION.as_nanos() as u64).prop_map(Duration::from_nanos),
        (0u64..10_000).prop_map(Duration::from_millis),
    ]
}

fn any_positive_duration() -> impl Strategy<Value = Option<Duration>> {
    prop_oneof![
        Just(None),
        any_duration().prop_map(|d| Some(d.max(Duration::from_nanos(1)))),
    ]
}

prop_compose! {
    /// Any settings `build()` accepts, weighted towards the edges of every range.
    fn any_accepted_config()(
        attempts in prop_oneof![Just(1u32), Just(2), Just(u32::MAX), 1..=u32::MAX],
        a in any_duration(),
        b in any_duration(),
        base in prop_oneof![Just(1.0), Just(f64::MAX), 1.0..1e6f64, 1.0..2.0f64],
        jitter in any::<bool>(),
        factor in prop_oneof![Just(0.0), Just(1.0), 0.0..=1.0f64],
        strategy in prop::sample::select(vec![
            JitterStrategy::Proportional,
            JitterStrategy::Full,
            JitterStrategy::Equal,
            JitterStrategy::Decorrelated,
        ]),
        max_elapsed in any_positive_duration(),
        attempt_timeout in any_positive_duration(),
        seed in any::<u64>(),
    ) -> RetryConfig {
        let mut config = RetryPolicy::builder()
            .max_attempts(attempts)
            .initial_delay(a.min(b))
            .max_delay(a.max(b))
            .exponential_base(base)
            .jitter(jitter)
            .jitter_factor(factor)
            .jitter_strategy(strategy)
            .seed(seed);
        if let Some(limit) = max_elapsed {
            config = config.max_elapsed(limit);
        }
        if let Some(timeout) = attempt_timeout {
            config = config.attempt_timeout(timeout);
        }
        config.build().expect("every generated value is in range");
        config
    }
}

/// What each try does.
#[derive(Clone, Copy, Debug)]
enum Try {
    Refused,
    /// Never answers: only generated when something bounds a try.
    Hang,
    Succeed,
}

fn any_script(bounded: bool) -> impl Strategy<Value = Vec<Try>> {
    let step = if bounded {
        prop_oneof![Just(Try::Refused), Just(Try::Hang)].boxed()
    } else {
        Just(Try::Refused).boxed()
    };
    (prop::collection::vec(step, 0..6), any::<bool>()).prop_map(|(mut steps, succeed)| {
        if succeed {
            steps.push(Try::Succeed);
        }
        steps
    })
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

/// Runs `script` under `policy`; a script that runs out keeps refusing, so the policy's own
/// limits (attempts, deadline) end the run, unless the script is unbounded and endless, which
/// the caller avoids.
async fn run_script(policy: RetryPolicy, script: Vec<Try>) -> Result<u32, dbretry::Error> {
    let tries = std::sync::atomic::AtomicUsize::new(0);
    Retrier::new(policy)
        .run(|| {
            let n = tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let step = script.get(n).copied().unwrap_or(Try::Refused);
            async move {
                match step {
                    Try::Refused => Err(io::Error::from(io::ErrorKind::ConnectionRefused)),
                    Try::Hang => std::future::pending().await,
                    Try::Succeed => Ok(7),
                }
            }
        })
        .await
        .map_err(dbretry::Error::from)
}

/// A policy and a script for it: tries that hang only when something bounds a try, and a
/// success at the end when the attempt budget would not end the run soon. (A deadline does not
/// end it on the paused clock: with zero delays and instant refusals, time never moves.)
fn any_policy_and_script() -> impl Strategy<Value = (RetryPolicy, Vec<Try>)> {
    any_accepted_config().prop_flat_map(|config| {
        let policy = config.build().unwrap();
        let bounded = policy.max_elapsed().is_some() || policy.attempt_timeout().is_some();
        let ends = policy.max_attempts() <= 64;
        any_script(bounded).prop_map(move |mut script| {
            if !ends {
                script.push(Try::Succeed);
            }
            (policy.clone(), script)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// Schedules and `Retrier::run` with any accepted policy: no overflow, no panic.
    #[test]
    fn no_accepted_policy_panics_in_the_retry_path((policy, script) in any_policy_and_script()) {
        let mut schedule = policy.schedule();
        for _ in 0..64 {
            prop_assert!(schedule.next_delay() <= policy.max_delay());
        }
        prop_assert!(policy.base_delay(u32::MAX) <= policy.max_delay());
        prop_assert!(policy.schedule().take(64).all(|d| d <= policy.max_delay()));
        let result = paused_runtime().block_on(run_script(policy, script));
        if let Ok(value) = result {
            prop_assert_eq!(value, 7);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A pool's reconnect (deadpool-postgres) under any accepted policy, against a closed
    /// port, on the paused clock: `get()` ends with an error, never a panic. Attempts are
    /// capped at 8 so that a run with no deadline still ends.
    #[test]
    fn no_accepted_policy_panics_in_a_pool_reconnect(config in any_accepted_config()) {
        let attempts = config.build().unwrap().max_attempts().min(8);
        let policy = config.merge(RetryConfig::default().max_attempts(attempts)).build().unwrap();
        let port = support::free_port();
        let pg: tokio_postgres::Config =
            format!("postgres://u:pw@127.0.0.1:{port}/d").parse().unwrap();
        paused_runtime().block_on(async move {
            let manager = dbretry::deadpool_postgres::Manager::builder(pg, tokio_postgres::NoTls)
                .policy(policy)
                .build();
            let pool = dbretry::deadpool_postgres::Pool::builder(manager)
                .max_size(2)
                .build()
                .unwrap();
            for _ in 0..2 {
                let got = tokio::time::timeout(MAX_DURATION, pool.get()).await;
                prop_assert!(!matches!(got, Ok(Ok(_))), "the port is closed");
            }
            Ok(())
        })?;
    }
}

/// Durations written every way the parsers accept, at the edges: each builds a policy that runs.
#[test]
fn the_longest_accepted_durations_run_on_the_paused_clock() {
    for text in [
        "8760h",
        "525600m",
        "31536000",
        "31536000s",
        "31536000000ms",
        "1e-9",
    ] {
        let vars = [
            ("DB_RETRY_INITIAL_DELAY", text),
            ("DB_RETRY_MAX_DELAY", text),
            ("DB_RETRY_MAX_ELAPSED", text),
            ("DB_RETRY_ATTEMPT_TIMEOUT", text),
            ("DB_RETRY_MAX_ATTEMPTS", "4294967295"),
            ("DB_RETRY_EXPONENTIAL_BASE", "1.7976931348623157e308"),
        ];
        let policy = RetryConfig::from_vars(vars)
            .and_then(|config| config.build())
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        let result = paused_runtime().block_on(run_script(policy, vec![Try::Hang, Try::Refused]));
        assert!(result.is_err(), "{text}");
    }
}

// --- argv fuzzing -------------------------------------------------------------------------

/// Pieces of command lines: flags, values of every shape, connection strings with a password.
fn argv_tokens(port: u16, files: &Files) -> Vec<String> {
    let url = format!("postgres://app:{SECRET}@127.0.0.1:{port}/app");
    let mut tokens: Vec<String> = [
        "check",
        "--url",
        "--config",
        "--database",
        "--all",
        "--wait",
        "--timeout",
        "--ca-file",
        "-v",
        "--verbose",
        "--json",
        "--help",
        "-h",
        "--version",
        "-V",
        "--",
        "-",
        "--nope",
        "-x",
        "-vv",
        "--url=",
        "--timeout=",
        "help",
        "",
        "1e20",
        "-1",
        "nan",
        "inf",
        "18446744073709551616",
        "0",
        "50ms",
        "0.1",
        "1us",
        "abc",
        "é中\u{202e}",
        "%",
        "@",
        "postgres://",
        "host=",
        "sqlite:",
        "sqlite:/nonexistent/x.db",
        "default",
        "nope",
        "mysql://x/y",
        "postgres://[::1",
        "postgres://h:99999/d",
        "host=h port=-1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    tokens.extend([
        url.clone(),
        format!("--url={url}"),
        format!("{url}?sslmode=require"),
        format!("{url}?bogus"),
        format!("host=127.0.0.1 port={port} password={SECRET} x"),
        format!("host=127.0.0.1 port={port} password='{SECRET}"),
        "x".repeat(5000),
        files.valid.clone(),
        files.broken.clone(),
        files.not_toml.clone(),
    ]);
    tokens
}

const SECRET: &str = "Arg-S3cret-9f2b";

struct Files {
    _dir: tempfile::TempDir,
    valid: String,
    broken: String,
    not_toml: String,
}

impl Files {
    fn new(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.to_string_lossy().into_owned()
        };
        let url = format!("postgres://app:{SECRET}@127.0.0.1:{port}/app");
        Self {
            valid: write(
                "valid.toml",
                format!(
                    "[databases.default]\nurl = \"{url}\"\n[databases.b]\nurl = \"sqlite:/nonexistent\"\n"
                ),
            ),
            broken: write(
                "broken.toml",
                format!("[databases.default]\nurl = [\"{url}\"\n"),
            ),
            not_toml: write("not.toml", format!("{url}\n\u{0}\u{1}")),
            _dir: dir,
        }
    }
}

/// A command line: half of them well-formed `check` invocations with values of every shape
/// (so that the run gets past the argument parser into validation, parsing and probing), half
/// of them any sequence of pieces.
fn any_argv(
    tokens: Vec<String>,
    fixtures: &(u16, Files),
) -> impl Strategy<Value = Vec<String>> + use<> {
    let (port, files) = fixtures;
    let url = format!("postgres://app:{SECRET}@127.0.0.1:{port}/app");
    // Valid values appear several times, so that half the runs get as far as a connect.
    let urls = vec![
        url.clone(),
        url.clone(),
        url.clone(),
        url.clone(),
        format!("{url}?sslmode=require"),
        format!("{url}?bogus"),
        format!("{url}?connect_timeout=-5"),
        format!("host=127.0.0.1 port={port} password={SECRET} x"),
        format!("host=127.0.0.1 port={port} password='{SECRET}"),
        format!("host=127.0.0.1 port={port} user=u password = {SECRET}"),
        "sqlite:/nonexistent/x.db".to_owned(),
        "sqlite:".to_owned(),
        "mysql://x/y".to_owned(),
        String::new(),
    ];
    let timeouts: Vec<String> = [
        "1e20",
        "-1",
        "nan",
        "18446744073709551616",
        "0",
        "50ms",
        "0.1",
        "1us",
        "abc",
        "",
        "8761h",
        "1e-9",
        "50ms",
        "0.1",
        "100ms",
        "0.05",
    ]
    .map(String::from)
    .to_vec();
    let configs = vec![
        files.valid.clone(),
        files.valid.clone(),
        files.valid.clone(),
        files.broken.clone(),
        files.not_toml.clone(),
        "/nonexistent.toml".to_owned(),
        url.clone(),
    ];
    let names: Vec<String> = ["default", "b", "nope", "", "é中"]
        .map(String::from)
        .to_vec();
    let input = prop_oneof![
        prop::sample::select(urls).prop_map(|u| vec!["--url".to_owned(), u]),
        (
            prop::sample::select(configs),
            prop::option::of(prop::sample::select(names)),
            prop::bool::weighted(0.3),
        )
            .prop_map(|(file, name, all)| {
                let mut argv = vec!["--config".to_owned(), file];
                match (name, all) {
                    (_, true) => argv.push("--all".to_owned()),
                    (Some(name), false) => argv.extend(["--database".to_owned(), name]),
                    (None, false) => {}
                }
                argv
            }),
        Just(Vec::new()),
    ];
    let timeout = prop::option::weighted(0.4, prop::sample::select(timeouts)).prop_map(|t| {
        t.map(|t| vec!["--timeout".to_owned(), t])
            .unwrap_or_default()
    });
    let switches = prop::sample::subsequence(vec!["--wait", "-v", "--json"], 0..=3)
        .prop_map(|flags| flags.into_iter().map(String::from).collect::<Vec<_>>());
    let token = prop::sample::select(tokens);
    let extra = prop::option::weighted(0.1, token.clone());
    let structured =
        (input, timeout, switches, extra).prop_map(|(input, timeout, switches, extra)| {
            let mut argv = vec!["check".to_owned()];
            argv.extend(input);
            argv.extend(timeout);
            argv.extend(switches);
            argv.extend(extra);
            argv
        });
    let random = (
        prop::bool::weighted(0.85),
        prop::collection::vec(token, 0..8),
    )
        .prop_map(|(with_check, mut argv)| {
            if with_check {
                argv.insert(0, "check".to_owned());
            }
            argv
        });
    prop_oneof![structured, random]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Random command lines: an exit code of 0 to 3, never a panic (101) or a signal, never the
    /// password. `DB_RETRY_MAX_ELAPSED` keeps a `--wait` without `--timeout` short.
    #[test]
    fn no_command_line_makes_the_cli_panic_or_print_the_password(
        argv in FIXTURES.with(|f| any_argv(argv_tokens(f.0, &f.1), f)),
        database_url in any::<bool>(),
    ) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dbretry"));
        command.args(&argv).env("DB_RETRY_MAX_ELAPSED", "200ms");
        if database_url {
            let port = FIXTURES.with(|f| f.0);
            command.env("DATABASE_URL", format!("postgres://app:{SECRET}@127.0.0.1:{port}/app"));
        } else {
            command.env_remove("DATABASE_URL");
        }
        let output = command.output().unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let code = output.status.code();
        prop_assert!(matches!(code, Some(0..=3)), "{argv:?} → {code:?}: {printed}");
        prop_assert!(!printed.contains("panicked"), "{argv:?}: {printed}");
        prop_assert!(!printed.contains(SECRET), "{argv:?}: {printed}");
    }
}

thread_local! {
    /// A closed port and the config files the command lines may name, for the whole run.
    static FIXTURES: (u16, Files) = {
        let port = support::free_port();
        (port, Files::new(port))
    };
}

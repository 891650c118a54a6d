//! No password reaches any output. Random passwords, written in every form tokio-postgres
//! accepts, go through every in-process input path (tokio-postgres config built in code, a
//! connection string, `dbretry::deadpool_postgres::Config` from a TOML file with the URL or
//! with a `password` key) into pools pointed at a closed port; then every output a user could
//! see is searched for the password: `Display`/`Debug` of every public type holding it, error
//! chains, the health report as JSON, the Prometheus render and captured `tracing` output.
//! The command-line half is `secrets_cli.rs`.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::time::Duration;

use dbretry::deadpool_postgres::{Manager, Pool};
use dbretry::{ErrorChain, RedactedConfig, RetryPolicy, parse_postgres_config, redact_url};
use proptest::prelude::*;
use tokio_postgres::NoTls;

use crate::support::{self, CapturedLogs};

/// How the password is written in the connection string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Form {
    /// `postgres://user:PASSWORD@…` as typed: anything but `@`, `%XX` decoded.
    UrlRaw,
    /// `postgres://user:%70%77…@…`: every byte but the unreserved ones percent-encoded.
    UrlEncoded,
    /// `postgres://user@…/db?password=%70…`.
    UrlQuery,
    /// `… password=pass\ word …`: backslash escapes for spaces, backslashes and a leading quote.
    KvUnquoted,
    /// `… password='it\'s' …`.
    KvQuoted,
    /// `… password = 'x' …`: spaces around `=`, which tokio-postgres accepts.
    KvSpaced,
    /// `Config::password(…)` in code: no string at all.
    Builder,
}

/// A password and where it goes.
#[derive(Clone, Debug)]
pub(crate) struct Case {
    pub(crate) password: String,
    pub(crate) form: Form,
    pub(crate) port: u16,
}

pub(crate) const USER: &str = "app_user";
pub(crate) const DB: &str = "app_db";

impl Case {
    /// The connection string, if the form has one.
    pub(crate) fn text(&self) -> Option<String> {
        let (p, port) = (&self.password, self.port);
        let url = |userinfo: &str, query: &str| {
            format!("postgres://{userinfo}@127.0.0.1:{port}/{DB}{query}")
        };
        let kv = |password: &str| {
            format!("host=127.0.0.1 port={port} user={USER} {password} dbname={DB}")
        };
        Some(match self.form {
            Form::UrlRaw => url(&format!("{USER}:{p}"), ""),
            Form::UrlEncoded => url(&format!("{USER}:{}", percent_encode(p)), ""),
            Form::UrlQuery => url(USER, &format!("?password={}", percent_encode(p))),
            Form::KvUnquoted => kv(&format!("password={}", kv_unquoted(p))),
            Form::KvQuoted => kv(&format!("password={}", kv_quoted(p))),
            Form::KvSpaced => kv(&format!("password = {}", kv_quoted(p))),
            Form::Builder => return None,
        })
    }

    /// The tokio-postgres configuration the case stands for.
    pub(crate) fn config(&self) -> tokio_postgres::Config {
        match self.text() {
            Some(text) => parse_postgres_config(&text).unwrap_or_else(|e| panic!("{e}")),
            None => {
                let mut config = tokio_postgres::Config::new();
                config
                    .host("127.0.0.1")
                    .port(self.port)
                    .user(USER)
                    .dbname(DB)
                    .password(&self.password);
                config
            }
        }
    }

    /// The password as the driver reads it (a raw URL decodes `%XX`).
    pub(crate) fn effective_password(&self) -> Vec<u8> {
        match self.form {
            Form::UrlRaw => percent_decode(&self.password),
            _ => self.password.clone().into_bytes(),
        }
    }

    /// Connection strings that do not parse, each still holding the password.
    pub(crate) fn broken_texts(&self) -> Vec<String> {
        let (p, port) = (&self.password, self.port);
        let mut texts = vec![
            // A key without a value after the password.
            format!("host=127.0.0.1 user={USER} password={} bogus", kv_quoted(p)),
            // A quote that is never closed.
            format!(
                "host=127.0.0.1 user={USER} password='{}",
                kv_quoted_inner(p)
            ),
            // A URL parameter without `=`, and an invalid option value made of the password.
            format!(
                "postgres://{USER}:{}@127.0.0.1:{port}/{DB}?x",
                percent_encode(p)
            ),
            format!(
                "postgres://{USER}:{}@127.0.0.1:{port}/{DB}?sslmode={}",
                percent_encode(p),
                percent_encode(p)
            ),
            // The password's own text as an unknown option name.
            format!(
                "host=127.0.0.1 password=x {}=1",
                p.replace(|c: char| c.is_whitespace() || c == '=' || c == '\'', "_")
            ),
        ];
        // An `@` in an unencoded password: the parser would cut the credentials there.
        if self.form == Form::UrlRaw {
            let middle = p
                .char_indices()
                .nth(p.chars().count() / 2)
                .map_or(0, |(i, _)| i);
            let (head, tail) = p.split_at(middle);
            texts.push(format!(
                "postgres://{USER}:{head}@{tail}@127.0.0.1:{port}/{DB}"
            ));
        }
        // An unquoted value whose spaces are not escaped (when it has any).
        if p.trim().contains(char::is_whitespace) {
            texts.push(format!("host=127.0.0.1 user={USER} password={p}"));
        }
        texts
    }

    /// Every spelling of the password that must not appear in any output.
    pub(crate) fn forbidden(&self) -> Vec<String> {
        let mut forbidden = vec![self.password.clone()];
        if let Ok(decoded) = String::from_utf8(self.effective_password()) {
            forbidden.push(decoded);
        }
        forbidden.push(percent_encode(&self.password));
        forbidden.push(kv_unquoted(&self.password));
        forbidden.push(kv_quoted_inner(&self.password));
        forbidden.sort();
        forbidden.dedup();
        forbidden
    }
}

/// Percent-encodes every byte but the unreserved ones.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// What tokio-postgres does to URL credentials: `%XX` becomes a byte, anything else stays.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        if let (b'%', Some(high), Some(low)) = (bytes[i], hex(i + 1), hex(i + 2)) {
            out.push((high * 16 + low) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// An unquoted key=value value: a backslash before every whitespace character, backslash, and
/// a leading quote.
pub(crate) fn kv_unquoted(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if c.is_whitespace() || c == '\\' || (i == 0 && c == '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A quoted key=value value's inside: a backslash before every quote and backslash.
fn kv_quoted_inner(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\'', "\\'")
}

pub(crate) fn kv_quoted(text: &str) -> String {
    format!("'{}'", kv_quoted_inner(text))
}

/// A TOML basic string holding `text`.
pub(crate) fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Characters for passwords: printable ASCII most of the time, and everything with a meaning
/// to some parser: URL delimiters, quotes and backslashes, Unicode and ASCII whitespace, control
/// characters (NUL too, unless `argv_safe`), non-ASCII letters and symbols.
pub(crate) fn password_char(argv_safe: bool) -> BoxedStrategy<char> {
    let controls: Vec<char> = if argv_safe {
        vec!['\u{1}', '\u{1b}', '\u{7f}']
    } else {
        vec!['\u{1}', '\u{1b}', '\u{7f}', '\0']
    };
    prop_oneof![
        8 => prop::char::range(' ', '~'),
        3 => prop::sample::select(vec![
            '@', '/', '?', '#', '%', ':', '\'', '\\', '"', '=', '&', ' ', '+', '$', ',', '[', ']'
        ]),
        1 => prop::sample::select(vec!['\t', '\n', '\r', '\u{3000}', '\u{a0}', '\u{85}', '\u{2028}']),
        1 => prop::sample::select(controls),
        2 => prop::sample::select(vec!['é', 'ß', '中', '😀', 'ﬀ', '\u{202e}', 'Ω', 'я']),
    ]
    .boxed()
}

pub(crate) fn any_form() -> impl Strategy<Value = Form> {
    prop::sample::select(vec![
        Form::UrlRaw,
        Form::UrlEncoded,
        Form::UrlQuery,
        Form::KvUnquoted,
        Form::KvQuoted,
        Form::KvSpaced,
        Form::Builder,
    ])
}

/// A password of 10 to 24 characters (long enough never to occur in an output by chance) for
/// the form; a raw URL password cannot hold `@`, which ends the credentials.
pub(crate) fn any_case(port: u16, argv_safe: bool) -> impl Strategy<Value = Case> {
    any_form().prop_flat_map(move |form| {
        prop::collection::vec(password_char(argv_safe), 10..24).prop_map(move |chars| {
            let mut password: String = chars.into_iter().collect();
            if form == Form::UrlRaw {
                password = password.replace('@', "+");
            }
            Case {
                password,
                form,
                port,
            }
        })
    })
}

/// Fails with the output and the spelling of the password found in it.
pub(crate) fn assert_hidden<'a>(case: &Case, outputs: impl IntoIterator<Item = (&'a str, String)>) {
    let forbidden = case.forbidden();
    for (what, text) in outputs {
        for secret in &forbidden {
            assert!(
                !text.contains(secret.as_str()),
                "{what} shows the password {secret:?} ({:?}): {text}",
                case.form
            );
        }
    }
}

/// The `Display` of an error and of each of its sources, and its `Debug`.
fn error_texts(error: &(dyn StdError + 'static)) -> Vec<String> {
    let mut texts = vec![
        error.to_string(),
        format!("{error:?}"),
        ErrorChain(error).to_string(),
    ];
    let mut next = error.source();
    while let Some(source) = next {
        texts.push(source.to_string());
        texts.push(format!("{source:?}"));
        next = source.source();
    }
    texts
}

/// What the in-process paths let a user see, with the runtime, recorder and subscriber they
/// share across cases.
struct Harness {
    runtime: tokio::runtime::Runtime,
    recorder: metrics_exporter_prometheus::PrometheusRecorder,
    logs: CapturedLogs,
    subscriber: tracing::Dispatch,
}

impl Harness {
    fn new() -> Self {
        let logs = CapturedLogs::default();
        let subscriber = logs.subscriber();
        Self {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            recorder: metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder(),
            logs,
            subscriber: tracing::Dispatch::new(subscriber),
        }
    }

    /// Runs `work` with the recorder and the subscriber installed for this thread.
    fn run<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        tracing::dispatcher::with_default(&self.subscriber, || {
            metrics::with_local_recorder(&self.recorder, || self.runtime.block_on(work))
        })
    }

    /// Every text the case produces without connecting: parsing, printing, configuration.
    fn texts(&self, case: &Case) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = Vec::new();
        let config = case.config();
        assert_eq!(
            config.get_password(),
            Some(case.effective_password().as_slice()),
            "the generator wrote {:?} wrongly: {:?}",
            case.form,
            case.text()
        );
        out.push(("RedactedConfig", RedactedConfig(&config).to_string()));
        out.push((
            "RedactedConfig Debug",
            format!("{:?}", RedactedConfig(&config)),
        ));
        out.push(("tokio_postgres::Config Debug", format!("{config:?}")));
        if let Some(text) = case.text() {
            out.push(("redact_url", redact_url(&text)));
        }
        let broken_texts = case.broken_texts();
        // The file path costs a TOML parse: one broken string per case takes it, in turn.
        let through_file = case.password.len() % broken_texts.len();
        for (i, broken) in broken_texts.iter().enumerate() {
            let Err(error) = parse_postgres_config(broken) else {
                // An unescaped space can still leave a valid string (`password=a dbname=b`):
                // then it is printed like any other.
                out.push(("redact_url of an unescaped string", redact_url(broken)));
                continue;
            };
            out.push(("parse error", error.to_string()));
            out.push(("parse error Debug", format!("{error:?}")));
            out.push(("redact_url of a broken string", redact_url(broken)));
            if i != through_file {
                continue;
            }
            let file = dbretry_config_with_url(broken);
            out.push(("deadpool Config Debug (broken)", format!("{file:?}")));
            let error = file.get_pg_config().expect_err(broken);
            out.push(("get_pg_config error", error.to_string()));
            let error = file.builder(NoTls).map(drop).expect_err(broken);
            out.push(("Config::builder error", format!("{error} / {error:?}")));
        }
        let file = self.file(case);
        out.push(("deadpool Config Debug", format!("{file:?}")));
        let manager = Manager::builder(config, NoTls)
            .policy(one_attempt())
            .name("secrets")
            .build();
        out.push(("Manager Debug", format!("{manager:?}")));
        let pool = Pool::builder(manager).max_size(1).build().unwrap();
        out.push(("Pool Debug", format!("{pool:?}")));
        out
    }

    fn file(&self, case: &Case) -> dbretry::deadpool_postgres::Config {
        match case.text() {
            Some(text) => dbretry_config_with_url(&text),
            None => dbretry_config_with_password(case),
        }
    }

    /// Every text a failed connect produces: pool errors, health reports, metrics and logs.
    fn connect_outputs(&self, case: &Case) -> Vec<(&'static str, String)> {
        self.logs.clear();
        let mut out: Vec<(&'static str, String)> = Vec::new();
        let config = case.config();
        let file = self.file(case);
        self.run(async {
            let manager = Manager::builder(config.clone(), NoTls)
                .policy(one_attempt())
                .name("secrets")
                .build();
            let pool = Pool::builder(manager).max_size(1).build().unwrap();
            let error = pool.get().await.map(drop).expect_err("the port is closed");
            for text in error_texts(&error) {
                out.push(("pool error", text));
            }
            let report = dbretry::health::check_detailed(&pool, Duration::from_secs(5)).await;
            out.push(("health JSON", serde_json::to_string(&report).unwrap()));
            out.push(("health Debug", format!("{report:?}")));
            out.push((
                "diagnostics Debug",
                format!("{:?}", pool.manager().diagnostics()),
            ));

            let from_file = file
                .create_pool(Some(dbretry::deadpool_postgres::Runtime::Tokio1), NoTls)
                .unwrap();
            let error = from_file
                .get()
                .await
                .map(drop)
                .expect_err("the port is closed");
            for text in error_texts(&error) {
                out.push(("pool-from-file error", text));
            }

            #[cfg(feature = "bb8")]
            {
                use dbretry::bb8_postgres::PostgresConnectionManager;
                let manager = PostgresConnectionManager::builder(config.clone(), NoTls)
                    .policy(one_attempt())
                    .name("secrets-bb8")
                    .build();
                out.push(("bb8 manager Debug", format!("{manager:?}")));
                let pool = dbretry::bb8::Pool::new(bb8::Pool::builder().max_size(1), manager)
                    .await
                    .unwrap();
                out.push(("bb8 Pool Debug", format!("{pool:?}")));
                match pool.get().await {
                    Ok(_) => panic!("the port is closed"),
                    Err(error) => out.push(("bb8 error", format!("{error} / {error:?}"))),
                }
                let report = dbretry::health::check_detailed(&pool, Duration::from_secs(5)).await;
                out.push(("bb8 health JSON", serde_json::to_string(&report).unwrap()));
            }
        });
        out.push(("Prometheus render", self.recorder.handle().render()));
        let logs = self.logs.text();
        out.push(("tracing output", logs));
        out
    }
}

/// One try and no delay before the pool's next connect (the health check's): the closed port
/// refuses at once, so each case costs a few milliseconds.
fn one_attempt() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(1)
        .initial_delay(Duration::ZERO)
        .build()
        .unwrap()
}

/// `dbretry::deadpool_postgres::Config` as read from a TOML file with `url = "…"`.
fn dbretry_config_with_url(url: &str) -> dbretry::deadpool_postgres::Config {
    let text = format!(
        "url = {}\n[retry]\nmax_attempts = 2\ninitial_delay = \"0ms\"\n",
        toml_string(url)
    );
    toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"))
}

/// The same with the password in its own key.
fn dbretry_config_with_password(case: &Case) -> dbretry::deadpool_postgres::Config {
    let text = format!(
        "host = \"127.0.0.1\"\nport = {}\nuser = \"{USER}\"\ndbname = \"{DB}\"\npassword = {}\n\
         [retry]\nmax_attempts = 2\ninitial_delay = 0\n",
        case.port,
        toml_string(&case.password)
    );
    toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"))
}

/// Passwords that broke a redaction before, or sit on a parser's edge.
const CORPUS: [(&str, Form); 10] = [
    ("q8Z/x+Kp3w==", Form::UrlRaw),
    ("s3cret with spaces", Form::KvSpaced),
    ("a'b\\'c d", Form::KvQuoted),
    ("a'b\\'c d", Form::KvUnquoted),
    ("'leading quote", Form::KvUnquoted),
    ("p?ss/w#rd:x%41", Form::UrlRaw),
    ("all@the@ats", Form::UrlEncoded),
    ("amp&eq=q?", Form::UrlQuery),
    ("hunter2-hunter2", Form::Builder),
    ("\u{3000}ideographic\u{a0}space", Form::KvUnquoted),
];

#[test]
fn the_corpus_of_tricky_passwords_never_shows() {
    let harness = Harness::new();
    let port = support::free_port();
    for (password, form) in CORPUS {
        let case = Case {
            password: password.to_owned(),
            form,
            port,
        };
        assert_hidden(&case, harness.texts(&case));
        assert_hidden(&case, harness.connect_outputs(&case));
    }
}

#[test]
fn the_issue_s_four_leaks_are_closed() {
    // 1. A base64 password with `/`, spaces around `=`, and an escaped quote.
    assert_eq!(
        redact_url("postgres://b64:q8Z/x+Kp3w==@127.0.0.1:29031/app"),
        "postgres://b64:***@127.0.0.1:29031/app"
    );
    assert_eq!(
        redact_url("host=h user=u password = s3cret"),
        "postgres://u:***@h:5432"
    );
    assert_eq!(
        redact_url("host=h user=u password='a\\'b'"),
        "postgres://u:***@h:5432"
    );
    // 3. `{:?}` of the deadpool-postgres-compatible Config.
    let config: dbretry::deadpool_postgres::Config = toml::from_str(
        "url = \"postgres://app:TOPSECRET@h/d\"\npassword = \"hunter2\"\nuser = \"app\"",
    )
    .unwrap();
    let debug = format!("{config:?}");
    assert!(
        debug.contains(r#"url: Some("postgres://app:***@h:5432/d")"#),
        "{debug}"
    );
    assert!(debug.contains(r#"password: Some("***")"#), "{debug}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("TOPSECRET"),
        "{debug}"
    );
    // 4. An invalid connection string is not echoed.
    let error = parse_postgres_config("postgres://app:TOPSECRET@h/d?TOPSECRET").unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid connection string: a URL parameter has no `=`; expected a PostgreSQL URL \
         (postgres://user:password@host:port/db?param=value, an `@` in the password written \
         %40) or key=value pairs (host=… user=… password='…')"
    );
    let bad = dbretry_config_with_url("host=h password=abc TOPSECRET=1");
    let error = bad.get_pg_config().unwrap_err().to_string();
    assert!(
        error.starts_with("invalid `url`: an unknown option"),
        "{error}"
    );
    assert!(!error.contains("TOPSECRET"), "{error}");
}

#[test]
fn sqlite_options_hide_encryption_keys() {
    let options = dbretry::sqlite::SqliteOptions::new("file:app.db?mode=rwc&key=TOPSECRET")
        .pragma("key", "TOPSECRET")
        .pragma("foreign_keys", "on");
    let debug = format!("{options:?}");
    assert!(!debug.contains("TOPSECRET"), "{debug}");
    assert!(debug.contains(r#"("foreign_keys", "on")"#), "{debug}");
    assert!(debug.contains("file:app.db?mode=rwc&key=***"), "{debug}");
}

proptest! {
    // XorShift: the default ChaCha generator costs a fifth of this test's time.
    #![proptest_config(ProptestConfig {
        cases: 10_000,
        rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    })]

    /// 10,000 random passwords, every form, every output that needs no connection.
    #[test]
    fn no_password_reaches_any_printed_configuration_or_parse_error(
        case in any_case(closed_port(), false),
    ) {
        HARNESS.with(|harness| {
            assert_hidden(&case, harness.texts(&case));
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Random passwords through pools that fail to connect: errors, health, metrics, logs.
    #[test]
    fn no_password_reaches_pool_errors_health_metrics_or_logs(
        case in any_case(closed_port(), false),
    ) {
        HARNESS.with(|harness| {
            assert_hidden(&case, harness.connect_outputs(&case));
        });
    }
}

thread_local! {
    static HARNESS: Harness = Harness::new();
}

/// One closed port for the whole run: nothing listens there, so every connect is refused at
/// once.
fn closed_port() -> u16 {
    static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *PORT.get_or_init(support::free_port)
}

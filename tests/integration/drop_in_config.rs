//! The pool `Config`s as deadpool-postgres and deadpool-sqlite document them: struct literals,
//! loading through the `config` crate's environment source with typed values, their methods,
//! and dbretry's additions (the `retry` section over which `DB_RETRY_*` win, settings
//! honoured by every constructor). Where a peer can run the same code, it does, and the results
//! are compared.

use std::time::Duration;

use dbretry::deadpool_postgres::{
    Config, ConfigError, CreatePoolError, ManagerConfig, RecyclingMethod, Runtime,
};
use dbretry::{ErrorKind, RetryConfig};
use serde::de::DeserializeOwned;

use crate::support::{DATABASE, PASSWORD, PgCluster, SUPERUSER, with_captured_logs};

/// A service's settings, as deadpool-postgres's tests and docs declare them.
#[derive(Debug, serde::Deserialize)]
struct Settings<C> {
    #[serde(default)]
    pg: C,
}

/// Settings loaded as deadpool-postgres documents (`config::Environment::default()
/// .separator("__")`), from `vars` instead of the process environment, which every test thread
/// shares.
fn from_env<T: DeserializeOwned>(vars: &[(&str, &str)], try_parsing: bool) -> Result<T, String> {
    let vars: config::Map<String, String> = vars
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    let environment = config::Environment::default()
        .separator("__")
        .try_parsing(try_parsing)
        .source(Some(vars));
    config::Config::builder()
        .add_source(environment)
        .build()
        .and_then(config::Config::try_deserialize)
        .map_err(|e| e.to_string())
}

/// The settings both crates' `Config`s hold, as text, to compare them.
macro_rules! summary {
    ($cfg:expr) => {{
        let c = &$cfg;
        format!(
            "{:?}",
            (
                (&c.host, c.port, &c.user, &c.password, &c.dbname, &c.hosts),
                (
                    c.connect_timeout,
                    c.keepalives,
                    c.keepalives_idle,
                    c.ssl_mode
                ),
                (c.target_session_attrs, &c.manager, c.get_pool_config()),
            )
        )
    }};
}

/// deadpool-postgres's documented variables (and its `config_from_env` test's), a numeric
/// password among them.
const PG_VARS: &[(&str, &str)] = &[
    ("PG__HOST", "pg.example.com"),
    ("PG__PORT", "5433"),
    ("PG__USER", "john_doe"),
    ("PG__PASSWORD", "12345"),
    ("PG__DBNAME", "example"),
    ("PG__POOL__MAX_SIZE", "42"),
    ("PG__POOL__TIMEOUTS__WAIT__SECS", "1"),
    ("PG__POOL__TIMEOUTS__WAIT__NANOS", "0"),
    ("PG__POOL__TIMEOUTS__CREATE__SECS", "2"),
    ("PG__POOL__TIMEOUTS__CREATE__NANOS", "0"),
    ("PG__POOL__TIMEOUTS__RECYCLE__SECS", "3"),
    ("PG__POOL__TIMEOUTS__RECYCLE__NANOS", "0"),
    ("PG__CONNECT_TIMEOUT__SECS", "4"),
    ("PG__CONNECT_TIMEOUT__NANOS", "500000000"),
    ("PG__KEEPALIVES", "false"),
    ("PG__SSL_MODE", "Disable"),
    ("PG__TARGET_SESSION_ATTRS", "ReadWrite"),
    ("PG__MANAGER__RECYCLING_METHOD", "Verified"),
    ("HOME", "/root"),
];

#[test]
fn postgres_config_from_env_reads_typed_values_exactly_as_deadpool_postgres_does() {
    for try_parsing in [false, true] {
        let theirs = from_env::<Settings<deadpool_postgres::Config>>(PG_VARS, try_parsing)
            .unwrap_or_else(|e| panic!("deadpool-postgres, try_parsing({try_parsing}): {e}"));
        let ours = from_env::<Settings<Config>>(PG_VARS, try_parsing)
            .unwrap_or_else(|e| panic!("dbretry, try_parsing({try_parsing}): {e}"));
        assert_eq!(
            summary!(ours.pg),
            summary!(theirs.pg),
            "try_parsing({try_parsing})"
        );
    }
    // Without try_parsing, as deadpool-postgres documents it, every value arrives typed.
    let cfg = from_env::<Settings<Config>>(PG_VARS, false).unwrap().pg;
    assert_eq!(cfg.host.as_deref(), Some("pg.example.com"));
    assert_eq!(cfg.port, Some(5433));
    assert_eq!(cfg.password.as_deref(), Some("12345"));
    assert_eq!(cfg.keepalives, Some(false));
    assert_eq!(cfg.connect_timeout, Some(Duration::from_millis(4500)));
    assert_eq!(
        cfg.get_manager_config().recycling_method,
        RecyclingMethod::Verified
    );
    let pool = cfg.get_pool_config();
    assert_eq!(pool.max_size, 42);
    assert_eq!(pool.timeouts.wait, Some(Duration::from_secs(1)));
    assert_eq!(pool.timeouts.create, Some(Duration::from_secs(2)));
    assert_eq!(pool.timeouts.recycle, Some(Duration::from_secs(3)));
    let pg = cfg.get_pg_config().unwrap();
    assert_eq!(pg.get_ports(), &[5433]);
    assert_eq!(pg.get_password(), Some(&b"12345"[..]));
    assert_eq!(pg.get_connect_timeout(), Some(&Duration::from_millis(4500)));
    assert!(!pg.get_keepalives());
    assert_eq!(
        pg.get_target_session_attrs(),
        tokio_postgres::config::TargetSessionAttrs::ReadWrite
    );
}

#[test]
fn postgres_config_with_unknown_keys_loads_as_in_deadpool_postgres_with_a_warning_for_each() {
    let vars = [
        ("PG__HOTS", "typo.example.com"),
        ("PG__DBNAME", "app"),
        ("PG__POOL__MAX_SIZE", "3"),
        ("PG__POOL__QUEUE_MOD", "Lifo"),
    ];
    let theirs = from_env::<Settings<deadpool_postgres::Config>>(&vars, false);
    assert!(theirs.is_ok(), "{theirs:?}");
    let (loaded, logs) = with_captured_logs(|| from_env::<Settings<Config>>(&vars, false));
    let cfg = loaded.unwrap().pg;
    assert_eq!(cfg.dbname.as_deref(), Some("app"));
    assert_eq!(cfg.host, None);
    assert_eq!(cfg.get_pool_config().max_size, 3);
    for key in ["key=hots", "key=pool.queue_mod"] {
        assert!(logs.contains(key), "no warning for {key}: {logs}");
    }
    assert!(logs.contains("unknown configuration key ignored"), "{logs}");
}

#[tokio::test]
async fn postgres_pool_from_environment_variables_connects_and_takes_the_pool_section() {
    let pg = PgCluster::start().await;
    let port = pg.port().to_string();
    let vars = [
        ("PG__HOST", pg.host()),
        ("PG__PORT", port.as_str()),
        ("PG__USER", SUPERUSER),
        ("PG__PASSWORD", PASSWORD),
        ("PG__DBNAME", DATABASE),
        ("PG__POOL__MAX_SIZE", "2"),
        ("PG__NAME", "from-env"),
        ("PG__RETRY__MAX_ELAPSED", "30"),
    ];
    let cfg = from_env::<Settings<Config>>(&vars, false).unwrap().pg;
    assert_eq!(
        cfg.retry.as_ref().unwrap().build().unwrap().max_elapsed(),
        Some(Duration::from_secs(30))
    );
    let pool = cfg
        .create_pool(Some(Runtime::Tokio1), tokio_postgres::NoTls)
        .unwrap();
    let client = pool.get().await.unwrap();
    let stmt = client.prepare_cached("SELECT 1 + $1").await.unwrap();
    let rows = client.query(&stmt, &[&41i32]).await.unwrap();
    assert_eq!(rows[0].get::<_, i32>(0), 42);
    assert_eq!(pool.status().max_size, 2);
    assert_eq!(pool.manager().name(), "from-env");
}

#[tokio::test]
async fn postgres_config_literals_and_field_assignments_from_deadpool_postgres_docs_work() {
    let pg = PgCluster::start().await;
    // deadpool-postgres's `config_url` test, with only the import changed.
    let mut cfg = Config {
        url: Some("postgresql://zombie@localhost/deadpool".into()),
        ..Default::default()
    };
    let pg_cfg = cfg.get_pg_config().unwrap();
    assert_eq!(pg_cfg.get_dbname(), Some("deadpool"));
    assert_eq!(pg_cfg.get_user(), Some("zombie"));
    cfg.dbname = Some("livepool".into());
    cfg.host = Some("remotehost".into());
    cfg.user = Some("human".into());
    let pg_cfg = cfg.get_pg_config().unwrap();
    assert_eq!(pg_cfg.get_dbname(), Some("livepool"));
    assert_eq!(pg_cfg.get_user(), Some("human"));
    assert_eq!(
        pg_cfg.get_hosts(),
        &[
            tokio_postgres::config::Host::Tcp("localhost".into()),
            tokio_postgres::config::Host::Tcp("remotehost".into()),
        ]
    );
    // The README's field assignments and its `recycling_methods` test, against the cluster.
    for recycling_method in [
        RecyclingMethod::Fast,
        RecyclingMethod::Verified,
        RecyclingMethod::Clean,
        RecyclingMethod::Custom("DISCARD ALL;".to_string()),
    ] {
        let mut cfg = Config::new();
        cfg.url = Some(pg.url());
        cfg.manager = Some(ManagerConfig { recycling_method });
        let pool = cfg
            .create_pool(Some(Runtime::Tokio1), tokio_postgres::NoTls)
            .unwrap();
        for _ in 0..3 {
            let client = pool.get().await.unwrap();
            let rows = client.query("SELECT 1 + 2", &[]).await.unwrap();
            assert_eq!(rows[0].get::<_, i32>(0), 3);
        }
    }
    // `builder` and the getters, as deadpool-postgres has them.
    let mut cfg = Config::new();
    cfg.url = Some(pg.url());
    cfg.pool = Some(dbretry::deadpool_postgres::PoolConfig::new(3));
    let pool = cfg
        .builder(tokio_postgres::NoTls)
        .unwrap()
        .runtime(Runtime::Tokio1)
        .build()
        .unwrap();
    assert_eq!(pool.status().max_size, cfg.get_pool_config().max_size);
    drop(pool.get().await.unwrap());
}

#[test]
fn postgres_config_errors_keep_deadpool_postgres_variants_and_hide_secrets() {
    // As user code matches deadpool-postgres's errors.
    let no_dbname = Config {
        host: Some("db".into()),
        url: Some("postgres://u@h".into()),
        ..Default::default()
    };
    let error = no_dbname
        .create_pool(None, tokio_postgres::NoTls)
        .unwrap_err();
    assert!(
        matches!(error, CreatePoolError::Config(ConfigError::DbnameMissing)),
        "{error:?}"
    );
    let empty = Config {
        url: Some("postgres://u@h".into()),
        dbname: Some(String::new()),
        ..Default::default()
    };
    assert!(matches!(
        empty.get_pg_config(),
        Err(ConfigError::DbnameMissing | ConfigError::DbnameEmpty)
    ));
    let bad_url = Config {
        url: Some("postgres://u:hunter2@h/db?sslmode=bogus".into()),
        password: Some("hunter3".into()),
        ..Default::default()
    };
    let error = bad_url.get_pg_config().unwrap_err();
    assert!(matches!(error, ConfigError::InvalidUrl(_)), "{error:?}");
    let texts = [
        error.to_string(),
        format!("{error:?}"),
        format!("{bad_url:?}"),
    ];
    for text in &texts {
        assert!(
            !text.contains("hunter2") && !text.contains("hunter3"),
            "leaked: {text}"
        );
    }
    // What is wrong, in words of dbretry's own (the driver's can quote the URL).
    assert_eq!(
        texts[0],
        "invalid `url`: invalid value for option `sslmode`"
    );
    // dbretry's own settings are checked up front, named.
    let bad_retry = Config {
        url: Some("postgres://u@h/db".into()),
        retry: Some(RetryConfig::default().max_attempts(0)),
        ..Default::default()
    };
    let Err(CreatePoolError::Config(ConfigError::Retry(error))) =
        bad_retry.create_pool(None, tokio_postgres::NoTls)
    else {
        panic!("an invalid retry section was accepted");
    };
    assert_eq!(error.setting(), "`max_attempts`");
}

const SQLITE_VARS_OF_THE_DOCS: &[(&str, &str)] = &[
    ("SQLITE__PATH", "db.sqlite3"),
    ("SQLITE__POOL__MAX_SIZE", "16"),
    ("SQLITE__POOL__TIMEOUTS__WAIT__SECS", "5"),
    ("SQLITE__POOL__TIMEOUTS__WAIT__NANOS", "0"),
];

#[derive(Debug, serde::Deserialize)]
struct SqliteSettings<C> {
    sqlite: C,
}

#[test]
fn sqlite_config_from_env_reads_typed_values_as_deadpool_sqlite_does() {
    let theirs =
        from_env::<SqliteSettings<deadpool_sqlite::Config>>(SQLITE_VARS_OF_THE_DOCS, false)
            .unwrap()
            .sqlite;
    let ours = from_env::<SqliteSettings<dbretry::deadpool_sqlite::Config>>(
        SQLITE_VARS_OF_THE_DOCS,
        false,
    )
    .unwrap()
    .sqlite;
    assert_eq!(ours.path, theirs.path);
    assert_eq!(
        format!("{:?}", ours.get_pool_config()),
        format!("{:?}", theirs.get_pool_config())
    );
    assert_eq!(ours.get_pool_config().max_size, 16);
    assert_eq!(
        ours.get_pool_config().timeouts.wait,
        Some(Duration::from_secs(5))
    );
    // dbretry's additions load the same way; an unknown key is ignored, as there.
    let mut vars = SQLITE_VARS_OF_THE_DOCS.to_vec();
    vars.extend([
        ("SQLITE__BUSY_TIMEOUT", "2.5"),
        ("SQLITE__WAL", "true"),
        ("SQLITE__RETRY__MAX_ATTEMPTS", "7"),
        ("SQLITE__POOL_SIZE", "9"),
    ]);
    assert!(from_env::<SqliteSettings<deadpool_sqlite::Config>>(&vars, false).is_ok());
    let (ours, logs) = with_captured_logs(|| {
        from_env::<SqliteSettings<dbretry::deadpool_sqlite::Config>>(&vars, false)
    });
    let ours = ours.unwrap().sqlite;
    assert_eq!(ours.busy_timeout, Some(2.5));
    assert!(ours.wal);
    assert_eq!(ours.retry.unwrap().build().unwrap().max_attempts(), 7);
    assert!(logs.contains("key=pool_size"), "{logs}");
}

/// The process environment is shared by every test thread: a test that sets `DB_RETRY_*` runs
/// its body in a child process of this test binary, with only `vars` of them set. Returns
/// true in the child (run the body), false in the parent (the child passed).
fn in_child_process_with(test: &str, vars: &[(&str, &str)]) -> bool {
    const CHILD: &str = "DBRETRY_DROP_IN_CHILD";
    if std::env::var(CHILD).as_deref() == Ok(test) {
        return true;
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child.args(["--exact", test, "--nocapture", "--test-threads=1"]);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("DB_RETRY_")) {
        child.env_remove(name);
    }
    let output = child
        .env(CHILD, test)
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child run of {test} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    false
}

#[test]
fn db_retry_variables_override_the_config_retry_section_on_every_config_path() {
    let test =
        "drop_in_config::db_retry_variables_override_the_config_retry_section_on_every_config_path";
    if !in_child_process_with(test, &[("DB_RETRY_MAX_ATTEMPTS", "1")]) {
        return;
    }
    // The file says 7 attempts and a 9 s cap; the deployment's variable says 1 attempt.
    let section = RetryConfig::default()
        .max_attempts(7)
        .max_delay(Duration::from_secs(9));
    let expect = |policy: &dbretry::RetryPolicy| {
        assert_eq!(policy.max_attempts(), 1, "DB_RETRY_MAX_ATTEMPTS wins");
        assert_eq!(
            policy.max_delay(),
            Duration::from_secs(9),
            "the section fills the rest"
        );
        assert_eq!(
            policy.initial_delay(),
            Duration::from_millis(100),
            "the default under both"
        );
    };
    let pg = Config {
        url: Some("postgres://u@h/db".into()),
        retry: Some(section.clone()),
        ..Default::default()
    };
    expect(&pg.get_retry_config().unwrap().build().unwrap());
    let pool = pg.create_pool(None, tokio_postgres::NoTls).unwrap();
    expect(pool.manager().policy());

    let dir = tempfile::tempdir().unwrap();
    let sqlite = dbretry::deadpool_sqlite::Config {
        path: dir.path().join("db.sqlite3"),
        retry: Some(section),
        ..Default::default()
    };
    let pool = sqlite.create_pool(Runtime::Tokio1).unwrap();
    expect(pool.manager().policy());
    let manager = dbretry::deadpool_sqlite::Manager::from_config(&sqlite, Runtime::Tokio1);
    expect(manager.policy());
}

#[test]
fn an_invalid_db_retry_variable_is_a_named_config_error() {
    let test = "drop_in_config::an_invalid_db_retry_variable_is_a_named_config_error";
    if !in_child_process_with(test, &[("DB_RETRY_MAX_DELAY", "soon")]) {
        return;
    }
    let pg = Config {
        url: Some("postgres://u@h/db".into()),
        ..Default::default()
    };
    let Err(CreatePoolError::Config(ConfigError::Retry(error))) =
        pg.create_pool(None, tokio_postgres::NoTls)
    else {
        panic!("DB_RETRY_MAX_DELAY=soon was accepted");
    };
    assert_eq!(error.setting(), "DB_RETRY_MAX_DELAY");
    let sqlite = dbretry::deadpool_sqlite::Config::new("unused.sqlite3");
    let Err(dbretry::deadpool_sqlite::CreatePoolError::Config(error)) =
        sqlite.create_pool(Runtime::Tokio1)
    else {
        panic!("DB_RETRY_MAX_DELAY=soon was accepted");
    };
    assert_eq!(error.setting(), "DB_RETRY_MAX_DELAY");
}

/// deadpool-sqlite's own tests and README, with only the import changed (and the literal's
/// `..Default::default()`, the one exception).
mod sqlite_as_deadpool_sqlite_tests_use_it {
    use dbretry::deadpool_sqlite::{Config, InteractError, Pool, Runtime};

    fn create_pool(path: std::path::PathBuf) -> Pool {
        let cfg = Config {
            path,
            pool: None,
            ..Default::default()
        };
        cfg.create_pool(Runtime::Tokio1).unwrap()
    }

    #[tokio::test]
    async fn basic_and_panic_tests_of_deadpool_sqlite_pass() {
        let dir = tempfile::tempdir().unwrap();
        let pool = create_pool(dir.path().join("db.sqlite3"));
        {
            let conn = pool.get().await.unwrap();
            let result = conn.interact::<_, ()>(|_| panic!("Whopsies!")).await;
            assert!(matches!(result, Err(InteractError::Panic(_))));
        }
        // The previous callback panicked. The pool recovers.
        let conn = pool.get().await.unwrap();
        let result: i64 = conn
            .interact(|conn| {
                let mut stmt = conn.prepare("SELECT 1")?;
                let mut rows = stmt.query([])?;
                let row = rows.next()?.unwrap();
                row.get(0)
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(result, 1);
    }

    #[tokio::test]
    async fn readme_example_of_deadpool_sqlite_runs() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::new(dir.path().join("db.sqlite3"));
        let pool = cfg.create_pool(Runtime::Tokio1).unwrap();
        let conn = pool.get().await.unwrap();
        let result: i64 = conn
            .interact(|conn| {
                let mut stmt = conn.prepare("SELECT 1")?;
                let mut rows = stmt.query([])?;
                let row = rows.next()?.unwrap();
                row.get(0)
            })
            .await??;
        assert_eq!(result, 1);
        assert_eq!(cfg.get_pool_config().max_size, pool.status().max_size);
        let built = cfg.builder(Runtime::Tokio1)?.max_size(1).build()?;
        assert_eq!(built.status().max_size, 1);
        Ok(())
    }
}

#[tokio::test]
async fn sqlite_settings_are_honoured_by_create_pool_builder_and_manager_from_config() {
    use dbretry::deadpool_sqlite::{Config, Manager, Pool};
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        path: dir.path().join("db.sqlite3"),
        busy_timeout: Some(2.5),
        wal: true,
        name: Some("settings".into()),
        ..Default::default()
    };
    let pools = [
        cfg.create_pool(Runtime::Tokio1).unwrap(),
        cfg.builder(Runtime::Tokio1).unwrap().build().unwrap(),
        Pool::builder(Manager::from_config(&cfg, Runtime::Tokio1))
            .build()
            .unwrap(),
    ];
    for pool in pools {
        let conn = pool.get().await.unwrap();
        let (busy_ms, journal): (i64, String) = conn
            .interact(|c| {
                let busy = c.query_row("PRAGMA busy_timeout", [], |r| r.get(0))?;
                let journal = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
                Ok::<_, rusqlite::Error>((busy, journal))
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(busy_ms, 2500);
        assert_eq!(journal, "wal");
        assert_eq!(pool.manager().name(), "settings");
    }
}

#[tokio::test]
async fn sqlite_manager_from_config_with_an_invalid_setting_fails_each_connect_naming_it() {
    use dbretry::deadpool_sqlite::{Config, Manager, Pool, PoolError};
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        path: dir.path().join("db.sqlite3"),
        busy_timeout: Some(-1.0),
        ..Default::default()
    };
    assert!(
        cfg.create_pool(Runtime::Tokio1).is_err(),
        "checked up front"
    );
    // `Manager::from_config` cannot return the error (deadpool-sqlite's signature): the first
    // `get()` does, at once and without retrying.
    let pool = Pool::builder(Manager::from_config(&cfg, Runtime::Tokio1))
        .build()
        .unwrap();
    let Err(PoolError::Backend(error)) = pool.get().await else {
        panic!("a connection was opened with an invalid busy_timeout");
    };
    assert_eq!(error.kind(), ErrorKind::Connection);
    assert_eq!(error.attempts(), 1);
    assert!(error.to_string().contains("`busy_timeout` = -1"), "{error}");
    assert!(!cfg.path.exists(), "no database was opened");
}

//! The operator files shipped in `ops/`: the Prometheus alert rules and their tests (run by
//! the real promtool), the Grafana dashboard's queries, and the Kubernetes manifest's probes and
//! init container (against dbretry's routes and its real CLI).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dbretry::metrics as m;
use yaml_rust2::{Yaml, YamlLoader};

use crate::support::packages;

const RULES: &str = "ops/prometheus/dbretry-alerts.yml";
const RULE_TESTS: &str = "ops/prometheus/dbretry-alerts.test.yml";
const DASHBOARD: &str = "ops/grafana/dbretry-dashboard.json";
const MANIFEST: &str = "ops/kubernetes/deployment.yaml";

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    let path = repo_file(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn yaml_documents(path: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn promtool() -> PathBuf {
    packages::require("promtool", "prometheus")
}

/// Runs promtool with `args`, panicking with its output unless it succeeds.
pub(crate) fn run_promtool(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write as _;
    let mut command = Command::new(promtool());
    command
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .expect("write promtool's stdin");
    drop(input);
    let output = child.wait_with_output().expect("wait for promtool");
    assert!(
        output.status.success(),
        "promtool {} failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout).trim_end(),
        String::from_utf8_lossy(&output.stderr).trim_end(),
    );
    output
}

/// Every alert of the rules file: name and expression.
fn alerts() -> Vec<(String, String)> {
    let docs = yaml_documents(RULES);
    docs[0]["groups"]
        .as_vec()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_vec().expect("rules"))
        .map(|rule| {
            let name = rule["alert"].as_str().expect("alert name").to_owned();
            let expr = rule["expr"].as_str().expect("expr").to_owned();
            (name, expr)
        })
        .collect()
}

/// Every query of the dashboard, with Grafana's variables replaced by values promtool accepts.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            let concrete = expr
                .replace("$__rate_interval", "5m")
                .replace("$job", ".*")
                .replace("$pool", ".*");
            queries.push((panel["title"].as_str().expect("title").to_owned(), concrete));
        }
    }
    queries
}

#[test]
fn the_alert_rules_pass_promtool_check_rules() {
    let output = run_promtool(
        &["check", "rules", repo_file(RULES).to_str().unwrap()],
        None,
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let count = alerts().len();
    assert!(
        text.contains(&format!("SUCCESS: {count} rules found")),
        "{text}"
    );
}

#[test]
fn the_rule_tests_pass_and_each_alert_has_a_firing_and_a_quiet_case() {
    run_promtool(
        &["test", "rules", repo_file(RULE_TESTS).to_str().unwrap()],
        None,
    );
    let tests = yaml_documents(RULE_TESTS);
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for test in tests[0]["tests"].as_vec().expect("tests") {
        for case in test["alert_rule_test"].as_vec().expect("alert_rule_test") {
            let name = case["alertname"].as_str().expect("alertname").to_owned();
            let expected = case["exp_alerts"].as_vec().expect("exp_alerts");
            if expected.is_empty() {
                quiet.insert(name);
            } else {
                firing.insert(name);
            }
        }
    }
    for (alert, _) in alerts() {
        assert!(firing.contains(&alert), "no test fires {alert}");
        assert!(quiet.contains(&alert), "no test keeps {alert} quiet");
    }
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    // promtool has no command for a bare expression; recording rules are checked the same way.
    let queries = dashboard_queries();
    assert!(!queries.is_empty());
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in queries.iter().enumerate() {
        let quoted = serde_json::to_string(expr).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, rules).unwrap();
    run_promtool(&["check", "rules", file.to_str().unwrap()], None);
}

#[test]
fn the_dashboard_uses_its_variables_and_unique_panel_ids() {
    let dashboard: serde_json::Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "job", "pool"]);
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "{panel}");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            assert!(
                expr.contains(r#"job=~"$job""#) && expr.contains(r#"pool=~"$pool""#),
                "{}: {expr}",
                panel["title"]
            );
        }
    }
}

/// The `dbretry_*` names in a PromQL expression, without histogram suffixes.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("dbretry_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| m::ALL.contains(base))
            .unwrap_or(name);
        names.push(base.to_owned());
        rest = &tail[end..];
    }
    names
}

/// The label matchers `label="value"`, `label=~"a|b"` (and the negated forms) of an
/// expression, as (label, values).
fn label_matchers(expr: &str) -> Vec<(String, Vec<String>)> {
    let mut matchers = Vec::new();
    for (i, _) in expr.match_indices('"') {
        // An opening quote follows `=`, `=~`, `!=` or `!~`; its label is the word before that.
        let before = &expr[..i];
        let op_start = before.trim_end_matches(['=', '~', '!']);
        if op_start.len() == before.len() {
            continue;
        }
        let label_start = op_start
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |p| p + 1);
        let label = &op_start[label_start..];
        let value_end = expr[i + 1..].find('"').map(|e| i + 1 + e).expect("closed");
        let value = &expr[i + 1..value_end];
        let values = value.split('|').map(str::to_owned).collect();
        matchers.push((label.to_owned(), values));
    }
    matchers
}

/// Asserts that `expr` names only metrics dbretry emits and label values from their sets.
fn assert_known_vocabulary(what: &str, expr: &str) {
    let names = metric_names(expr);
    assert!(!names.is_empty(), "{what} uses no dbretry metric: {expr}");
    for name in names {
        assert!(
            m::ALL.contains(&name.as_str()),
            "{what}: {name} is not a dbretry metric"
        );
    }
    for (label, values) in label_matchers(expr) {
        let Some((_, allowed)) = m::labels::ALL.iter().find(|(l, _)| *l == label) else {
            continue; // job, instance, pool: open sets
        };
        for value in values {
            assert!(
                allowed.contains(&value.as_str()),
                "{what}: {label}={value:?} is not one of {allowed:?}"
            );
        }
    }
}

#[test]
fn the_rules_and_the_dashboard_name_only_metrics_and_labels_dbretry_emits() {
    for (alert, expr) in alerts() {
        assert_known_vocabulary(&alert, &expr);
    }
    for (panel, expr) in dashboard_queries() {
        assert_known_vocabulary(&panel, &expr);
    }
}

#[test]
fn the_vocabulary_check_catches_a_misspelt_label_value() {
    let caught = std::panic::catch_unwind(|| {
        assert_known_vocabulary(
            "typo",
            r#"increase(dbretry_checkout_timeouts_total{cause="pool-exhausted"}[5m])"#,
        )
    });
    assert!(caught.is_err());
    assert_eq!(
        label_matchers(r#"x{job=~"$job", state=~"open|half_open", reason!="permanent"}"#),
        [
            ("job".to_owned(), vec!["$job".to_owned()]),
            (
                "state".to_owned(),
                vec!["open".to_owned(), "half_open".to_owned()]
            ),
            ("reason".to_owned(), vec!["permanent".to_owned()]),
        ]
    );
}

// ----- the Kubernetes manifest -----

fn deployment() -> Yaml {
    yaml_documents(MANIFEST)
        .into_iter()
        .find(|doc| doc["kind"].as_str() == Some("Deployment"))
        .expect("a Deployment in the manifest")
}

fn app_container(deployment: &Yaml) -> &Yaml {
    let spec = &deployment["spec"]["template"]["spec"];
    spec["containers"]
        .as_vec()
        .expect("containers")
        .iter()
        .find(|c| c["name"].as_str() == Some("app"))
        .expect("a container named app")
}

fn env_value<'a>(container: &'a Yaml, name: &str) -> Option<&'a str> {
    container["env"]
        .as_vec()?
        .iter()
        .find(|e| e["name"].as_str() == Some(name))?["value"]
        .as_str()
}

#[test]
fn the_kubernetes_probes_hit_the_routes_dbretry_serves_on_the_port_the_service_listens_on() {
    let deployment = deployment();
    let app = app_container(&deployment);
    let readiness = &app["readinessProbe"]["httpGet"];
    let liveness = &app["livenessProbe"]["httpGet"];
    assert_eq!(
        readiness["path"].as_str(),
        Some(dbretry::http::DATABASE_HEALTH_PATH)
    );
    assert_eq!(
        liveness["path"].as_str(),
        Some(dbretry::http::LIVENESS_PATH)
    );

    let port = app["ports"]
        .as_vec()
        .expect("ports")
        .iter()
        .find(|p| p["name"].as_str() == readiness["port"].as_str())
        .expect("the readiness probe's port is a named container port");
    assert_eq!(liveness["port"], readiness["port"]);
    let listen = env_value(app, "LISTEN").expect("LISTEN");
    let container_port = port["containerPort"].as_i64().expect("containerPort");
    assert!(
        listen.ends_with(&format!(":{container_port}")),
        "LISTEN={listen} but the probes go to {container_port}"
    );
}

#[test]
fn the_kubernetes_shutdown_fits_in_the_grace_period() {
    let deployment = deployment();
    let spec = &deployment["spec"]["template"]["spec"];
    let app = app_container(&deployment);
    let grace = spec["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("terminationGracePeriodSeconds");
    let pre_stop = app["lifecycle"]["preStop"]["exec"]["command"]
        .as_vec()
        .expect("a preStop command");
    assert_eq!(pre_stop[0].as_str(), Some("sleep"));
    let sleep: i64 = pre_stop[1].as_str().unwrap().parse().unwrap();
    let drain: i64 = env_value(app, "DRAIN_DELAY_SECS").unwrap().parse().unwrap();
    // What is left must cover a request that waits out an outage (the example's 10 s budget).
    assert!(
        grace - sleep - drain >= 10,
        "grace {grace}s, preStop {sleep}s, drain {drain}s"
    );
    assert!(app["readinessProbe"]["timeoutSeconds"].as_i64().unwrap() > 2);
}

#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_init_container_command_is_dbretry_check_with_its_real_flags_and_passes_on_a_live_database()
 {
    let deployment = deployment();
    let init = &deployment["spec"]["template"]["spec"]["initContainers"][0];
    let command: Vec<&str> = init["command"]
        .as_vec()
        .expect("the init container has a command")
        .iter()
        .map(|arg| arg.as_str().expect("string arguments"))
        .collect();
    assert_eq!(command[..2], ["dbretry", "check"]);
    let uses_secret = init["env"]
        .as_vec()
        .expect("env")
        .iter()
        .any(|e| e["name"].as_str() == Some("DATABASE_URL") && !e["valueFrom"].is_badvalue());
    assert!(
        uses_secret,
        "the init container reads DATABASE_URL from a secret"
    );

    let help = tokio::process::Command::new(env!("CARGO_BIN_EXE_dbretry"))
        .args(["check", "--help"])
        .output()
        .await
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in command.iter().filter(|arg| arg.starts_with("--")) {
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "{flag} is not a flag of `dbretry check`:\n{help}"
        );
    }

    let pg = crate::support::PgCluster::start().await;
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_dbretry"))
        .args(&command[1..])
        .env("DATABASE_URL", pg.url())
        .output()
        .await
        .unwrap();
    assert!(
        run.status.success(),
        "{command:?} exited {}\n{}{}",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

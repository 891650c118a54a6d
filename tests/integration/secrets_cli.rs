//! No password reaches the output of `dbretry check`: random passwords in every form, through
//! every input path (`--url`, `$DATABASE_URL`, a `--config` file, broken or not, or given where a
//! file name belongs: `--config` or `--ca-file`), in every
//! output mode (plain, `-v`, `--json`), run as the built binary against a closed port.

use std::process::{Command, Output};

use proptest::prelude::*;

use crate::secrets::{Case, Form, any_case, assert_hidden, toml_string};
use crate::support;

#[derive(Clone, Copy, Debug)]
enum Input {
    Flag,
    Env,
    File,
    /// A config file whose `url` line is broken TOML.
    BrokenFile,
    /// The connection string given where a file name belongs: `--config postgres://…`.
    AsConfigFile,
    /// The connection string given as `--ca-file`, beside a target without a password.
    AsCaFile,
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Plain,
    Verbose,
    Json,
}

fn run(text: &str, input: Input, mode: Mode, wait: bool) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_dbretry"));
    command.arg("check").env_remove("DATABASE_URL");
    for (name, _) in std::env::vars_os() {
        if name
            .to_string_lossy()
            .to_ascii_uppercase()
            .starts_with("DB_RETRY_")
        {
            command.env_remove(name);
        }
    }
    match input {
        Input::Flag => {
            command.arg("--url").arg(text);
        }
        Input::Env => {
            command.env("DATABASE_URL", text);
        }
        Input::File | Input::BrokenFile => {
            let url = toml_string(text);
            let line = match input {
                Input::File => format!("url = {url}"),
                // Unclosed array: TOML's own message would print this line.
                _ => format!("url = [{url}"),
            };
            let path = dir.path().join("dbretry.toml");
            std::fs::write(&path, format!("[databases.default]\n{line}\n")).unwrap();
            command.arg("--config").arg(&path);
        }
        Input::AsConfigFile => {
            command.arg("--config").arg(text);
        }
        Input::AsCaFile => {
            let url = format!("postgres://app@127.0.0.1:{}/app", closed_port());
            command.arg("--url").arg(url).arg("--ca-file").arg(text);
        }
    }
    match mode {
        Mode::Plain => {}
        Mode::Verbose => {
            command.arg("-v");
        }
        Mode::Json => {
            command.arg("--json");
        }
    }
    if wait {
        command.args(["--wait", "--timeout", "300ms"]);
    }
    command.output().unwrap()
}

fn any_input() -> impl Strategy<Value = Input> {
    prop::sample::select(vec![
        Input::Flag,
        Input::Env,
        Input::File,
        Input::BrokenFile,
        Input::AsConfigFile,
        Input::AsCaFile,
    ])
}

fn any_mode() -> impl Strategy<Value = Mode> {
    prop::sample::select(vec![Mode::Plain, Mode::Verbose, Mode::Json])
}

fn closed_port() -> u16 {
    static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *PORT.get_or_init(support::free_port)
}

proptest! {
    // A process per case: a few hundred cases keep this to seconds.
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn no_password_reaches_the_cli_output(
        case in any_case(closed_port(), true),
        input in any_input(),
        mode in any_mode(),
        broken in prop::bool::weighted(0.25),
        wait in prop::bool::weighted(0.1),
        pick in any::<usize>(),
    ) {
        // Code has no place on the command line: the builder form is written as a quoted
        // key=value string instead.
        let case = if case.form == Form::Builder {
            Case { form: Form::KvQuoted, ..case }
        } else {
            case
        };
        let text = if broken {
            let texts = case.broken_texts();
            texts[pick % texts.len()].clone()
        } else {
            case.text().unwrap()
        };
        let output = run(&text, input, mode, wait);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_hidden(&case, [("stdout", stdout.to_string()), ("stderr", stderr.to_string())]);
        let code = output.status.code();
        prop_assert!(matches!(code, Some(2 | 3)), "exit {code:?}: {stdout} {stderr}");
        if matches!(input, Input::BrokenFile) {
            prop_assert_eq!(code, Some(3), "{}", stderr);
            prop_assert!(stderr.contains("dbretry.toml:2, key `databases.default.url`"), "{}", stderr);
        }
    }
}

//! `dbretry check`: is the database accepting connections? For init containers, deploy
//! scripts and humans. Exit codes as `pg_isready`: 0 accepting, 1 rejecting (the server
//! answered but refused: starting up, shutting down, out of slots), 2 no response, 3 bad
//! parameters or a permanent error (wrong password, no such database) — at once, without
//! waiting out `--timeout`.

mod args;
mod config_file;
mod probe;
mod sqlite_codes;
mod targets;
mod tls;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::probe::Outcome;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version: clap's text, which quotes nothing the user typed.
        Err(error) if !error.use_stderr() => {
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("{}", args::describe(&error));
            return ExitCode::from(probe::BAD_PARAMETERS);
        }
    };
    let Command::Check(check) = cli.command;
    if check.verbose {
        tracing_to_stderr();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            // No attempt was made: pg_isready's code for that is 3.
            eprintln!("dbretry: cannot start: {error}");
            return ExitCode::from(probe::BAD_PARAMETERS);
        }
    };
    let code = runtime.block_on(run(check));
    ExitCode::from(code)
}

async fn run(check: args::Check) -> u8 {
    let setup = targets::resolve(&check).and_then(|plan| Ok((plan, tls::Tls::from_args(&check)?)));
    let (plan, tls) = match setup {
        Ok(setup) => setup,
        Err(message) => {
            eprintln!("dbretry: {message}");
            return probe::BAD_PARAMETERS;
        }
    };
    if check.verbose {
        // Where each setting came from, so that an operator sees which layer won.
        eprintln!("dbretry: retry settings: {:?}", plan.settings);
    }
    let checks = plan
        .targets
        .iter()
        .map(|target| probe::check(target, &plan.policy, &tls));
    let outcomes: Vec<Outcome> = futures_util::future::join_all(checks).await;
    if check.json {
        let body: Vec<_> = outcomes.iter().map(Outcome::to_json).collect();
        println!("{}", serde_json::json!({ "databases": body }));
    } else {
        for outcome in &outcomes {
            println!("{}", outcome.line(check.verbose));
        }
    }
    outcomes.iter().map(|o| o.exit_code).max().unwrap_or(0)
}

/// With `--verbose`, dbretry's own log events (each retry, the give-up) go to stderr.
fn tracing_to_stderr() {
    struct Stderr;
    impl tracing::Subscriber for Stderr {
        fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
            metadata.target().starts_with("dbretry") && *metadata.level() <= tracing::Level::INFO
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let mut line = String::new();
            event.record(
                &mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
                    use std::fmt::Write;
                    let _ = if field.name() == "message" {
                        write!(line, "{value:?}")
                    } else {
                        write!(line, " {}={value:?}", field.name())
                    };
                },
            );
            eprintln!("dbretry: {line}");
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }
    let _ = tracing::subscriber::set_global_default(Stderr);
}

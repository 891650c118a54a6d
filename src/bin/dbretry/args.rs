use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue};
use clap::{Args, Parser, Subcommand};

/// Checks that databases accept connections, retrying the way dbretry's pools do.
#[derive(Debug, Parser)]
#[command(name = "dbretry", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Is the database accepting connections? Exit 0 accepting, 1 rejecting, 2 no response,
    /// 3 bad parameters or a permanent error.
    Check(Check),
}

#[derive(Debug, Args)]
pub(crate) struct Check {
    /// The database: postgres://user:password@host:port/db (or key=value pairs), or
    /// sqlite:path (the file must exist). Default: $DATABASE_URL.
    #[arg(long, conflicts_with = "config")]
    pub(crate) url: Option<String>,

    /// A TOML file with [databases.NAME] url = "…" sections and an optional [retry] section
    /// (the RetryConfig keys).
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,

    /// Which database of the config file to check (default: `default`, or the only one).
    #[arg(long, conflicts_with = "all")]
    pub(crate) database: Option<String>,

    /// Check every database of the config file, in the file's order.
    #[arg(long)]
    pub(crate) all: bool,

    /// Retry transient failures (server down, starting up, out of slots) under the retry
    /// policy (the [retry] section and DB_RETRY_* variables) until --timeout.
    #[arg(long)]
    pub(crate) wait: bool,

    /// With --wait, the deadline for all tries (the policy's max_elapsed; default: the
    /// policy's, else 3 s); without, the bound on the one try (default 3 s). Seconds (2.5) or a
    /// number with a unit (500ms, 2s, 1m, 1h).
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true)]
    pub(crate) timeout: Option<String>,

    /// CA certificates (PEM) to verify PostgreSQL servers with, instead of the Mozilla roots;
    /// also read from $PGSSLROOTCERT. Needs the tls-rustls feature.
    #[arg(long, value_name = "FILE")]
    pub(crate) ca_file: Option<PathBuf>,

    /// Print each retry and the full error.
    #[arg(long, short)]
    pub(crate) verbose: bool,

    /// Print the result as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// clap's error, told without the values it would quote: an argument typed in the wrong place
/// may be a connection string (`dbretry check postgres://app:secret@db/app`), and clap's own
/// message would echo it (`unexpected argument 'postgres://app:secret@…' found`).
pub(crate) fn describe(error: &clap::Error) -> String {
    let what = error.kind().as_str().unwrap_or("invalid arguments");
    let mut message = format!("dbretry: {what}");
    let flag = |kind: ContextKind| match error.get(kind) {
        Some(ContextValue::String(text)) if looks_like_a_flag(text) => Some(text.clone()),
        _ => None,
    };
    match flag(ContextKind::InvalidArg) {
        Some(arg) => message.push_str(&format!(": {arg}")),
        None if error.get(ContextKind::InvalidArg).is_some()
            || error.get(ContextKind::InvalidSubcommand).is_some() =>
        {
            message.push_str(
                " (not shown: it does not look like an option and may hold a secret; the \
                 database goes after --url, or in $DATABASE_URL)",
            );
        }
        None => {}
    }
    if let Some(prior) = flag(ContextKind::PriorArg) {
        message.push_str(&format!(" (with {prior})"));
    }
    let suggestion = match error.get(ContextKind::SuggestedArg) {
        Some(ContextValue::String(text)) => Some(text.clone()),
        Some(ContextValue::Strings(texts)) => texts.first().cloned(),
        _ => None,
    }
    .or_else(|| match error.get(ContextKind::SuggestedSubcommand) {
        Some(ContextValue::String(text)) => Some(text.clone()),
        Some(ContextValue::Strings(texts)) => texts.first().cloned(),
        _ => None,
    });
    if let Some(suggestion) = suggestion.filter(|s| looks_like_a_flag(s) || is_word(s)) {
        message.push_str(&format!("; did you mean {suggestion}?"));
    }
    message.push_str("\nRun `dbretry check --help` for the options.");
    message
}

/// `--name` or `-n`, possibly with clap's `<VALUE>` placeholder: something the program
/// defines, not something the user typed as a value.
fn looks_like_a_flag(text: &str) -> bool {
    let name = text.split(' ').next().unwrap_or_default();
    let bare = name.trim_start_matches('-');
    name.starts_with('-')
        && name.len() - bare.len() <= 2
        && !bare.is_empty()
        && bare.len() <= 32
        && bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn is_word(text: &str) -> bool {
    !text.is_empty() && text.len() <= 32 && text.chars().all(|c| c.is_ascii_lowercase())
}

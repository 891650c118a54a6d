use std::path::PathBuf;

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
    /// The database: postgres://user:password@host:port/db, or sqlite:path (the file must
    /// exist). Default: $DATABASE_URL.
    #[arg(long, conflicts_with = "config")]
    pub(crate) url: Option<String>,

    /// A TOML file with [databases.NAME] url = "…" sections and an optional [retry] section
    /// (the RetryConfig keys).
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,

    /// Which database of the config file to check (default: `default`, or the only one).
    #[arg(long, conflicts_with = "all")]
    pub(crate) database: Option<String>,

    /// Check every database of the config file.
    #[arg(long)]
    pub(crate) all: bool,

    /// Retry transient failures (server down, starting up, out of slots) until --timeout.
    #[arg(long)]
    pub(crate) wait: bool,

    /// Seconds to wait in all (with --wait), or for the one attempt (without).
    #[arg(long, default_value_t = 3.0)]
    pub(crate) timeout: f64,

    /// Print each retry and the full error.
    #[arg(long, short)]
    pub(crate) verbose: bool,

    /// Print the result as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

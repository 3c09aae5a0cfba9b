//! The command line: global options and one subcommand per verb, with Docker's names and flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands;
use crate::env;

/// ferry carries container images across an air gap: fetch them on a connected PC (Windows or
/// Linux), carry one archive over, then load and run them on the offline Linux host.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Show debug logs on stderr (twice for everything); FERRY_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Store directory (default: /var/lib/ferry as root, else the user's data directory).
    #[arg(long, global = true, env = env::FERRY_ROOT, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download images from a registry into one archive for `docker load` or `ferry load`.
    Fetch(commands::fetch::FetchArgs),
}

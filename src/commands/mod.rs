//! One module per subcommand; each turns parsed arguments into one library call.

pub mod fetch;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Fetch(args) => fetch::run(args, &cli.global),
    }
}

//! `ferry ps [-a]`.

use std::process::ExitCode;

use clap::Args;

use super::store;
use crate::cli::GlobalArgs;

/// Arguments of `ferry ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers, not only running ones.
    #[arg(short, long)]
    pub all: bool,
    /// Only print IDs.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Prints the table.
pub fn run(args: PsArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let rows = ferry_run::container::list::rows(&store::containers(global), args.all);
    let mut out = std::io::stdout().lock();
    if args.quiet {
        use std::io::Write;
        for r in rows {
            writeln!(out, "{}", r.id)?;
        }
    } else {
        ferry_run::container::list::print(&rows, &mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}

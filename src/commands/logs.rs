//! `ferry logs [-f] CONTAINER`.

use std::process::ExitCode;

use clap::Args;

use super::store;
use crate::cli::GlobalArgs;

/// Arguments of `ferry logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep following the output until the container stops.
    #[arg(short, long)]
    pub follow: bool,
    /// Container name or ID.
    pub container: String,
}

/// Replays the log.
pub fn run(args: LogsArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let (c, _) = store::containers(global).find(&args.container)?;
    ferry_run::container::logs::show(&c, args.follow)?;
    Ok(ExitCode::SUCCESS)
}

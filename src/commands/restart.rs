//! `ferry restart [-t N] CONTAINER…`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::store;
use crate::cli::GlobalArgs;

/// Arguments of `ferry restart`.
#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Seconds to wait for it to stop before killing (default: its --stop-timeout, else 10).
    #[arg(short = 't', long = "time")]
    pub time: Option<u64>,
    /// Container names or IDs.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Restarts each container and prints its reference.
pub fn run(args: RestartArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let source = store::open(global)?;
    let cs = store::containers(global);
    for c in &args.containers {
        ferry_run::container::restart::restart(
            &source,
            &cs,
            c,
            args.time.map(Duration::from_secs),
        )?;
        println!("{c}");
    }
    Ok(ExitCode::SUCCESS)
}

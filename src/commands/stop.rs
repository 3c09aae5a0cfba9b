//! `ferry stop [-t N] CONTAINER…`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::store;
use crate::cli::GlobalArgs;

/// Arguments of `ferry stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before killing (default: the container's --stop-timeout, else 10).
    #[arg(short = 't', long = "time")]
    pub time: Option<u64>,
    /// Container names or IDs.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Stops each container and prints its reference.
pub fn run(args: StopArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let cs = store::containers(global);
    for c in &args.containers {
        ferry_run::container::stop::stop(&cs, c, args.time.map(Duration::from_secs))?;
        println!("{c}");
    }
    Ok(ExitCode::SUCCESS)
}

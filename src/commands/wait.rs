//! `ferry wait CONTAINER…`.

use std::process::ExitCode;

use clap::Args;

use super::store;
use crate::cli::GlobalArgs;

/// Arguments of `ferry wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Container names or IDs.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Waits for each container to stop and prints its exit status.
pub fn run(args: WaitArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let cs = store::containers(global);
    for c in &args.containers {
        let code = ferry_run::container::wait::wait(&cs, c)?;
        println!("{code}");
    }
    Ok(ExitCode::SUCCESS)
}

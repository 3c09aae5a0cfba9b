//! `ferry rm [-f] CONTAINER…`.

use std::process::ExitCode;

use clap::Args;

use super::store;
use crate::cli::GlobalArgs;

/// Arguments of `ferry rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill a running container first.
    #[arg(short, long)]
    pub force: bool,
    /// Also remove its anonymous volumes.
    #[arg(short, long)]
    pub volumes: bool,
    /// Container names or IDs.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Removes each container and prints its reference.
pub fn run(args: RmArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let cs = store::containers(global);
    for c in &args.containers {
        let found = args.volumes.then(|| cs.find(c)).transpose()?;
        let name = ferry_run::container::remove::remove(&cs, c, args.force)?;
        if let Some((container, meta)) = found {
            ferry_run::volume::release(&container, &meta);
        }
        println!("{name}");
    }
    Ok(ExitCode::SUCCESS)
}

//! `ferry kill [-s SIGNAL] CONTAINER…`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::store;
use crate::cli::GlobalArgs;

/// Arguments of `ferry kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal name or number.
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    /// Container names or IDs.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Signals each container and prints its reference.
pub fn run(args: KillArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let sig = ferry_run::process::signal::parse(&args.signal)
        .with_context(|| format!("invalid signal `{}`", args.signal))?;
    let cs = store::containers(global);
    for c in &args.containers {
        ferry_run::container::kill::kill(&cs, c, sig)?;
        println!("{c}");
    }
    Ok(ExitCode::SUCCESS)
}

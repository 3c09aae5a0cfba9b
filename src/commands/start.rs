//! `ferry start [-a] [-i] CONTAINER…`.

use std::process::ExitCode;

use clap::Args;
use ferry_run::container::start::StartOptions;

use super::store;
use crate::cli::GlobalArgs;

/// Arguments of `ferry start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Follow the container's output and exit with its status.
    #[arg(short, long)]
    pub attach: bool,
    /// With -a: also pass standard input (the container runs in the foreground).
    #[arg(short, long)]
    pub interactive: bool,
    /// Container names or IDs.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Starts each container; prints its reference, or with -a its output.
pub fn run(args: StartArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    if args.attach && args.containers.len() > 1 {
        anyhow::bail!("you cannot start and attach multiple containers at once");
    }
    let source = store::open(global)?;
    let cs = store::containers(global);
    let opts = StartOptions {
        attach: args.attach,
        interactive: args.interactive,
    };
    for c in &args.containers {
        match ferry_run::container::start::start(&source, &cs, c, opts)? {
            Some(code) => return Ok(ExitCode::from(code.clamp(0, 255) as u8)),
            None if !args.attach => println!("{c}"),
            None => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}

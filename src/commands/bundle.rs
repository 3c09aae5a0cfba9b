//! `ferry bundle [OPTIONS] IMAGE DIR`: an OCI runtime bundle for runc, crun or any runtime.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::run::ContainerArgs;
use super::store;
use crate::cli::GlobalArgs;

/// Arguments of `ferry bundle`.
#[derive(Debug, Args)]
pub struct BundleArgs {
    #[command(flatten)]
    pub container: ContainerArgs,
    /// Image name, ID or ID prefix.
    pub image: String,
    /// The bundle directory to create (empty or absent).
    pub dir: PathBuf,
    /// Command and arguments (replace the image's Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Writes the bundle.
pub fn run(args: BundleArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let mut opts = args.container.options()?;
    opts.command = args.command;
    let source = store::open(global)?;
    ferry_run::container::bundle::bundle(&source, &args.image, &args.dir, &opts)?;
    Ok(ExitCode::SUCCESS)
}

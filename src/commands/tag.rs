//! `ferry tag SOURCE TARGET`: give an image another name.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ferry_oci::ImageReference;

use crate::cli::GlobalArgs;

/// Arguments of `ferry tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image: a name or (a prefix of) its ID.
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// The new name.
    #[arg(value_name = "TARGET")]
    pub target: ImageReference,
}

/// Runs `ferry tag`.
pub fn run(args: TagArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let store = crate::store::open(global)?;
    store
        .tag(&args.source, &args.target)
        .with_context(|| format!("cannot tag {} as {}", args.source, args.target))?;
    Ok(ExitCode::SUCCESS)
}

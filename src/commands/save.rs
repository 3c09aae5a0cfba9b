//! `ferry save IMAGE… [-o FILE]`: images of the store into the archive `ferry fetch` writes,
//! blobs exactly as loaded, so `docker load` and `ferry load` give the same image IDs back.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::cli::GlobalArgs;

/// Arguments of `ferry save`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Images: names (kept in the archive) or IDs (saved without a name).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Write to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Runs `ferry save`.
pub fn run(args: SaveArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let store = crate::store::open(global)?;
    let what = args.images.join(" ");
    let save = |w: &mut dyn std::io::Write| -> anyhow::Result<()> {
        store
            .save(&args.images, w)
            .with_context(|| format!("failed to save {what}"))?;
        Ok(())
    };
    match args.output.as_ref().filter(|p| p.as_os_str() != "-") {
        Some(path) => crate::output::to_file(path, |w| save(w))?,
        None => crate::output::to_stdout(|w| save(w))?,
    }
    Ok(ExitCode::SUCCESS)
}

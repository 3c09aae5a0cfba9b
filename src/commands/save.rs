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
    /// Write FILE.000, FILE.001, … of at most SIZE bytes each (K, M, G in powers of 1024;
    /// `fat32` is 4 GiB − 1 byte), with one FILE.sha256 for all parts.
    #[arg(long, value_name = "SIZE", requires = "output", value_parser = ferry_fetch::parse_split_size)]
    pub split: Option<u64>,
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
        Some(path) if args.split.is_some() => {
            let size = args.split.unwrap_or_default();
            let mut w = ferry_fetch::split::SplitWriter::new(path, size);
            if let Err(e) = save(&mut w) {
                w.discard();
                return Err(e);
            }
            let parts = w
                .finish()
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "saved {what} into {} part{} of at most {} ({}.000 …), sums in {}.sha256",
                parts.len(),
                if parts.len() == 1 { "" } else { "s" },
                crate::progress::human_bytes(size),
                path.display(),
                path.display()
            );
        }
        Some(path) => crate::output::to_file(path, |w| save(w))?,
        None => crate::output::to_stdout(|w| save(w))?,
    }
    Ok(ExitCode::SUCCESS)
}

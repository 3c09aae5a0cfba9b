//! `ferry save IMAGE… [-o FILE]`: images of the store into the archive `ferry fetch` writes,
//! blobs exactly as loaded, so `docker load` and `ferry load` give the same image IDs back.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
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
    match args.output.as_ref().filter(|p| p.as_os_str() != "-") {
        Some(path) if args.split.is_some() => {
            let size = args.split.unwrap_or_default();
            let mut w = ferry_fetch::split::SplitWriter::new(path, size);
            let result = store
                .save(&args.images, &mut w)
                .map_err(anyhow::Error::from);
            match result {
                Ok(_) => {
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
                Err(e) => {
                    w.discard();
                    return Err(e.context(format!("failed to save {what}")));
                }
            }
        }
        Some(path) => {
            // Written beside the target and renamed: a reader never sees half an archive.
            let mut part = path.clone().into_os_string();
            part.push(".part");
            let part = PathBuf::from(part);
            let file = std::fs::File::create(&part)
                .with_context(|| format!("cannot create {}", part.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1024 * 1024, file);
            let result = store
                .save(&args.images, &mut w)
                .map_err(anyhow::Error::from)
                .and_then(|plan| {
                    w.flush()?;
                    w.get_ref().sync_all()?;
                    Ok(plan)
                });
            if let Err(e) = result {
                let _ = std::fs::remove_file(&part);
                return Err(e.context(format!("failed to save {what}")));
            }
            std::fs::rename(&part, path).with_context(|| {
                format!("cannot rename {} to {}", part.display(), path.display())
            })?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                bail!(
                    "refusing to write an archive to a terminal; redirect standard output or use -o FILE"
                );
            }
            let mut out = std::io::BufWriter::with_capacity(1024 * 1024, std::io::stdout().lock());
            store
                .save(&args.images, &mut out)
                .with_context(|| format!("failed to save {what}"))?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

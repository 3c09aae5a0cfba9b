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
}

/// Runs `ferry save`.
pub fn run(args: SaveArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let store = crate::store::open(global)?;
    let what = args.images.join(" ");
    match args.output.as_ref().filter(|p| p.as_os_str() != "-") {
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
                .and_then(|_| Ok(w.into_inner().map_err(|e| e.into_error())?));
            let file = match result {
                Ok(f) => f,
                Err(e) => {
                    let _ = std::fs::remove_file(&part);
                    return Err(e.context(format!("failed to save {what}")));
                }
            };
            // Synced, renamed, the rename synced: a power cut never leaves a half archive named.
            ferry_oci::archive::publish(file, &part, path).with_context(|| {
                format!("cannot publish {} as {}", part.display(), path.display())
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

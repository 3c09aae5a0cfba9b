//! `ferry system prune` and `ferry system df`: the store's disk space.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};

use crate::cli::GlobalArgs;
use crate::progress::human_bytes;

/// `ferry system …`.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Remove unnamed images no container uses, build cache no named image was built
    /// through, and every blob and snapshot nothing needs.
    Prune(PruneArgs),
    /// Show the store's disk usage.
    Df,
}

/// Arguments of `ferry system prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Also remove named images that no container uses, and all build cache.
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

/// Runs `ferry system …`.
pub fn run(cmd: SystemCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    let store = crate::store::open(global)?;
    match cmd {
        SystemCommand::Prune(args) => {
            if !args.force {
                let what = if args.all {
                    "all images without a container using them, and all build cache"
                } else {
                    "all images without a name and a container using them, and unused build cache"
                };
                if !std::io::stdin().is_terminal() {
                    bail!("this removes {what}; pass -f to confirm without a prompt");
                }
                eprint!(
                    "WARNING! This will remove {what}, and every blob and layer no image needs.\nAre you sure you want to continue? [y/N] "
                );
                std::io::stderr().flush()?;
                let mut answer = String::new();
                std::io::stdin().lock().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            let report = store.prune(args.all)?;
            if !report.images.is_empty() {
                writeln!(stdout, "Deleted Images:")?;
                for id in &report.images {
                    writeln!(stdout, "deleted: {id}")?;
                }
                writeln!(stdout)?;
            }
            if report.build_cache > 0 {
                writeln!(
                    stdout,
                    "Deleted build cache objects: {}\n",
                    report.build_cache
                )?;
            }
            if report.deferred {
                eprintln!(
                    "notice: a load is running; blobs and layers it may need are kept until the next prune"
                );
            }
            writeln!(
                stdout,
                "Total reclaimed space: {}",
                human_bytes(report.freed)
            )?;
        }
        SystemCommand::Df => {
            let du = store.disk_usage()?;
            let rows = [
                (
                    "Images",
                    du.images.to_string(),
                    du.images_in_use.to_string(),
                    human_bytes(du.image_bytes),
                    human_bytes(du.reclaimable_bytes),
                ),
                (
                    "Containers",
                    du.containers.to_string(),
                    du.containers.to_string(),
                    human_bytes(du.container_bytes),
                    human_bytes(0),
                ),
                (
                    "Build Cache",
                    du.build_cache.records.to_string(),
                    du.build_cache.active.to_string(),
                    human_bytes(du.build_cache.bytes),
                    human_bytes(du.build_cache.reclaimable),
                ),
                (
                    "Unreferenced",
                    String::new(),
                    String::new(),
                    human_bytes(du.unreferenced_bytes),
                    human_bytes(du.unreferenced_bytes),
                ),
            ];
            writeln!(
                stdout,
                "{:<14}{:<8}{:<8}{:<12}RECLAIMABLE",
                "TYPE", "TOTAL", "ACTIVE", "SIZE"
            )?;
            for (t, total, active, size, recl) in rows {
                writeln!(stdout, "{t:<14}{total:<8}{active:<8}{size:<12}{recl}")?;
            }
            writeln!(stdout, "store: {}", store.root().display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `ferry system prune` and `ferry system df`: the store's disk space.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};

use serde_json::json;

use crate::cli::GlobalArgs;
use crate::format::{Columns, Format};
use crate::progress::human_bytes;

/// `ferry system …`.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Remove unnamed images no container uses, build cache no named image was built
    /// through, and every blob and snapshot nothing needs.
    Prune(PruneArgs),
    /// Show the store's disk usage.
    Df(DfArgs),
}

/// Arguments of `ferry system df`.
#[derive(Debug, Args)]
pub struct DfArgs {
    /// Pretty-print using a Go template (`table …`, `json`).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

/// `system df`'s template fields and headings.
const DF_COLUMNS: Columns = &[
    ("Type", "TYPE"),
    ("TotalCount", "TOTAL"),
    ("Active", "ACTIVE"),
    ("Size", "SIZE"),
    ("Reclaimable", "RECLAIMABLE"),
];

const DF_TABLE: &str = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}";

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

/// Asks before removing `what`, as Docker's prune commands do; refuses without a terminal
/// (pass `-f`). Returns whether the user agreed.
pub fn confirm(what: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("this removes {what}; pass -f to confirm without a prompt");
    }
    eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Runs `ferry system …`.
pub fn run(cmd: SystemCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    let store = crate::store::open(global)?;
    match cmd {
        SystemCommand::Prune(args) => {
            let what = if args.all {
                "all images without a container using them, and all build cache"
            } else {
                "all images without a name and a container using them, and unused build cache"
            };
            if !args.force && !confirm(&format!("{what}, and every blob and layer no image needs"))?
            {
                return Ok(ExitCode::SUCCESS);
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
        SystemCommand::Df(args) => {
            let du = store.disk_usage()?;
            let containers = super::store::containers(global);
            let volumes = ferry_run::volume::Volumes::of(&containers).usage(&containers);
            let size = |b: u64| crate::human::size_with_precision(b, 4);
            // Docker's RECLAIMABLE: the size, then its share of the whole when there is one.
            let reclaimable = |part: u64, whole: u64| {
                let share = (part * 100)
                    .checked_div(whole)
                    .map(|p| format!(" ({p}%)"))
                    .unwrap_or_default();
                format!("{}{share}", size(part))
            };
            let row = |t: &str, total: String, active: String, bytes: u64, recl: String| {
                json!({"Type": t, "TotalCount": total, "Active": active,
                       "Size": size(bytes), "Reclaimable": recl})
            };
            let rows = vec![
                row(
                    "Images",
                    du.images.to_string(),
                    du.images_in_use.to_string(),
                    du.image_bytes,
                    reclaimable(du.reclaimable_bytes, du.image_bytes),
                ),
                row(
                    "Containers",
                    du.containers.to_string(),
                    du.containers.to_string(),
                    du.container_bytes,
                    size(0),
                ),
                row(
                    "Local Volumes",
                    volumes.count.to_string(),
                    volumes.active.to_string(),
                    volumes.bytes,
                    reclaimable(volumes.reclaimable, volumes.bytes),
                ),
                row(
                    "Build Cache",
                    du.build_cache.records.to_string(),
                    du.build_cache.active.to_string(),
                    du.build_cache.bytes,
                    size(du.build_cache.reclaimable),
                ),
                // ferry's own: blobs and snapshots no image needs (`system prune` frees them).
                row(
                    "Unreferenced",
                    String::new(),
                    String::new(),
                    du.unreferenced_bytes,
                    size(du.unreferenced_bytes),
                ),
            ];
            let format = Format::listing(args.format.as_deref(), DF_TABLE)?;
            stdout.write_all(
                format
                    .render(&rows, DF_COLUMNS, "disk usage row")?
                    .as_bytes(),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `ferry image …`: Docker's management command for images. Its verbs are the top-level
//! commands (routed in `management.rs`: `image ls` is `images`, `image inspect` is
//! `inspect --type image`); only `prune` lives here, as in Docker.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::cli::GlobalArgs;

/// `ferry image …` (the other verbs are routed to `ferry images`, `ferry load`, …).
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Remove unused images: dangling ones (no name, no container), all unused with -a.
    Prune(PruneArgs),
}

/// Arguments of `ferry image prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones.
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

/// Runs `ferry image prune`.
pub fn run(cmd: ImageCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let ImageCommand::Prune(args) = cmd;
    let what = if args.all {
        "all images without at least one container associated to them"
    } else {
        "all dangling images"
    };
    if !args.force && !super::system::confirm(what)? {
        return Ok(ExitCode::SUCCESS);
    }
    let store = crate::store::open(global)?;
    let report = store.prune(args.all)?;
    let mut stdout = std::io::stdout().lock();
    if !report.images.is_empty() {
        writeln!(stdout, "Deleted Images:")?;
        for id in &report.images {
            writeln!(stdout, "deleted: {id}")?;
        }
        writeln!(stdout)?;
    }
    writeln!(
        stdout,
        "Total reclaimed space: {}",
        crate::human::size(report.freed)
    )?;
    Ok(ExitCode::SUCCESS)
}

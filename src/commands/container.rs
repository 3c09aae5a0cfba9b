//! `ferry container …`: Docker's management command for containers. Its verbs are the
//! top-level commands (routed in `management.rs`); only `prune` lives here, as in Docker.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use ferry_run::container::Status;

use super::store;
use crate::cli::GlobalArgs;
use crate::filter::Filters;

/// `ferry container …` (the other verbs are routed to `ferry ps`, `ferry run`, …).
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Remove all stopped containers.
    Prune(PruneArgs),
}

/// Arguments of `ferry container prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
    /// Only containers matching: `label=KEY[=VALUE]`, `until=TIMESTAMP` (seconds or RFC 3339).
    #[arg(long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
}

/// Runs `ferry container prune`.
pub fn run(cmd: ContainerCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let ContainerCommand::Prune(args) = cmd;
    let filters = Filters::parse(&args.filter, &["label", "until"])?;
    let until = filters
        .get("until")
        .iter()
        .map(|u| {
            u.parse::<i64>()
                .ok()
                .or_else(|| ferry_oci::time::parse_rfc3339(u))
                .ok_or_else(|| anyhow::anyhow!("invalid filter 'until={u}': a timestamp"))
        })
        .collect::<anyhow::Result<Vec<i64>>>()?;
    if !args.force && !super::system::confirm("all stopped containers")? {
        return Ok(ExitCode::SUCCESS);
    }
    let containers = store::containers(global);
    let store = crate::store::open(global).ok();
    let mut stdout = std::io::stdout().lock();
    let mut removed = Vec::new();
    let mut freed = 0;
    for l in ferry_run::container::list::list(&containers, true) {
        if l.state.status == Status::Running || until.iter().any(|u| l.meta.created as i64 >= *u) {
            continue;
        }
        if filters.has("label") {
            let labels = store
                .as_ref()
                .map(|s| super::store::labels_of(s, &l.meta.image_id))
                .unwrap_or_default();
            if !filters.labels_match(&labels) {
                continue;
            }
        }
        freed += dir_bytes(&l.container.dir.join("upper"));
        ferry_run::container::remove::remove(&containers, &l.container.id, false)?;
        removed.push(l.container.id);
    }
    if !removed.is_empty() {
        writeln!(stdout, "Deleted Containers:")?;
        for id in &removed {
            writeln!(stdout, "{id}")?;
        }
        writeln!(stdout)?;
    }
    writeln!(
        stdout,
        "Total reclaimed space: {}",
        crate::human::size(freed)
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

//! `ferry volume create|ls|inspect|rm|prune`: named volumes, as Docker's `local` driver.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use ferry_oci::time::rfc3339_nanos as rfc3339;
use ferry_run::volume::{VolumeInfo, Volumes};

use super::store;
use crate::cli::GlobalArgs;
use crate::progress::human_bytes;

/// `ferry volume …`.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume (a random name when none is given).
    Create(CreateArgs),
    /// List volumes.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show volumes as JSON.
    Inspect(NamesArgs),
    /// Remove volumes no container uses.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove every volume no container uses.
    Prune(PruneArgs),
}

/// Arguments of `ferry volume create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Volume driver (only `local`).
    #[arg(short, long, default_value = "local")]
    pub driver: String,
    /// Set a label (KEY=VALUE).
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// The volume's name.
    pub name: Option<String>,
}

/// Arguments of `ferry volume ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only print names.
    #[arg(short, long)]
    pub quiet: bool,
    /// `dangling=true|false`, `name=TEXT`, `label=KEY[=VALUE]`.
    #[arg(short, long, value_name = "FILTER")]
    pub filter: Vec<String>,
}

/// Volume names.
#[derive(Debug, Args)]
pub struct NamesArgs {
    /// Volume names.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Arguments of `ferry volume rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Accepted for Docker's sake: a volume in use is refused all the same.
    #[arg(short, long)]
    pub force: bool,
    /// Volume names.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Arguments of `ferry volume prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

fn inspect(v: &VolumeInfo, vs: &Volumes) -> serde_json::Value {
    serde_json::json!({
        "CreatedAt": rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(v.created))
            .split('.')
            .next()
            .map(|s| format!("{s}Z"))
            .unwrap_or_default(),
        "Driver": "local",
        "Labels": v.labels,
        "Mountpoint": vs.data_dir(&v.name),
        "Name": v.name,
        "Options": {},
        "Scope": "local",
    })
}

/// Runs `ferry volume`.
pub fn run(cmd: VolumeCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let containers = store::containers(global);
    let vs = Volumes::of(&containers);
    let mut out = std::io::stdout().lock();
    match cmd {
        VolumeCommand::Create(a) => {
            if a.driver != "local" {
                anyhow::bail!(
                    "error looking up volume plugin {}: plugin not found",
                    a.driver
                );
            }
            let mut labels = BTreeMap::new();
            for l in &a.label {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                labels.insert(k.to_string(), v.to_string());
            }
            let v = vs.create(a.name.as_deref(), labels, a.name.is_none())?;
            writeln!(out, "{}", v.name)?;
        }
        VolumeCommand::Ls(a) => {
            let used: std::collections::HashSet<String> = containers
                .all()
                .into_iter()
                .flat_map(|(_, m)| m.host.volumes().map(str::to_string).collect::<Vec<_>>())
                .collect();
            let mut list = vs.list();
            for f in &a.filter {
                let (k, v) = f.split_once('=').unwrap_or((f, ""));
                match k {
                    "dangling" => {
                        let want = matches!(v, "true" | "1");
                        list.retain(|x| used.contains(&x.name) != want);
                    }
                    "name" => list.retain(|x| x.name.contains(v)),
                    "label" => {
                        let (lk, lv) = match v.split_once('=') {
                            Some((lk, lv)) => (lk, Some(lv)),
                            None => (v, None),
                        };
                        list.retain(|x| {
                            x.labels
                                .get(lk)
                                .is_some_and(|have| lv.is_none_or(|want| have == want))
                        });
                    }
                    other => anyhow::bail!("invalid filter '{other}'"),
                }
            }
            if a.quiet {
                for v in &list {
                    writeln!(out, "{}", v.name)?;
                }
            } else {
                writeln!(out, "DRIVER    VOLUME NAME")?;
                for v in &list {
                    writeln!(out, "local     {}", v.name)?;
                }
            }
        }
        VolumeCommand::Inspect(a) => {
            let mut docs = Vec::new();
            for n in &a.names {
                docs.push(inspect(&vs.get(n)?, &vs));
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&docs)?)?;
        }
        VolumeCommand::Rm(a) => {
            let mut failed = None;
            for n in &a.names {
                match vs.remove(n, &containers) {
                    Ok(()) => writeln!(out, "{n}")?,
                    Err(e) => {
                        eprintln!("error: {e}");
                        failed = Some(e);
                    }
                }
            }
            if failed.is_some() {
                return Ok(ExitCode::FAILURE);
            }
        }
        VolumeCommand::Prune(a) => {
            if !a.force {
                if !std::io::stdin().is_terminal() {
                    anyhow::bail!(
                        "this removes all local volumes not used by at least one container; pass -f to confirm without a prompt"
                    );
                }
                eprint!(
                    "WARNING! This will remove all local volumes not used by at least one container.\nAre you sure you want to continue? [y/N] "
                );
                std::io::stderr().flush()?;
                let mut answer = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut answer)
                    .context("cannot read the answer")?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            let (removed, bytes) = vs.prune(&containers);
            if !removed.is_empty() {
                writeln!(out, "Deleted Volumes:")?;
                for n in &removed {
                    writeln!(out, "{n}")?;
                }
                writeln!(out)?;
            }
            writeln!(out, "Total reclaimed space: {}", human_bytes(bytes))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

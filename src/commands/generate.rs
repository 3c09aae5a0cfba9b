//! `ferry generate systemd [--name] [--files] CONTAINER`: a systemd unit for the container.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use ferry_run::container::systemd::{UnitOptions, unit};

use super::store;
use crate::cli::GlobalArgs;

/// `ferry generate …`.
#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Write a systemd unit that starts the container at boot (as `podman generate systemd`).
    Systemd(SystemdArgs),
}

/// Arguments of `ferry generate systemd`.
#[derive(Debug, Args)]
pub struct SystemdArgs {
    /// Name the container in the unit by its name instead of its ID.
    #[arg(short, long)]
    pub name: bool,
    /// Write the unit to ./UNIT.service (printing its path) instead of standard output.
    #[arg(short, long)]
    pub files: bool,
    /// systemd's Restart= for the unit.
    #[arg(
        long = "restart-policy",
        default_value = "on-failure",
        value_name = "POLICY"
    )]
    pub restart_policy: String,
    /// Seconds `ferry stop` waits before killing (default: the container's --stop-timeout, else 10).
    #[arg(short = 't', long = "time", value_name = "SECONDS")]
    pub time: Option<u64>,
    /// The unit's name prefix.
    #[arg(long = "container-prefix", default_value = "container")]
    pub container_prefix: String,
    /// Between prefix and name.
    #[arg(long, default_value = "-")]
    pub separator: String,
    /// Container name or ID.
    pub container: String,
}

/// Runs `ferry generate`.
pub fn run(cmd: GenerateCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let GenerateCommand::Systemd(args) = cmd;
    let (c, meta) = store::containers(global).find(&args.container)?;
    let root = store::root(global);
    let root = std::fs::canonicalize(&root).unwrap_or(root);
    let exe = std::env::current_exe().context("cannot find the ferry binary's path")?;
    let opts = UnitOptions {
        use_name: args.name,
        restart_policy: args.restart_policy,
        stop_timeout: args.time,
        prefix: args.container_prefix,
        separator: args.separator,
    };
    let (file, text) = unit(&root, &exe, &c, &meta, &opts).map_err(anyhow::Error::msg)?;
    if args.files {
        let path = std::env::current_dir()
            .context("cannot find the current directory")?
            .join(&file);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}", path.display());
    } else {
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

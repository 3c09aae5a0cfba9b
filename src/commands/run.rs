//! `ferry run [OPTIONS] IMAGE [COMMAND [ARG…]]`: docker run's flags, with Docker's meaning.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ferry_run::options::{Device, SecurityOpt, Ulimit, normalize_capability, parse_bytes};
use ferry_run::spec::env::parse_env_file;
use ferry_run::{Network, Outcome, RootfsMode, RunOptions, Runtime, Tmpfs, Volume};

use super::store;
use crate::cli::GlobalArgs;
use crate::env;

/// Arguments of `ferry run` (and the container part of `ferry bundle`).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Run in the background and print the container ID; output goes to `ferry logs`.
    #[arg(short, long)]
    pub detach: bool,
    /// Name the container.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub container: ContainerArgs,
    /// Image name, ID or ID prefix.
    pub image: String,
    /// Command and arguments (replace the image's Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// The flags that shape the container itself.
#[derive(Debug, Args, Clone, Default)]
pub struct ContainerArgs {
    /// Set an environment variable (KEY=VALUE, or KEY to pass ferry's own value).
    #[arg(short, long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Bind mount a host directory or file (`:ro` for read-only); a container path alone
    /// makes an anonymous volume.
    #[arg(short = 'v', long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    pub volume: Vec<Volume>,
    /// Mount a tmpfs at PATH, with mount OPTIONS.
    #[arg(long, value_name = "PATH[:OPTIONS]")]
    pub tmpfs: Vec<Tmpfs>,
    /// Working directory inside the container.
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User and group, by name or id.
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Replace the image's Entrypoint (and clear its Cmd).
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Container hostname (default: its short ID).
    #[arg(long, visible_alias = "h", value_name = "NAME")]
    pub hostname: Option<String>,
    /// Keep standard input open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Network: `host` (default; ferry has no bridge) or `none` (only `lo`).
    #[arg(long, alias = "net", default_value = "host", value_name = "host|none")]
    pub network: Network,
    /// Mount the root file system read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Memory limit (512m, 1g); exceeding it kills the container (exit 137).
    #[arg(short, long, value_parser = parse_bytes, value_name = "BYTES")]
    pub memory: Option<u64>,
    /// CPU limit, in CPUs (1.5).
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,
    /// Maximum number of processes (-1 for no limit).
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub pids_limit: Option<i64>,
    /// Run an init as PID 1 that forwards signals and reaps zombies.
    #[arg(long)]
    pub init: bool,
    /// Add a capability (NET_ADMIN, or ALL).
    #[arg(long, value_parser = normalize_capability, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability (NET_RAW, or ALL).
    #[arg(long, value_parser = normalize_capability, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// All capabilities, no masked paths, writable /sys, no no_new_privs.
    #[arg(long)]
    pub privileged: bool,
    /// OCI runtime: ferry's own (default), `runc`, `crun` or a path.
    #[arg(long, default_value = "ferry", value_name = "runc|crun|PATH")]
    pub runtime: Runtime,
    /// How the root file system is made: overlayfs with a copy fallback (auto), overlay, copy.
    #[arg(long, env = env::FERRY_ROOTFS, default_value = "auto", value_name = "auto|overlay|copy")]
    pub rootfs: RootfsMode,
    /// Security options: seccomp=unconfined|PROFILE.json, no-new-privileges,
    /// systempaths=unconfined.
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<SecurityOpt>,
    /// Resource limit for the process (nofile=1024:2048, core=-1).
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<Ulimit>,
    /// Add a supplementary group (name in the image's /etc/group, or id).
    #[arg(long = "group-add", value_name = "GROUP")]
    pub group_add: Vec<String>,
    /// Give the container a host device (or every device under a directory).
    #[arg(long, value_name = "HOST[:CONTAINER][:rwm]")]
    pub device: Vec<Device>,
    /// Size of /dev/shm (default 64m).
    #[arg(long, value_parser = parse_bytes, value_name = "BYTES")]
    pub shm_size: Option<u64>,
}

impl ContainerArgs {
    /// The library's options (without the command and run-only flags).
    pub fn options(&self) -> anyhow::Result<RunOptions> {
        let mut env_entries = Vec::new();
        for f in &self.env_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read env file `{}`", f.display()))?;
            env_entries.extend(parse_env_file(&text));
        }
        env_entries.extend(self.env.iter().cloned());
        // A bare KEY takes ferry's own value and is dropped when ferry has none, as in Docker.
        let env = env_entries
            .into_iter()
            .filter_map(|e| {
                if e.contains('=') {
                    Some(e)
                } else {
                    std::env::var(&e).ok().map(|v| format!("{e}={v}"))
                }
            })
            .collect();
        Ok(RunOptions {
            env,
            entrypoint: self.entrypoint.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            volumes: self.volume.clone(),
            tmpfs: self.tmpfs.clone(),
            network: self.network,
            read_only: self.read_only,
            memory: self.memory,
            cpus: self.cpus,
            pids_limit: self.pids_limit,
            init: self.init,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            privileged: self.privileged,
            tty: self.tty,
            interactive: self.interactive,
            runtime: self.runtime.clone(),
            rootfs: self.rootfs,
            ulimits: self.ulimit.clone(),
            group_add: self.group_add.clone(),
            devices: self.device.clone(),
            shm_size: self.shm_size,
            ..RunOptions::default()
        }
        .with_security_opts(&self.security_opt))
    }
}

/// Runs `ferry run`: the container's exit status becomes ferry's.
pub fn run(args: RunArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let mut opts = args.container.options()?;
    opts.command = args.command;
    opts.rm = args.rm;
    opts.detach = args.detach;
    opts.name = args.name;
    if let Some(m) = opts.memory
        && m < 6 << 20
    {
        anyhow::bail!(ferry_run::RunError::Invalid(
            "minimum memory limit allowed is 6MB".into()
        ));
    }
    let source = store::open(global)?;
    let containers = store::containers(global);
    match ferry_run::container::run::run(&source, &containers, &args.image, opts)? {
        Outcome::Exited(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        Outcome::Detached(id) => {
            println!("{id}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Whether this process is `ferry run` or `ferry exec` (which fail with 125 like Docker's).
pub fn is_container_command() -> bool {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--root" {
            args.next();
            continue;
        }
        if a.starts_with('-') {
            continue;
        }
        return a == "run" || a == "exec";
    }
    false
}

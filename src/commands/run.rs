//! `ferry run [OPTIONS] IMAGE [COMMAND [ARG…]]`: docker run's flags, with Docker's meaning.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ferry_run::container::health::{HealthOptions, parse_duration};
use ferry_run::container::policy::RestartPolicy;
use ferry_run::net::etc::{Dns, HostEntry, parse_dns_server};
use ferry_run::net::ports::{ContainerPort, parse_publish};
use ferry_run::options::{Device, SecurityOpt, Ulimit, normalize_capability, parse_bytes};
use ferry_run::spec::env::parse_env_file;
use ferry_run::volume::mounts::MountArg;
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
    /// The image (name, ID or ID prefix), then the command and its arguments, which replace
    /// the image's Cmd. Options end at the image: everything after it is the container's.
    #[arg(
        value_name = "IMAGE [COMMAND] [ARG",
        required = true,
        num_args = 1..,
        trailing_var_arg = true
    )]
    pub args: Vec<String>,
}

impl RunArgs {
    /// The image named.
    pub fn image(&self) -> &str {
        &self.args[0]
    }

    /// The command after the image.
    pub fn command(&self) -> Vec<String> {
        self.args[1..].to_vec()
    }
}

/// `-e` values as Docker takes them: `KEY=VALUE`, or `KEY` for ferry's own value (dropped
/// when ferry has none); an empty name is refused in Docker's words.
pub fn resolve_env(entries: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for e in entries {
        let name = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        if name.is_empty() {
            anyhow::bail!(ferry_run::RunError::Invalid(format!(
                "invalid environment variable: {e}"
            )));
        }
        if e.contains('=') {
            out.push(e.clone());
        } else if let Ok(v) = std::env::var(e) {
            out.push(format!("{e}={v}"));
        }
    }
    Ok(out)
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
    /// Bind mount a host directory or file, or mount the named volume NAME (made and filled
    /// from the image on first use); `:ro` for read-only; a container path alone makes an
    /// anonymous volume.
    #[arg(short = 'v', long = "volume", value_name = "HOST|NAME:CONTAINER[:ro]")]
    pub volume: Vec<Volume>,
    /// Mount a tmpfs at PATH, with mount OPTIONS.
    #[arg(long, value_name = "PATH[:OPTIONS]")]
    pub tmpfs: Vec<Tmpfs>,
    /// Mount a bind, volume or tmpfs (Docker's --mount syntax).
    #[arg(
        long,
        value_name = "type=bind|volume|tmpfs,source=…,target=…[,readonly]"
    )]
    pub mount: Vec<MountArg>,
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
    /// Network: the host's (the default), or with -p/-P a namespace of its own whose ports
    /// ferry forwards; `none` (only `lo`); `container:NAME` (share NAME's).
    #[arg(
        long,
        alias = "net",
        default_value = "default",
        value_name = "host|none|container:NAME"
    )]
    pub network: Network,
    /// Publish a container port on the host (a private network namespace, reached through
    /// ferry's port proxy).
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "[IP:][HOST:]CONTAINER[/tcp|udp]"
    )]
    pub publish: Vec<String>,
    /// Publish every exposed port (the image's EXPOSE, --expose) on a free host port.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or range without publishing it.
    #[arg(long, value_name = "PORT[/PROTO]")]
    pub expose: Vec<String>,
    /// Restart policy of a detached container.
    #[arg(
        long,
        default_value = "no",
        value_name = "no|on-failure[:N]|always|unless-stopped"
    )]
    pub restart: RestartPolicy,
    /// Add a line to /etc/hosts.
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_host: Vec<HostEntry>,
    /// DNS server for /etc/resolv.conf (replaces the host's).
    #[arg(long, value_parser = parse_dns_server, value_name = "IP")]
    pub dns: Vec<std::net::IpAddr>,
    /// DNS search domain for /etc/resolv.conf (`.` for none).
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// DNS resolver option for /etc/resolv.conf.
    #[arg(long = "dns-option", alias = "dns-opt", value_name = "OPTION")]
    pub dns_option: Vec<String>,
    /// Signal that stops the container (default: the image's StopSignal, else SIGTERM).
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds `ferry stop` waits before killing (default 10).
    #[arg(long = "stop-timeout", value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// Command that checks the container's health (run with /bin/sh -c; exit 0 = healthy).
    #[arg(long = "health-cmd", value_name = "COMMAND")]
    pub health_cmd: Option<String>,
    /// Time between health checks (30s, 1m; default 30s).
    #[arg(long = "health-interval", value_parser = parse_duration, value_name = "DURATION")]
    pub health_interval: Option<std::time::Duration>,
    /// Longest a health check may run (default 30s).
    #[arg(long = "health-timeout", value_parser = parse_duration, value_name = "DURATION")]
    pub health_timeout: Option<std::time::Duration>,
    /// Failures in a row that make the container unhealthy (default 3).
    #[arg(long = "health-retries", value_name = "N")]
    pub health_retries: Option<u32>,
    /// Time after the start when failed checks do not count.
    #[arg(long = "health-start-period", value_parser = parse_duration, value_name = "DURATION")]
    pub health_start_period: Option<std::time::Duration>,
    /// Disable the image's HEALTHCHECK.
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
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
        let env = resolve_env(&env_entries)?;
        let mut publish = Vec::new();
        for p in &self.publish {
            publish.extend(parse_publish(p).map_err(ferry_run::RunError::Invalid)?);
        }
        let mut expose = Vec::new();
        for e in &self.expose {
            expose.extend(ContainerPort::parse_range(e).map_err(ferry_run::RunError::Invalid)?);
        }
        let mut volumes = self.volume.clone();
        let mut tmpfs = self.tmpfs.clone();
        for m in &self.mount {
            match m.clone() {
                MountArg::Volume(v) => volumes.push(v),
                MountArg::Tmpfs(t) => tmpfs.push(t),
            }
        }
        Ok(RunOptions {
            env,
            entrypoint: self.entrypoint.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            volumes,
            tmpfs,
            network: self.network.clone(),
            publish,
            publish_all: self.publish_all,
            expose,
            restart: self.restart,
            add_hosts: self.add_host.clone(),
            dns: Dns {
                servers: self.dns.clone(),
                search: self.dns_search.clone(),
                options: self.dns_option.clone(),
            },
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            health: HealthOptions {
                cmd: self.health_cmd.clone(),
                interval: self.health_interval,
                timeout: self.health_timeout,
                start_period: self.health_start_period,
                retries: self.health_retries,
                disabled: self.no_healthcheck,
                image: None,
            },
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

/// `ferry create`: the container `ferry run` would make, not started; prints its ID.
pub fn create(args: RunArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let opts = options(&args)?;
    let source = store::open(global)?;
    let id = ferry_run::container::create::create(
        &source,
        &store::containers(global),
        args.image(),
        opts,
    )?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

/// The library's options for `run` and `create`, checked as Docker checks them.
fn options(args: &RunArgs) -> anyhow::Result<RunOptions> {
    let mut opts = args.container.options()?;
    opts.command = args.command();
    opts.rm = args.rm;
    opts.detach = args.detach;
    opts.name = args.name.clone();
    if let Some(m) = opts.memory
        && m < 6 << 20
    {
        anyhow::bail!(ferry_run::RunError::Invalid(
            "minimum memory limit allowed is 6MB".into()
        ));
    }
    if opts.network == Network::Host && (!opts.publish.is_empty() || opts.publish_all) {
        eprintln!("WARNING: Published ports are discarded when using host network mode");
    }
    Ok(opts)
}

/// Runs `ferry run`: the container's exit status becomes ferry's.
pub fn run(args: RunArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let opts = options(&args)?;
    let source = store::open(global)?;
    let containers = store::containers(global);
    match ferry_run::container::run::run(&source, &containers, args.image(), opts)? {
        Outcome::Exited(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        Outcome::Detached(id) => {
            println!("{id}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Whether this process is `ferry run` or `ferry exec` (also as `ferry container run|exec`),
/// which fail with 125 like Docker's.
pub fn is_container_command() -> bool {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--root" {
            args.next();
            continue;
        }
        if a.starts_with('-') || a == "container" {
            continue;
        }
        return a == "run" || a == "exec" || a == "create";
    }
    false
}

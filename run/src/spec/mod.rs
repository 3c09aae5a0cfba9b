//! Image config + `docker run` flags → an OCI runtime `config.json` (`oci_spec::runtime::Spec`).
//!
//! The same spec drives ferry's own runtime and is written into every container's directory,
//! so `--runtime runc|crun` and `ferry bundle` hand other runtimes exactly what ferry runs.
//! Defaults are Docker's: its mounts, capability set, masked and read-only `/proc` paths.

pub mod env;
pub mod user;

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroup,
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxIdMappingBuilder, LinuxMemoryBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount,
    MountBuilder, PosixRlimit, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder,
    Spec, SpecBuilder, UserBuilder,
};

use crate::error::RunError;
use crate::image::Image;
use crate::options::{Network, RunOptions, Seccomp, Ulimit};
use crate::process::caps;
use crate::seccomp;

/// Docker's masked paths: hidden behind `/dev/null` or an empty read-only tmpfs, because they
/// leak host information or allow host-wide actions (`/proc/kcore`, `/proc/keys`, …).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths: kernel tunables a container must not change for the whole host
/// (writing `/proc/sysrq-trigger` or `/proc/sys/kernel/core_pattern` is a classic escape).
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// What the spec needs besides the image and the flags.
#[derive(Debug, Clone)]
pub struct SpecContext<'a> {
    /// The container's directory; `/etc/hosts` & co. and anonymous volumes live there.
    pub container_dir: &'a Path,
    /// The container's hostname.
    pub hostname: &'a str,
    /// For a rootless container, the host uid and gid mapped to root inside.
    pub rootless: Option<(u32, u32)>,
    /// The cgroup path (relative to each hierarchy's root) when limits are set.
    pub cgroups_path: Option<String>,
    /// How the user named the image, for messages.
    pub image_name: &'a str,
}

/// Builds the runtime config.
pub fn build(image: &Image, opts: &RunOptions, ctx: &SpecContext<'_>) -> Result<Spec, RunError> {
    let spec_err = |e: oci_spec::OciSpecError| RunError::Invalid(format!("invalid config: {e}"));
    let config = image.config.config().clone().unwrap_or_default();

    let args = command_line(
        config.entrypoint().as_deref().unwrap_or_default(),
        config.cmd().as_deref().unwrap_or_default(),
        opts,
    );
    if args.is_empty() {
        return Err(RunError::NoCommand {
            image: ctx.image_name.to_string(),
        });
    }

    let user_spec = opts
        .user
        .clone()
        .or_else(|| config.user().clone())
        .unwrap_or_default();
    let passwd = user::read_from_layers(&image.layers, "etc/passwd").unwrap_or_default();
    let group = user::read_from_layers(&image.layers, "etc/group").unwrap_or_default();
    let exec_user = user::resolve(
        &user_spec,
        &String::from_utf8_lossy(&passwd),
        &String::from_utf8_lossy(&group),
    )
    .map_err(|missing| RunError::User {
        image: ctx.image_name.to_string(),
        missing,
    })?;
    if ctx.rootless.is_some() && exec_user.uid != 0 {
        return Err(RunError::Unsupported(format!(
            "running as uid {} in a rootless container (only root is mapped); pass -u 0",
            exec_user.uid
        )));
    }

    // Docker lists the primary group among the supplementary ones (moby's getUser), so `id`
    // shows it in `groups=`.
    let mut additional_gids = vec![exec_user.gid];
    for g in &exec_user.additional_gids {
        if !additional_gids.contains(g) {
            additional_gids.push(*g);
        }
    }
    // --group-add: by name through the image's /etc/group, or by id.
    for g in &opts.group_add {
        let gid = user::group_id(g, &String::from_utf8_lossy(&group)).map_err(|missing| {
            RunError::User {
                image: ctx.image_name.to_string(),
                missing,
            }
        })?;
        if !additional_gids.contains(&gid) {
            additional_gids.push(gid);
        }
    }

    let cwd = opts
        .workdir
        .clone()
        .or_else(|| config.working_dir().clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(RunError::Invalid(format!(
            "the working directory `{cwd}` is invalid, it needs to be an absolute path"
        )));
    }

    let env = env::merge(
        config.env().as_deref().unwrap_or_default(),
        &opts.env,
        ctx.hostname,
        opts.tty,
        &exec_user.home,
    );

    let cap_names = caps::effective_set(opts.privileged, &opts.cap_add, &opts.cap_drop);
    let cap_set: std::collections::HashSet<Capability> = cap_names
        .iter()
        .filter_map(|c| c.trim_start_matches("CAP_").parse().ok())
        .collect();
    // Inheritable stays empty: a non-empty inheritable set let file capabilities grant
    // privileges to non-root programs (CVE-2022-24769). Permitted/effective are what root
    // gets; a non-root user's execve clears them anyway, as with Docker.
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(cap_set.clone())
        .permitted(cap_set.clone())
        .effective(cap_set)
        .inheritable(std::collections::HashSet::new())
        .ambient(std::collections::HashSet::new())
        .build()
        .map_err(spec_err)?;

    let process = ProcessBuilder::default()
        .terminal(opts.tty)
        .args(args)
        .env(env)
        .cwd(PathBuf::from(&cwd))
        .user(
            UserBuilder::default()
                .uid(exec_user.uid)
                .gid(exec_user.gid)
                .additional_gids(additional_gids)
                .build()
                .map_err(spec_err)?,
        )
        .capabilities(capabilities)
        // Docker leaves it off and relies on the seccomp filter; `--security-opt
        // no-new-privileges` turns it on.
        .no_new_privileges(opts.no_new_privileges)
        // Without --ulimit the runtime's own limits are inherited, as under Docker (the
        // builder would set RLIMIT_NOFILE to 1024).
        .rlimits(rlimits(&opts.ulimits).map_err(spec_err)?)
        .build()
        .map_err(spec_err)?;

    let mut namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    // `container:NAME` starts as a new namespace here; `prepare` names NAME's instead.
    if matches!(
        opts.network,
        Network::None | Network::Private | Network::Container(_)
    ) {
        namespaces.push(LinuxNamespaceType::Network);
    }
    if ctx.rootless.is_some() {
        namespaces.push(LinuxNamespaceType::User);
    }
    let namespaces = namespaces
        .into_iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(t).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(spec_err)?;

    // The builder starts from oci-spec's defaults (runc's masked paths, empty resources):
    // every field ferry cares about is set here explicitly.
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(Vec::<String>::new())
        .readonly_paths(Vec::<String>::new());
    if !opts.privileged && !opts.unmask_system_paths {
        linux = linux
            .masked_paths(
                MASKED_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
            .readonly_paths(
                READONLY_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            );
    }
    if let Some((uid, gid)) = ctx.rootless {
        let map = |host| {
            LinuxIdMappingBuilder::default()
                .container_id(0u32)
                .host_id(host)
                .size(1u32)
                .build()
        };
        linux = linux
            .uid_mappings(vec![map(uid).map_err(spec_err)?])
            .gid_mappings(vec![map(gid).map_err(spec_err)?]);
    }
    let mut resources = LinuxResourcesBuilder::default();
    if let Some(mem) = opts.memory {
        // Docker's default swap allowance when only --memory is given: as much again.
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(mem as i64)
                .swap(2 * mem as i64)
                .build()
                .map_err(spec_err)?,
        );
    }
    if let Some(cpus) = opts.cpus {
        let period = 100_000u64;
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .period(period)
                .quota((cpus * period as f64).round() as i64)
                .build()
                .map_err(spec_err)?,
        );
    }
    if let Some(pids) = opts.pids_limit {
        resources = resources.pids(
            LinuxPidsBuilder::default()
                .limit(pids)
                .build()
                .map_err(spec_err)?,
        );
    }
    let devices = crate::rootfs::device::for_container(&opts.devices, opts.privileged)?;
    // Docker's device rules, for runc and crun (ferry's own runtime mounts everything `nodev`
    // and needs none): without them a node made with CAP_MKNOD would open.
    resources = resources.devices(device_rules(opts, &devices).map_err(spec_err)?);
    let mut linux = linux.build().map_err(spec_err)?;
    linux.set_resources(Some(resources.build().map_err(spec_err)?));
    linux.set_cgroups_path(ctx.cgroups_path.as_ref().map(PathBuf::from));
    linux.set_seccomp(seccomp(opts, &cap_names)?);
    if !devices.is_empty() {
        linux.set_devices(Some(devices.iter().map(|d| d.to_oci()).collect()));
    }

    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(opts.read_only)
                .build()
                .map_err(spec_err)?,
        )
        .hostname(ctx.hostname)
        .mounts(mounts(opts, ctx).map_err(spec_err)?)
        .process(process)
        .linux(linux)
        .build()
        .map_err(spec_err)
}

/// The resolved seccomp profile: Docker's default (none with `--privileged`), none with
/// `seccomp=unconfined`, or a profile file (even with `--privileged`, as Docker does).
fn seccomp(
    opts: &RunOptions,
    capabilities: &[String],
) -> Result<Option<oci_spec::runtime::LinuxSeccomp>, RunError> {
    let (profile, what) = match &opts.seccomp {
        Seccomp::Unconfined => return Ok(None),
        Seccomp::Default if opts.privileged => return Ok(None),
        Seccomp::Default => (
            seccomp::default::profile(),
            "(Docker's default)".to_string(),
        ),
        Seccomp::Profile(path) => {
            let what = format!("`{}`", path.display());
            let text = std::fs::read_to_string(path).map_err(|e| RunError::Seccomp {
                profile: what.clone(),
                source: seccomp::SeccompError::Invalid(format!("cannot read it: {e}")),
            })?;
            let p = seccomp::Profile::from_json(&text).map_err(|source| RunError::Seccomp {
                profile: what.clone(),
                source,
            })?;
            (p, what)
        }
    };
    profile
        .resolve(&seccomp::profile::Container {
            capabilities,
            kernel: seccomp::profile::kernel_version(),
        })
        .map(Some)
        .map_err(|source| RunError::Seccomp {
            profile: what,
            source,
        })
}

/// Docker's devices cgroup rules: everything denied but the standard nodes (the runtime adds
/// the terminals), then `--device`s with their permissions; everything with `--privileged`.
fn device_rules(
    opts: &RunOptions,
    devices: &[crate::rootfs::device::Node],
) -> Result<Vec<LinuxDeviceCgroup>, oci_spec::OciSpecError> {
    let rule = |allow: bool,
                typ: Option<LinuxDeviceType>,
                major: Option<i64>,
                minor: Option<i64>,
                access: &str| {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .access(access);
        if let Some(t) = typ {
            b = b.typ(t);
        }
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build()
    };
    if opts.privileged {
        return Ok(vec![rule(true, None, None, None, "rwm")?]);
    }
    let c = Some(LinuxDeviceType::C);
    let mut rules = vec![rule(false, None, None, None, "rwm")?];
    // null, zero, full, random, urandom, tty, console.
    for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1)] {
        rules.push(rule(true, c, Some(major), Some(minor), "rwm")?);
    }
    for d in devices {
        let access = opts
            .devices
            .iter()
            .find(|o| d.container.starts_with(&o.container))
            .map_or("rwm", |o| o.permissions.as_str());
        let typ = if d.kind == 'b' {
            LinuxDeviceType::B
        } else {
            LinuxDeviceType::C
        };
        rules.push(rule(true, Some(typ), Some(d.major), Some(d.minor), access)?);
    }
    Ok(rules)
}

/// `--ulimit`s as OCI rlimits.
fn rlimits(ulimits: &[Ulimit]) -> Result<Vec<PosixRlimit>, oci_spec::OciSpecError> {
    use PosixRlimitType as T;
    ulimits
        .iter()
        .map(|u| {
            let typ = match u.name.as_str() {
                "as" => T::RlimitAs,
                "core" => T::RlimitCore,
                "cpu" => T::RlimitCpu,
                "data" => T::RlimitData,
                "fsize" => T::RlimitFsize,
                "locks" => T::RlimitLocks,
                "memlock" => T::RlimitMemlock,
                "msgqueue" => T::RlimitMsgqueue,
                "nice" => T::RlimitNice,
                "nofile" => T::RlimitNofile,
                "nproc" => T::RlimitNproc,
                "rss" => T::RlimitRss,
                "rtprio" => T::RlimitRtprio,
                "rttime" => T::RlimitRttime,
                "sigpending" => T::RlimitSigpending,
                _ => T::RlimitStack,
            };
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(u.soft)
                .hard(u.hard)
                .build()
        })
        .collect()
}

/// Entrypoint + Cmd as Docker combines them with the command line.
pub fn command_line(entrypoint: &[String], cmd: &[String], opts: &RunOptions) -> Vec<String> {
    let entrypoint: Vec<String> = match &opts.entrypoint {
        Some(e) if e.is_empty() => vec![],
        Some(e) => vec![e.clone()],
        None => entrypoint.to_vec(),
    };
    let cmd: Vec<String> = if !opts.command.is_empty() {
        opts.command.clone()
    } else if opts.entrypoint.is_some() {
        vec![]
    } else {
        cmd.to_vec()
    };
    entrypoint.into_iter().chain(cmd).collect()
}

fn mount(
    dest: &str,
    typ: &str,
    source: &str,
    options: &[&str],
) -> Result<Mount, oci_spec::OciSpecError> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
}

/// Docker's standard mounts, then `/etc` files, volumes and tmpfs, parents before children.
fn mounts(opts: &RunOptions, ctx: &SpecContext<'_>) -> Result<Vec<Mount>, oci_spec::OciSpecError> {
    let rootless = ctx.rootless.is_some();
    let sys_ro = if opts.privileged { "rw" } else { "ro" };
    // Docker's default is 64 MiB.
    let shm_size = format!("size={}", opts.shm_size.unwrap_or(64 << 20));
    let mut m = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        // No `nodev` on /dev itself: its device nodes are bind mounts of the host's, each its
        // own mount; see rootfs::device for why everything else is `nodev`.
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        if rootless {
            // gid 5 (tty) is not mapped in a rootless user namespace.
            mount(
                "/dev/pts",
                "devpts",
                "devpts",
                &[
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                ],
            )?
        } else {
            mount(
                "/dev/pts",
                "devpts",
                "devpts",
                &[
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            )?
        },
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_ro],
        )?,
        // The container's own cgroups, read-only (writable with --privileged), as Docker mounts
        // them; runc and crun know the type, ferry's runtime see rootfs::cgroupfs.
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &[sys_ro, "nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_size],
        )?,
    ];
    let mut extra: Vec<Mount> = Vec::new();
    for f in ["resolv.conf", "hostname", "hosts"] {
        let src = ctx.container_dir.join(f);
        extra.push(mount(
            &format!("/etc/{f}"),
            "bind",
            &src.to_string_lossy(),
            &["rbind", "rprivate", "nosuid", "nodev"],
        )?);
    }
    for (i, v) in opts.volumes.iter().enumerate() {
        let src = v
            .host
            .clone()
            .unwrap_or_else(|| ctx.container_dir.join("volumes").join(i.to_string()));
        let mut o = vec!["rbind", "rprivate", "nodev"];
        if v.read_only {
            o.push("ro");
        }
        extra.push(mount(&v.container, "bind", &src.to_string_lossy(), &o)?);
    }
    for t in &opts.tmpfs {
        let mut o: Vec<&str> = vec!["nosuid", "nodev", "noexec"];
        o.extend(t.options.iter().map(String::as_str));
        extra.push(mount(&t.container, "tmpfs", "tmpfs", &o)?);
    }
    // Parents before children, so `-v /a:/x -v /b:/x/y` nests as written.
    extra.sort_by_key(|m| m.destination().components().count());
    m.extend(extra);
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> RunOptions {
        RunOptions::default()
    }

    #[test]
    fn command_replaces_cmd_and_entrypoint_clears_it() {
        let ep = vec!["/entry".to_string()];
        let cmd = vec!["default".to_string()];
        assert_eq!(command_line(&ep, &cmd, &opts()), ["/entry", "default"]);
        let o = RunOptions {
            command: vec!["mine".into()],
            ..opts()
        };
        assert_eq!(command_line(&ep, &cmd, &o), ["/entry", "mine"]);
        let o = RunOptions {
            entrypoint: Some("/other".into()),
            ..opts()
        };
        assert_eq!(command_line(&ep, &cmd, &o), ["/other"]);
        let o = RunOptions {
            entrypoint: Some(String::new()),
            command: vec!["x".into()],
            ..opts()
        };
        assert_eq!(command_line(&ep, &cmd, &o), ["x"]);
    }
}

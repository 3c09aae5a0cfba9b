//! What the container's first process does between `clone` and `execve`, in this order:
//! join cgroups, build the rootfs and `pivot_root` into it, set the hostname, create the working
//! directory, start a session, drop capabilities and switch user, forbid new privileges, then
//! execute the command (or, with `--init`, become a small init that runs it).

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use super::caps;
use super::exec::{self, InitError};
use crate::rootfs::{self, RootSource};
use crate::syscall::Syscall;

/// Everything the first process needs, computed by the supervisor before `clone`.
#[derive(Debug, Clone)]
pub struct InitPlan {
    /// The runtime config.
    pub spec: Spec,
    /// The rootfs directory (a mount point once prepared).
    pub rootfs: PathBuf,
    /// overlayfs or a ready directory.
    pub source: RootSource,
    /// `cgroup.procs` files to join (written with `0`: the caller itself).
    pub cgroup_procs: Vec<PathBuf>,
    /// With `-t`: the pty slave's descriptor and path.
    pub console: Option<(RawFd, PathBuf)>,
    /// `--privileged`.
    pub privileged: bool,
    /// Running in a user namespace of our own (rootless).
    pub rootless: bool,
    /// `--init`.
    pub init: bool,
}

fn sys_err(what: impl std::fmt::Display, e: std::io::Error) -> InitError {
    InitError::setup(format!("cannot {what}: {e}"))
}

/// Runs the plan; returns only on failure (the caller reports it and exits).
pub fn run(sys: &dyn Syscall, plan: &InitPlan) -> InitError {
    match setup(sys, plan) {
        Err(e) => e,
        Ok(()) => {
            let process = plan.spec.process().clone().unwrap_or_default();
            let args = process.args().clone().unwrap_or_default();
            let env = process.env().clone().unwrap_or_default();
            if plan.init {
                return super::reaper::run_init(sys, &args, &env);
            }
            exec::close_inherited_fds();
            exec::reset_signals();
            exec::exec(sys, &args, &env)
        }
    }
}

fn setup(sys: &dyn Syscall, plan: &InitPlan) -> Result<(), InitError> {
    let spec = &plan.spec;
    for procs in &plan.cgroup_procs {
        sys.write_file(procs, "0")
            .map_err(|e| sys_err(format_args!("join cgroup {}", procs.display()), e))?;
    }

    let console = plan.console.as_ref().map(|(_, p)| p.as_path());
    rootfs::prepare(sys, spec, &plan.rootfs, &plan.source, console, plan.privileged).map_err(
        |e| {
            let overlay_unavailable = matches!(plan.source, RootSource::Overlay(_))
                && e.step.starts_with("mount overlay")
                && matches!(
                    e.source.raw_os_error(),
                    Some(libc::EINVAL | libc::ENODEV | libc::EPERM | libc::EOPNOTSUPP)
                );
            InitError {
                code: 125,
                message: format!("cannot {}: {}", e.step, e.source),
                overlay_unavailable,
            }
        },
    )?;

    if let Some(h) = spec.hostname() {
        sys.sethostname(h)
            .map_err(|e| sys_err(format_args!("set hostname {h}"), e))?;
    }

    let process = spec.process().clone().unwrap_or_default();
    let cwd = process.cwd().clone();
    // Docker creates a missing WorkingDir, owned by root.
    sys.mkdir_all(&cwd, 0o755)
        .map_err(|e| sys_err(format_args!("create working directory {}", cwd.display()), e))?;

    // A session of its own: without it the container shares the caller's terminal session
    // and can push input into the host shell with TIOCSTI (CVE-2017-5226 in bubblewrap).
    sys.setsid().map_err(|e| sys_err("start a session", e))?;
    if let Some((fd, _)) = plan.console {
        sys.set_controlling_tty(fd)
            .map_err(|e| sys_err("attach the terminal", e))?;
    }

    let user = process.user();
    let names: Vec<String> = process
        .capabilities()
        .as_ref()
        .and_then(|c| c.bounding().clone())
        .unwrap_or_default()
        .iter()
        .map(|c| format!("CAP_{c}"))
        .collect();
    let keep = caps::mask(&names);
    caps::drop_bounding(sys, keep).map_err(|e| sys_err("drop capabilities", e))?;
    if !plan.rootless {
        // A rootless user namespace has setgroups denied (CVE-2014-8989 made it so); its
        // only group is the mapped one.
        sys.setgroups(user.additional_gids().as_deref().unwrap_or_default())
            .map_err(|e| sys_err("set supplementary groups", e))?;
    }
    sys.setgid(user.gid())
        .map_err(|e| sys_err(format_args!("set gid {}", user.gid()), e))?;
    sys.setuid(user.uid())
        .map_err(|e| sys_err(format_args!("set uid {}", user.uid()), e))?;
    // Root keeps the set in permitted/effective; inheritable is emptied (CVE-2022-24769). For
    // any other uid setuid already cleared them and execve would anyway.
    let (eff, perm) = if user.uid() == 0 { (keep, keep) } else { (0, 0) };
    sys.capset(eff, perm, 0)
        .map_err(|e| sys_err("set capabilities", e))?;
    if process.no_new_privileges().unwrap_or(false) {
        sys.set_no_new_privs()
            .map_err(|e| sys_err("set no_new_privs", e))?;
    }
    sys.chdir(&cwd)
        .map_err(|e| sys_err(format_args!("enter working directory {}", cwd.display()), e))?;
    Ok(())
}

/// `/proc/<pid>/…` of a host pid, for the supervisor.
pub fn proc_path(pid: i32, rest: &str) -> PathBuf {
    Path::new("/proc").join(pid.to_string()).join(rest)
}

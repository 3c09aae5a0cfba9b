//! The supervisor's side of starting a container: `clone` with the namespace flags, write the
//! user-namespace id maps (rootless), and learn through a close-on-exec pipe whether the
//! command was executed or what failed first.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::exec::InitError;
use super::init::{self, InitPlan};
use super::reaper::{ERROR_FD, report_and_exit};
use crate::syscall::{LinuxSyscall, Syscall};

/// Where the container's standard streams come from; `None` inherits the supervisor's.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stdio {
    /// Descriptors to install as 0, 1 and 2.
    pub fds: [Option<RawFd>; 3],
}

/// Why a container did not start.
#[derive(Debug)]
pub enum SpawnError {
    /// `clone` (or a pipe) failed in the supervisor.
    Clone {
        /// The errno.
        source: io::Error,
        /// Whether a user namespace was asked for (so the cause may be a sysctl).
        user_namespace: bool,
    },
    /// Writing the id maps failed.
    IdMap(io::Error),
    /// The container's first process reported a failure.
    Init(InitError),
}

/// The `CLONE_NEW*` flags for the namespaces in `spec`.
pub fn clone_flags(spec: &Spec) -> libc::c_int {
    let nss = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    nss.iter()
        // A namespace with a path is joined, not made: the supervisor enters it before
        // `clone` (see `net::join`).
        .filter(|ns| ns.path().is_none())
        .map(|ns| match ns.typ() {
            LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
            LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
            LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
            LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
            LinuxNamespaceType::Network => libc::CLONE_NEWNET,
            LinuxNamespaceType::User => libc::CLONE_NEWUSER,
            LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
            _ => 0,
        })
        .fold(0, |a, b| a | b)
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// Starts the container's first process; returns its host pid once the command is executing.
///
/// The caller must be single-threaded: the child continues from a copy of this process and a
/// lock held by another thread would stay locked forever in it.
pub fn spawn(plan: &InitPlan, stdio: Stdio) -> Result<i32, SpawnError> {
    let flags = clone_flags(&plan.spec);
    let user_ns = flags & libc::CLONE_NEWUSER != 0;
    let clone_err = |source| SpawnError::Clone {
        source,
        user_namespace: user_ns,
    };
    let (err_r, err_w) = pipe().map_err(clone_err)?;
    let sync = if user_ns {
        Some(pipe().map_err(clone_err)?)
    } else {
        None
    };
    ERROR_FD.store(err_w.as_raw_fd(), std::sync::atomic::Ordering::SeqCst);

    // A raw clone with no new stack behaves like fork, with the namespaces made at once: the
    // child is PID 1 of its PID namespace without a second fork (clone is in every kernel;
    // clone3 is not needed).
    // SAFETY: see the function's contract; the child only runs `child_main` and exits.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(clone_err(io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(err_r);
        if let Some((r, w)) = sync {
            drop(w);
            let mut f = std::fs::File::from(r);
            let mut b = [0u8; 1];
            if f.read_exact(&mut b).is_err() {
                report_and_exit(&InitError::setup("the supervisor went away"));
            }
        }
        let sys = LinuxSyscall;
        for (target, fd) in stdio.fds.iter().enumerate() {
            if let Some(fd) = fd {
                // SAFETY: the caller keeps `stdio`'s descriptors open until the command runs.
                let fd = unsafe { BorrowedFd::borrow_raw(*fd) };
                if let Err(e) = sys.dup_stdio(fd, target as RawFd) {
                    report_and_exit(&InitError::setup(format!(
                        "cannot set up the standard streams: {e}"
                    )));
                }
            }
        }
        let err = init::run(&sys, plan);
        report_and_exit(&err);
    }
    let pid = pid as i32;
    drop(err_w);
    ERROR_FD.store(-1, std::sync::atomic::Ordering::SeqCst);
    if let Some((r, w)) = sync {
        drop(r);
        if let Err(e) = write_id_maps(pid, &plan.spec) {
            kill_and_reap(pid);
            return Err(SpawnError::IdMap(e));
        }
        let _ = std::fs::File::from(w).write_all(b"1");
    }
    let mut msg = String::new();
    let _ = std::fs::File::from(err_r).read_to_string(&mut msg);
    if !msg.is_empty() {
        kill_and_reap(pid);
        return Err(SpawnError::Init(InitError::decode(&msg)));
    }
    Ok(pid)
}

fn kill_and_reap(pid: i32) {
    let _ = super::signal::send(pid, libc::SIGKILL);
    crate::container::supervise::reap(pid);
}

/// Maps the container's root to the caller (rootless). `setgroups` is denied first: an
/// unprivileged process may only write a gid map then (CVE-2014-8989).
fn write_id_maps(pid: i32, spec: &Spec) -> io::Result<()> {
    let linux = spec.linux().clone().unwrap_or_default();
    let line = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        m.as_deref()
            .unwrap_or_default()
            .iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    match std::fs::write(init::proc_path(pid, "setgroups"), "deny") {
        // Kernels before 3.19 have no such file and no such rule.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => other?,
    }
    std::fs::write(init::proc_path(pid, "gid_map"), line(linux.gid_mappings()))?;
    std::fs::write(init::proc_path(pid, "uid_map"), line(linux.uid_mappings()))
}

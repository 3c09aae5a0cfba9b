//! `ferry exec [-i] [-t] C CMD…`: run another process in a running container.
//!
//! An intermediate process joins the container's cgroups (from the host's view, before anything
//! else) and namespaces with `setns` (mount and PID namespaces since Linux 3.8), and clones the
//! new process with `CLONE_PARENT`, so that the process is born in the container's PID
//! namespace yet is ferry's own child to wait for. The new process then drops to the
//! container's user, capabilities and seccomp filter, the way its first process did.
//!
//! Exit codes are Docker's: 126 when the process cannot be started inside the container
//! (command not found, bad `-w` or `-u`), 1 when there is no running container to enter.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use super::supervise::{self, Signals};
use super::{Containers, Status, tty};
use crate::error::RunError;
use crate::process::exec::{self, InitError};
use crate::process::privileges::{self, Privileges};
use crate::process::reaper::{ERROR_FD, report_and_exit};
use crate::seccomp::Program;
use crate::spec::{env, user};
use crate::syscall::{LinuxSyscall, Syscall};

/// `ferry exec`'s flags.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// The command.
    pub command: Vec<String>,
    /// `-i`.
    pub interactive: bool,
    /// `-t`.
    pub tty: bool,
    /// `-e` entries (`KEY=VALUE`).
    pub env: Vec<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `-w`.
    pub workdir: Option<String>,
}

const NAMESPACES: [(&str, libc::c_int); 6] = [
    ("user", libc::CLONE_NEWUSER),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    // Last: after it, the host's /proc is out of reach.
    ("mnt", libc::CLONE_NEWNS),
];

/// Runs the command in the container named `reference`; returns its exit status.
pub fn exec(containers: &Containers, reference: &str, opts: &ExecOptions) -> Result<i32, RunError> {
    if opts.tty && opts.interactive && !tty::is_terminal(std::io::stdin()) {
        return Err(RunError::NotATty);
    }
    let (c, meta) = containers.find(reference)?;
    let state = c.current_state();
    if state.status != Status::Running {
        return Err(RunError::NotRunning(c.short_id().to_string()));
    }
    if let Some(runtime) = &meta.runtime {
        let mut cmd = super::external::command(runtime);
        cmd.arg("exec");
        if opts.tty {
            cmd.arg("-t");
        }
        for e in &opts.env {
            cmd.args(["--env", e]);
        }
        if let Some(u) = &opts.user {
            cmd.args(["--user", u]);
        }
        if let Some(w) = &opts.workdir {
            cmd.args(["--cwd", w]);
        }
        cmd.arg(&c.id).args(&opts.command);
        let st = cmd.status().map_err(|source| RunError::Runtime {
            runtime: runtime.clone(),
            source,
        })?;
        use std::os::unix::process::ExitStatusExt;
        return Ok(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)));
    }
    let spec: Spec = super::read_json(&c.dir.join("config.json"))?;
    // The container's filter, compiled here where an error can still be reported plainly.
    let seccomp = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(Program::compile)
        .transpose()
        .map_err(|e| RunError::Invalid(crate::error_chain(&e)))?;
    let own_ns = |name: &str| std::fs::read_link(format!("/proc/self/ns/{name}")).ok();
    let mut ns_fds: Vec<(OwnedFd, libc::c_int)> = Vec::new();
    for (name, flag) in NAMESPACES {
        let path = format!("/proc/{}/ns/{name}", state.pid);
        // Joining a namespace we already share is refused for user namespaces and useless
        // for the others (`--network host` shares the host's).
        if std::fs::read_link(&path).ok() == own_ns(name) {
            continue;
        }
        let f = std::fs::File::open(&path).map_err(crate::error::io_err("open", &path))?;
        ns_fds.push((OwnedFd::from(f), flag));
    }
    let signals = Signals::block().map_err(|source| RunError::Sys {
        action: "block signals".into(),
        source,
    })?;
    let pty = if opts.tty {
        Some(tty::open().map_err(|source| RunError::Sys {
            action: "open a pseudo-terminal".into(),
            source,
        })?)
    } else {
        None
    };
    // The size must be right before the command starts, not once the proxy runs.
    if let Some(t) = &pty {
        tty::copy_winsize(std::io::stdin(), &t.master);
    }
    let null = (!opts.interactive && !opts.tty)
        .then(|| std::fs::File::open("/dev/null").ok().map(OwnedFd::from))
        .flatten();
    let (err_r, err_w) = pipe()?;
    let (pid_r, pid_w) = pipe()?;
    let plan = ExecPlan {
        spec,
        opts: opts.clone(),
        cgroup_procs: meta
            .cgroups
            .iter()
            .map(|d| d.join("cgroup.procs"))
            .collect(),
        console: pty.as_ref().map(|t| t.slave.as_raw_fd()),
        stdin: null.as_ref().map(|f| f.as_raw_fd()),
        seccomp,
    };
    ERROR_FD.store(err_w.as_raw_fd(), std::sync::atomic::Ordering::SeqCst);
    // SAFETY: single-threaded; the child only joins cgroups and namespaces, clones and exits.
    let middle = unsafe { libc::fork() };
    if middle < 0 {
        return Err(RunError::Sys {
            action: "fork".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    if middle == 0 {
        drop(err_r);
        drop(pid_r);
        intermediate(&ns_fds, &plan, pid_w);
    }
    drop(err_w);
    drop(pid_w);
    ERROR_FD.store(-1, std::sync::atomic::Ordering::SeqCst);
    supervise::reap(middle);
    let mut pid_text = String::new();
    let _ = std::fs::File::from(pid_r).read_to_string(&mut pid_text);
    let mut msg = String::new();
    let _ = std::fs::File::from(err_r).read_to_string(&mut msg);
    let pid: i32 = pid_text.trim().parse().unwrap_or(0);
    if !msg.is_empty() || pid <= 0 {
        if pid > 0 {
            // The failed process, our child through CLONE_PARENT.
            supervise::reap(pid);
        }
        let e = InitError::decode(if msg.is_empty() {
            "126\t0\tcannot join the container"
        } else {
            &msg
        });
        // Docker reports every failure to start an exec'd process as 126, "not found" too.
        return Err(RunError::Exec {
            id: c.short_id().to_string(),
            message: e.message,
            code: 126,
        });
    }
    drop(null);
    Ok(match pty {
        Some(t) => {
            drop(t.slave);
            supervise::wait_tty(pid, &signals, &t.master, opts.interactive)
        }
        None => supervise::wait(pid, &signals),
    })
}

struct ExecPlan {
    spec: Spec,
    opts: ExecOptions,
    cgroup_procs: Vec<PathBuf>,
    console: Option<RawFd>,
    stdin: Option<RawFd>,
    seccomp: Option<Program>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), RunError> {
    crate::process::spawn::pipe().map_err(|source| RunError::Sys {
        action: "create a pipe".into(),
        source,
    })
}

fn intermediate(ns_fds: &[(OwnedFd, libc::c_int)], plan: &ExecPlan, pid_w: OwnedFd) -> ! {
    let sys = LinuxSyscall;
    // While it joins, this process runs the host's ferry inside the container's namespaces:
    // it must not be reachable through /proc/<pid>/exe (CVE-2019-5736).
    if let Err(e) = sys.set_dumpable(false) {
        report_and_exit(&InitError::setup(format!(
            "cannot protect the exec process: {e}"
        )));
    }
    // The container's cgroups are host paths: joined before its mount namespace hides them.
    // The process cloned below is born in them.
    for p in &plan.cgroup_procs {
        if let Err(e) = sys.write_file(p, "0") {
            report_and_exit(&InitError::setup(format!(
                "cannot join the container's cgroup {}: {e}",
                p.display()
            )));
        }
    }
    for (fd, flag) in ns_fds {
        if let Err(e) = sys.setns(fd.as_fd(), *flag) {
            report_and_exit(&InitError::setup(format!(
                "cannot join the container's namespace: {e}"
            )));
        }
    }
    // SAFETY: a fork-like clone whose parent is ours; single-threaded.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        report_and_exit(&InitError::setup(format!(
            "cannot start the process: {}",
            std::io::Error::last_os_error()
        )));
    }
    if pid == 0 {
        drop(pid_w);
        let err = match prepare_process(&sys, plan) {
            Ok((args, env)) => {
                exec::close_inherited_fds();
                exec::reset_signals();
                exec::exec(&sys, &args, &env)
            }
            Err(e) => e,
        };
        report_and_exit(&err);
    }
    let _ = std::io::Write::write_all(&mut std::fs::File::from(pid_w), pid.to_string().as_bytes());
    // SAFETY: ends the intermediate process without the parent's atexit handlers.
    unsafe { libc::_exit(0) }
}

/// In the container: terminal, identity, capabilities, working directory, seccomp.
fn prepare_process(
    sys: &dyn Syscall,
    plan: &ExecPlan,
) -> Result<(Vec<String>, Vec<String>), InitError> {
    let fail = |what: &str, e: std::io::Error| InitError::setup(format!("cannot {what}: {e}"));
    sys.setsid().map_err(|e| fail("start a session", e))?;
    if let Some(fd) = plan.console {
        // SAFETY: the parent keeps the pty slave open until this process has executed.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        sys.set_controlling_tty(fd)
            .map_err(|e| fail("attach the terminal", e))?;
    } else if let Some(fd) = plan.stdin {
        // SAFETY: the parent keeps its /dev/null open until this process has executed.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        sys.dup_stdio(fd, 0)
            .map_err(|e| fail("redirect standard input", e))?;
    }
    let process = plan.spec.process().clone().unwrap_or_default();
    let rootless = plan
        .spec
        .linux()
        .as_ref()
        .is_some_and(|l| l.uid_mappings().is_some());
    let mut p = Privileges::of(&process, rootless, plan.seccomp.as_ref());
    if let Some(u) = &plan.opts.user {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
        let r = user::resolve(u, &passwd, &group).map_err(|e| InitError::setup(e.to_string()))?;
        p.uid = r.uid;
        p.gid = r.gid;
        p.additional_gids = r.additional_gids;
    }
    let cwd = plan.opts.workdir.as_deref().map(Path::new);
    if let Some(w) = cwd {
        p.cwd = w;
    }
    privileges::drop_privileges(sys, &p)?;
    let mut envs = process.env().clone().unwrap_or_default();
    if plan.opts.tty && !envs.iter().any(|e| e.starts_with("TERM=")) {
        envs.push("TERM=xterm".into());
    }
    let envs = env::merge(&envs, &plan.opts.env, "", false, "/")
        .into_iter()
        // `merge` adds defaults for a fresh container; keep the container's own values.
        .filter(|e| e != "HOSTNAME=")
        .collect();
    Ok((plan.opts.command.clone(), envs))
}

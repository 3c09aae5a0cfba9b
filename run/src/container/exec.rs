//! `ferry exec [-i] [-t] C CMD…`: run another process in a running container.
//!
//! An intermediate process joins the container's namespaces with `setns` (mount and PID
//! namespaces since Linux 3.8) and clones the new process with `CLONE_PARENT`, so that the
//! process is born in the container's PID namespace yet is ferry's own child to wait for.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::Command;

use oci_spec::runtime::Spec;

use super::supervise::{self, Signals};
use super::{Containers, Status, tty};
use crate::error::RunError;
use crate::process::caps;
use crate::process::exec::{self, InitError};
use crate::process::reaper::{ERROR_FD, report_and_exit};
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
    let (c, meta) = containers.find(reference)?;
    let state = c.current_state();
    if state.status != Status::Running {
        return Err(RunError::NotRunning(c.short_id().to_string()));
    }
    if let Some(runtime) = &meta.runtime {
        let mut cmd = Command::new(runtime);
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
        tty::copy_winsize(libc::STDIN_FILENO, t.master.as_raw_fd());
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
    };
    ERROR_FD.store(err_w.as_raw_fd(), std::sync::atomic::Ordering::SeqCst);
    // SAFETY: single-threaded; the child only joins namespaces, clones and exits.
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
    let mut st = 0;
    // SAFETY: reaps the intermediate process.
    unsafe { libc::waitpid(middle, &mut st, 0) };
    let mut pid_text = String::new();
    let _ = std::fs::File::from(pid_r).read_to_string(&mut pid_text);
    let mut msg = String::new();
    let _ = std::fs::File::from(err_r).read_to_string(&mut msg);
    let pid: i32 = pid_text.trim().parse().unwrap_or(0);
    if !msg.is_empty() || pid <= 0 {
        if pid > 0 {
            let mut st = 0;
            // SAFETY: reaps the failed process, our child through CLONE_PARENT.
            unsafe { libc::waitpid(pid, &mut st, 0) };
        }
        let e = InitError::decode(if msg.is_empty() {
            "125\t0\tcannot join the container"
        } else {
            &msg
        });
        return Err(RunError::Exec {
            id: c.short_id().to_string(),
            message: e.message,
            code: e.code,
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
}

fn pipe() -> Result<(OwnedFd, OwnedFd), RunError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(RunError::Sys {
            action: "create a pipe".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: fresh descriptors.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
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
    for (fd, flag) in ns_fds {
        if let Err(e) = sys.setns(fd.as_raw_fd(), *flag) {
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
    let _ = std::fs::File::from(pid_w).write_all_str(&pid.to_string());
    // SAFETY: ends the intermediate process.
    unsafe { libc::_exit(0) }
}

trait WriteStr {
    fn write_all_str(self, s: &str) -> std::io::Result<()>;
}
impl WriteStr for std::fs::File {
    fn write_all_str(mut self, s: &str) -> std::io::Result<()> {
        std::io::Write::write_all(&mut self, s.as_bytes())
    }
}

/// In the container: cgroups, terminal, identity, capabilities, working directory.
fn prepare_process(
    sys: &dyn Syscall,
    plan: &ExecPlan,
) -> Result<(Vec<String>, Vec<String>), InitError> {
    let fail = |what: &str, e: std::io::Error| InitError::setup(format!("cannot {what}: {e}"));
    for p in &plan.cgroup_procs {
        sys.write_file(p, "0")
            .map_err(|e| fail("join the container's cgroup", e))?;
    }
    sys.setsid().map_err(|e| fail("start a session", e))?;
    if let Some(fd) = plan.console {
        sys.set_controlling_tty(fd)
            .map_err(|e| fail("attach the terminal", e))?;
    } else if let Some(fd) = plan.stdin {
        // SAFETY: duplicates our /dev/null onto stdin.
        unsafe { libc::dup2(fd, 0) };
    }
    let process = plan.spec.process().clone().unwrap_or_default();
    let mut user = process.user().clone();
    if let Some(u) = &plan.opts.user {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
        let r = user::resolve(u, &passwd, &group).map_err(|e| InitError::setup(e.to_string()))?;
        user.set_uid(r.uid);
        user.set_gid(r.gid);
        user.set_additional_gids(Some(r.additional_gids));
    }
    let keep = caps::bounding_to_keep(&process);
    caps::drop_bounding(sys, keep).map_err(|e| fail("drop capabilities", e))?;
    let rootless = plan
        .spec
        .linux()
        .as_ref()
        .is_some_and(|l| l.uid_mappings().is_some());
    if !rootless {
        sys.setgroups(user.additional_gids().as_deref().unwrap_or_default())
            .map_err(|e| fail("set supplementary groups", e))?;
    }
    sys.setgid(user.gid()).map_err(|e| fail("set gid", e))?;
    sys.setuid(user.uid()).map_err(|e| fail("set uid", e))?;
    let (eff, perm) = if user.uid() == 0 {
        (keep, keep)
    } else {
        (0, 0)
    };
    sys.capset(eff, perm, 0)
        .map_err(|e| fail("set capabilities", e))?;
    if process.no_new_privileges().unwrap_or(false) {
        sys.set_no_new_privs()
            .map_err(|e| fail("set no_new_privs", e))?;
    }
    let cwd = plan
        .opts
        .workdir
        .clone()
        .map(PathBuf::from)
        .unwrap_or_else(|| process.cwd().clone());
    sys.chdir(&cwd)
        .map_err(|e| fail(&format!("enter working directory {}", cwd.display()), e))?;
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

//! Starting and stopping the port proxy: a child of the container's supervisor that holds the
//! published ports for as long as the container runs (see [`super::relay`]).

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use rustix::thread::LinkNameSpaceType;

use super::listen::Listener;

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    /// Its pid (recorded in the container's state).
    pub pid: i32,
    /// Closing it tells the proxy to stop (and it stops by itself when the supervisor dies).
    lifeline: Option<OwnedFd>,
}

/// The namespaces the proxy joins to reach the container: its network namespace, and for a
/// rootless container first the user namespace that owns it.
#[derive(Debug)]
pub struct Target {
    /// `/proc/<pid>/ns/user`, rootless only.
    pub user: Option<OwnedFd>,
    /// `/proc/<pid>/ns/net`.
    pub net: OwnedFd,
}

impl Target {
    /// The namespaces of the process `pid` (the container's first process).
    pub fn of_pid(pid: i32, rootless: bool) -> std::io::Result<Target> {
        let open = |ns: &str| {
            std::fs::File::open(Path::new("/proc").join(pid.to_string()).join("ns").join(ns))
                .map(OwnedFd::from)
        };
        Ok(Target {
            user: if rootless { Some(open("user")?) } else { None },
            net: open("net")?,
        })
    }
}

impl Proxy {
    /// Forks the proxy with `listeners` (which the caller no longer holds afterwards) for the
    /// container reached through `target`. Returns once the proxy has joined the container's
    /// network namespace, or with the reason it could not.
    ///
    /// The caller must be single-threaded (the child continues from a copy of it).
    pub fn start(listeners: Vec<Listener>, target: Target) -> std::io::Result<Proxy> {
        let (life_r, life_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let (ready_r, ready_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let parent = rustix::process::getpid();
        // SAFETY: the caller is single-threaded; the child only sets itself up, runs the
        // relay and exits without returning.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid == 0 {
            drop(life_w);
            drop(ready_r);
            child(parent, listeners, target, life_r, ready_w);
        }
        drop(life_r);
        drop(ready_w);
        drop(listeners);
        let mut msg = String::new();
        let _ = std::fs::File::from(ready_r).read_to_string(&mut msg);
        let proxy = Proxy {
            pid,
            lifeline: Some(life_w),
        };
        if msg == "ok" {
            return Ok(proxy);
        }
        proxy.stop();
        Err(std::io::Error::other(if msg.is_empty() {
            "the port proxy exited before it was ready".to_string()
        } else {
            msg
        }))
    }

    /// Stops the proxy and waits for it: the ports are free when this returns.
    pub fn stop(mut self) {
        self.lifeline.take();
        // SAFETY: our own child; SIGKILL because its connections end with the container.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            let mut st = 0;
            libc::waitpid(self.pid, &mut st, 0);
        }
    }
}

fn child(
    parent: rustix::process::Pid,
    listeners: Vec<Listener>,
    target: Target,
    lifeline: OwnedFd,
    ready: OwnedFd,
) -> ! {
    use std::io::Write;
    let mut ready = std::fs::File::from(ready);
    let fail = |ready: &mut std::fs::File, what: &str, e: std::io::Error| -> ! {
        let _ = write!(ready, "cannot {what}: {e}");
        // SAFETY: ends the child without the parent's atexit handlers.
        unsafe { libc::_exit(1) }
    };
    // SAFETY: process-attribute calls on ourselves: die with the supervisor, leave its
    // process group (a Ctrl-C for `ferry run` is the container's to handle, not ours),
    // unblock the signals the supervisor reads from its signalfd, ignore SIGPIPE (a client
    // that went away is an error on that connection only).
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::setpgid(0, 0);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::prctl(libc::PR_SET_NAME, c"ferry-proxy".as_ptr());
    }
    // The supervisor may have died before the death signal was armed.
    if rustix::process::getppid() != Some(parent) {
        // SAFETY: ends the child.
        unsafe { libc::_exit(1) }
    }
    // Its standard streams may be the caller's terminal or pipes: keep none of them open.
    crate::container::monitor::null_stdio();
    let keep: Vec<i32> = listeners
        .iter()
        .map(|l| l.fd.as_raw_fd())
        .chain([
            lifeline.as_raw_fd(),
            ready.as_raw_fd(),
            target.net.as_raw_fd(),
        ])
        .chain(target.user.as_ref().map(|f| f.as_raw_fd()))
        .collect();
    close_other_fds(&keep);
    raise_fd_limit();
    if let Some(user) = &target.user
        && let Err(e) =
            rustix::thread::move_into_link_name_space(user.as_fd(), Some(LinkNameSpaceType::User))
    {
        fail(&mut ready, "join the container's user namespace", e.into());
    }
    if let Err(e) = rustix::thread::move_into_link_name_space(
        target.net.as_fd(),
        Some(LinkNameSpaceType::Network),
    ) {
        fail(
            &mut ready,
            "join the container's network namespace",
            e.into(),
        );
    }
    drop(target);
    let _ = ready.write_all(b"ok");
    drop(ready);
    let code = match super::relay::run(listeners, lifeline) {
        Ok(()) => 0,
        Err(_) => 1,
    };
    // SAFETY: ends the child without the parent's atexit handlers.
    unsafe { libc::_exit(code) }
}

/// The supervisor's descriptors (log pipes, the terminal) must not be held open by the
/// proxy, or their readers would never see end of file.
fn close_other_fds(keep: &[i32]) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2 && !keep.contains(fd))
        .collect();
    for fd in fds {
        // SAFETY: closes a descriptor this process no longer uses (the directory's own
        // descriptor is already closed).
        unsafe { libc::close(fd) };
    }
}

/// Each connection takes two descriptors: use as many as the hard limit allows.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
}

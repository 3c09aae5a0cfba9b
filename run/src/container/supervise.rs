//! Watching a container in the foreground: forward the user's signals to it, proxy its
//! terminal, and return Docker's exit status when it ends.
//!
//! Signals are blocked before the container starts and read from a signalfd (Linux 2.6.27), so
//! one that arrives while it starts is forwarded, not lost, and no handler runs.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, WaitOptions};

use super::tty;
use crate::process::signal::{self, FORWARDED, exit_status};

/// Blocked signals, readable from a signalfd; the mask is restored on drop.
pub struct Signals {
    fd: OwnedFd,
    old: libc::sigset_t,
}

impl Signals {
    /// Blocks the forwarded signals and `SIGCHLD`.
    pub fn block() -> io::Result<Signals> {
        // rustix has neither sigprocmask (outside its runtime feature) nor signalfd.
        // SAFETY: signal-mask calls on zeroed sets this function owns; signalfd's descriptor
        // is checked before it is owned.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in FORWARDED.iter().chain(&[libc::SIGCHLD]) {
                libc::sigaddset(&mut set, *s);
            }
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old);
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Signals {
                fd: OwnedFd::from_raw_fd(fd),
                old,
            })
        }
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Reads one pending signal (blocks if none).
    pub fn next(&self) -> Option<libc::c_int> {
        // A `struct signalfd_siginfo` is 128 bytes; its first field is the signal number.
        let mut info = [0u8; 128];
        match rustix::io::read(&self.fd, &mut info) {
            Ok(128) => Some(u32::from_ne_bytes([info[0], info[1], info[2], info[3]]) as i32),
            _ => None,
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `block`.
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

/// Reaps `pid` if it ended.
pub fn try_wait(pid: i32) -> Option<i32> {
    let p = Pid::from_raw(pid)?;
    match rustix::process::waitpid(Some(p), WaitOptions::NOHANG) {
        Ok(Some((_, status))) => Some(exit_status(status)),
        _ => None,
    }
}

/// Waits for `pid` (a child that has ended or is ending) and discards its status.
pub fn reap(pid: i32) {
    if let Some(p) = Pid::from_raw(pid) {
        let _ = rustix::process::waitpid(Some(p), WaitOptions::empty());
    }
}

/// Passes a signal read from `signals` on to `pid`; SIGCHLD is for the watcher itself.
pub fn forward(pid: i32, sig: Option<libc::c_int>) {
    match sig {
        Some(libc::SIGCHLD) | None => {}
        Some(sig) => {
            let _ = signal::send(pid, sig);
        }
    }
}

/// Waits for `pid`, forwarding signals; returns its exit status.
pub fn wait(pid: i32, signals: &Signals) -> i32 {
    loop {
        if let Some(code) = try_wait(pid) {
            return code;
        }
        forward(pid, signals.next());
    }
}

/// Waits for `pid` while proxying between the user's terminal and the pty `master`.
pub fn wait_tty(pid: i32, signals: &Signals, master: &OwnedFd, interactive: bool) -> i32 {
    let stdin = io::stdin();
    let stdout = io::stdout();
    let _raw = tty::RawMode::enter(&stdin);
    tty::copy_winsize(&stdin, master);
    let mut stdin_open = interactive;
    let mut code = None;
    let mut buf = [0u8; 8192];
    // After the container ended, drain what its terminal still holds, then stop.
    let no_wait = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    loop {
        let mut fds = vec![
            PollFd::new(&signals.fd, PollFlags::IN),
            PollFd::new(master, PollFlags::IN),
        ];
        if stdin_open {
            fds.push(PollFd::new(&stdin, PollFlags::IN));
        }
        let timeout = code.is_some().then_some(&no_wait);
        let n = match rustix::event::poll(&mut fds, timeout) {
            Ok(n) => n,
            Err(_) => continue,
        };
        if n == 0 {
            return code.unwrap_or(125);
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        if ready[0] {
            match signals.next() {
                Some(libc::SIGWINCH) => tty::copy_winsize(&stdin, master),
                sig => forward(pid, sig),
            }
            if code.is_none() {
                code = try_wait(pid);
            }
        }
        if ready[1] {
            match rustix::io::read(master, &mut buf) {
                Ok(r) if r > 0 => write_all(stdout.as_fd(), &buf[..r]),
                // EIO: every slave descriptor is closed; the container is gone or going.
                _ => return code.unwrap_or_else(|| wait(pid, signals)),
            }
        }
        if stdin_open && ready.get(2) == Some(&true) {
            match rustix::io::read(&stdin, &mut buf) {
                Ok(r) if r > 0 => write_all(master.as_fd(), &buf[..r]),
                _ => stdin_open = false,
            }
        }
    }
}

/// Writes a whole buffer to a descriptor, retrying short and interrupted writes.
pub fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(n) if n > 0 => data = &data[n..],
            Err(rustix::io::Errno::INTR) => {}
            _ => return,
        }
    }
}

//! Watching a container in the foreground: forward the user's signals to it, proxy its
//! terminal, and return Docker's exit status when it ends.
//!
//! Signals are blocked before the container starts and read from a signalfd (Linux 2.6.27), so
//! one that arrives while it starts is forwarded, not lost, and no handler runs.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::tty;
use crate::process::signal::exit_status;

/// Forwarded like `docker run`'s sig-proxy.
pub const FORWARDED: [libc::c_int; 7] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// Blocked signals, readable from a signalfd; the mask is restored on drop.
pub struct Signals {
    fd: OwnedFd,
    old: libc::sigset_t,
}

impl Signals {
    /// Blocks the forwarded signals and `SIGCHLD`.
    pub fn block() -> io::Result<Signals> {
        // SAFETY: signal-mask calls with zeroed sets; signalfd's descriptor is checked.
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
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads one pending signal (blocks if none).
    pub fn next(&self) -> Option<libc::c_int> {
        // SAFETY: reads one signalfd_siginfo into a zeroed struct of the right size.
        unsafe {
            let mut info: libc::signalfd_siginfo = std::mem::zeroed();
            let n = libc::read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                std::mem::size_of::<libc::signalfd_siginfo>(),
            );
            (n == std::mem::size_of::<libc::signalfd_siginfo>() as isize)
                .then_some(info.ssi_signo as libc::c_int)
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
    let mut status = 0;
    // SAFETY: non-blocking wait for our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    (r == pid).then(|| exit_status(status))
}

/// Waits for `pid`, forwarding signals; returns its exit status.
pub fn wait(pid: i32, signals: &Signals) -> i32 {
    loop {
        if let Some(code) = try_wait(pid) {
            return code;
        }
        match signals.next() {
            Some(libc::SIGCHLD) | None => {}
            // SAFETY: signals our own child.
            Some(sig) => unsafe {
                libc::kill(pid, sig);
            },
        }
    }
}

/// Waits for `pid` while proxying between the user's terminal and the pty `master`.
pub fn wait_tty(pid: i32, signals: &Signals, master: &OwnedFd, interactive: bool) -> i32 {
    let stdin = io::stdin();
    let _raw = tty::RawMode::enter(&stdin);
    tty::copy_winsize(libc::STDIN_FILENO, master.as_raw_fd());
    let mut stdin_open = interactive;
    let mut code = None;
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = vec![
            libc::pollfd {
                fd: signals.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        if stdin_open {
            fds.push(libc::pollfd {
                fd: libc::STDIN_FILENO,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // After the container ended, drain what its terminal still holds, then stop.
        let timeout = if code.is_some() { 0 } else { -1 };
        // SAFETY: polls descriptors we own.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n == 0 {
            return code.unwrap_or(125);
        }
        if n < 0 {
            continue;
        }
        if fds[0].revents & libc::POLLIN != 0 {
            match signals.next() {
                Some(libc::SIGCHLD) => {}
                Some(libc::SIGWINCH) => tty::copy_winsize(libc::STDIN_FILENO, master.as_raw_fd()),
                // SAFETY: signals our own child.
                Some(sig) => unsafe {
                    libc::kill(pid, sig);
                },
                None => {}
            }
            if code.is_none() {
                code = try_wait(pid);
            }
        }
        if fds[1].revents != 0 {
            // SAFETY: reads into our buffer.
            let r = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if r > 0 {
                write_all(libc::STDOUT_FILENO, &buf[..r as usize]);
            } else {
                // EIO: every slave descriptor is closed; the container is gone or going.
                let status = code.unwrap_or_else(|| wait(pid, signals));
                return status;
            }
        }
        if stdin_open && fds.get(2).is_some_and(|f| f.revents != 0) {
            // SAFETY: reads into our buffer.
            let r = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
            if r > 0 {
                write_all(master.as_raw_fd(), &buf[..r as usize]);
            } else {
                stdin_open = false;
            }
        }
    }
}

/// Writes a whole buffer to a descriptor, retrying short writes.
pub fn write_all(fd: RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: writes from our buffer.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n <= 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        data = &data[n as usize..];
    }
}

//! Pseudo-terminals for `-t`: the pty pair, raw mode on the user's terminal, window size.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// A pty pair; the slave becomes the container's terminal.
#[derive(Debug)]
pub struct Pty {
    /// The master side, kept by the supervisor.
    pub master: OwnedFd,
    /// The slave side, given to the container.
    pub slave: OwnedFd,
    /// The slave's path (bind-mounted as `/dev/console`).
    pub slave_path: PathBuf,
}

/// Opens a new pty pair, both ends close-on-exec.
pub fn open() -> io::Result<Pty> {
    // SAFETY: plain calls; every returned descriptor is checked and owned.
    unsafe {
        let m = libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if m < 0 {
            return Err(io::Error::last_os_error());
        }
        let master = OwnedFd::from_raw_fd(m);
        if libc::grantpt(m) != 0 || libc::unlockpt(m) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = [0 as libc::c_char; 128];
        if libc::ptsname_r(m, buf.as_mut_ptr(), buf.len()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let path = CStr::from_ptr(buf.as_ptr()).to_owned();
        let s = libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if s < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Pty {
            master,
            slave: OwnedFd::from_raw_fd(s),
            slave_path: PathBuf::from(path.to_string_lossy().into_owned()),
        })
    }
}

/// Copies the window size of `from` (the user's terminal) to `to` (the pty master).
pub fn copy_winsize(from: RawFd, to: RawFd) {
    // SAFETY: ioctls on descriptors the caller owns, with a zeroed winsize.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}

/// The user's terminal in raw mode until dropped (keys go to the container unprocessed:
/// Ctrl-C becomes the container's, as with `docker run -it`).
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    /// Puts `fd` in raw mode if it is a terminal.
    pub fn enter(fd: &impl AsRawFd) -> Option<RawMode> {
        let fd = fd.as_raw_fd();
        // SAFETY: termios calls on a descriptor the caller owns, with zeroed structs.
        unsafe {
            if libc::isatty(fd) != 1 {
                return None;
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd, libc::TCSANOW, &t);
            Some(RawMode { fd, saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the saved attributes.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

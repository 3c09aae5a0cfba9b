//! Pseudo-terminals for `-t`: the pty pair, raw mode on the user's terminal, window size.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::{OptionalActions, Termios};

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
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let path = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        path.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(Pty {
        master,
        slave,
        slave_path: PathBuf::from(path.to_string_lossy().into_owned()),
    })
}

/// Copies the window size of `from` (the user's terminal) to `to` (the pty master); nothing
/// when `from` is not a terminal.
pub fn copy_winsize(from: impl AsFd, to: impl AsFd) {
    if let Ok(ws) = rustix::termios::tcgetwinsize(from) {
        let _ = rustix::termios::tcsetwinsize(to, ws);
    }
}

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: impl AsFd) -> bool {
    rustix::termios::isatty(fd)
}

/// The user's terminal in raw mode until dropped (keys go to the container unprocessed:
/// Ctrl-C becomes the container's, as with `docker run -it`).
pub struct RawMode<'a> {
    fd: BorrowedFd<'a>,
    saved: Termios,
}

impl<'a> RawMode<'a> {
    /// Puts `fd` in raw mode if it is a terminal.
    pub fn enter(fd: &'a impl AsFd) -> Option<RawMode<'a>> {
        let fd = fd.as_fd();
        if !rustix::termios::isatty(fd) {
            return None;
        }
        let saved = rustix::termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(fd, OptionalActions::Now, &raw);
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(self.fd, OptionalActions::Now, &self.saved);
    }
}

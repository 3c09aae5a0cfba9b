//! The system calls that build a container, behind a trait.
//!
//! [`LinuxSyscall`] makes the real calls; [`RecordingSyscall`] records them instead, so the order
//! of the namespace, mount and credential steps (which is what keeps a container contained) is
//! checked by unit tests that need neither root nor a kernel feature. Only calls whose order
//! matters go through here; plain file reads do not.

mod fake;
mod linux;

use std::ffi::CString;
use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::path::Path;

pub use fake::{Call, RecordingSyscall};
pub use linux::LinuxSyscall;
pub use rustix::process::Resource;

use crate::seccomp::Program;

/// Mount flags (`MS_*`), as `mount(2)` takes them.
pub type MountFlags = libc::c_ulong;

/// The calls the container's first process makes between `clone` and `execve`.
pub trait Syscall {
    /// `mount(2)`.
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MountFlags,
        data: Option<&str>,
    ) -> io::Result<()>;
    /// `umount2(2)`.
    fn umount2(&self, target: &Path, flags: libc::c_int) -> io::Result<()>;
    /// `pivot_root(2)`.
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()>;
    /// `chdir(2)`.
    fn chdir(&self, path: &Path) -> io::Result<()>;
    /// `mkdir -p` with `mode` for the directories it creates.
    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Creates an empty file (a mount point for a file bind mount) unless something exists.
    fn create_file(&self, path: &Path) -> io::Result<()>;
    /// `mknod(2)`.
    fn mknod(&self, path: &Path, mode: u32, dev: u64) -> io::Result<()>;
    /// `symlink(2)`.
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()>;
    /// Writes a small file whole (cgroup membership, id maps).
    fn write_file(&self, path: &Path, data: &str) -> io::Result<()>;
    /// `sethostname(2)`.
    fn sethostname(&self, name: &str) -> io::Result<()>;
    /// `setsid(2)`.
    fn setsid(&self) -> io::Result<()>;
    /// Makes `fd` (a terminal) the controlling terminal and the standard streams.
    fn set_controlling_tty(&self, fd: BorrowedFd<'_>) -> io::Result<()>;
    /// `dup2(fd, target)` onto a standard stream (`target` 0, 1 or 2).
    fn dup_stdio(&self, fd: BorrowedFd<'_>, target: RawFd) -> io::Result<()>;
    /// `prctl(PR_CAPBSET_DROP, cap)`.
    fn capbset_drop(&self, cap: u32) -> io::Result<()>;
    /// `capset(2)` for the calling thread.
    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> io::Result<()>;
    /// `prctl(PR_SET_KEEPCAPS, on)`.
    fn set_keepcaps(&self, on: bool) -> io::Result<()>;
    /// `prctl(PR_SET_NO_NEW_PRIVS, 1)`.
    fn set_no_new_privs(&self) -> io::Result<()>;
    /// `prctl(PR_SET_DUMPABLE, on)`.
    fn set_dumpable(&self, on: bool) -> io::Result<()>;
    /// `setgroups(2)`.
    fn setgroups(&self, gids: &[u32]) -> io::Result<()>;
    /// `setresgid(2)` with all three ids equal.
    fn setgid(&self, gid: u32) -> io::Result<()>;
    /// `setresuid(2)` with all three ids equal.
    fn setuid(&self, uid: u32) -> io::Result<()>;
    /// `setns(2)`.
    fn setns(&self, fd: BorrowedFd<'_>, nstype: libc::c_int) -> io::Result<()>;
    /// `setrlimit(2)`; `u64::MAX` is unlimited.
    fn setrlimit(&self, resource: Resource, soft: u64, hard: u64) -> io::Result<()>;
    /// Installs a seccomp filter on the calling thread.
    fn seccomp(&self, program: &Program) -> io::Result<()>;
    /// Brings up the loopback interface of the caller's network namespace (see `net::loopback`).
    fn loopback_up(&self) -> io::Result<()>;
    /// `execve(2)`; returns only on failure.
    fn execve(&self, path: &Path, argv: &[CString], envp: &[CString]) -> io::Error;
}

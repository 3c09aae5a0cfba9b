//! A [`Syscall`] that records what it is asked to do and does nothing, for unit tests.

use std::cell::RefCell;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

use super::{MountFlags, Resource, Syscall};
use crate::seccomp::Program;

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Call {
    Mount {
        source: Option<PathBuf>,
        target: PathBuf,
        fstype: Option<String>,
        flags: MountFlags,
        data: Option<String>,
    },
    Umount2(PathBuf, libc::c_int),
    PivotRoot(PathBuf, PathBuf),
    Chdir(PathBuf),
    MkdirAll(PathBuf),
    CreateFile(PathBuf),
    Mknod(PathBuf, u32, u64),
    Symlink(PathBuf, PathBuf),
    WriteFile(PathBuf, String),
    Sethostname(String),
    Setsid,
    SetControllingTty(libc::c_int),
    DupStdio(libc::c_int, libc::c_int),
    CapbsetDrop(u32),
    Capset(u64, u64, u64),
    SetKeepcaps(bool),
    SetNoNewPrivs,
    SetDumpable(bool),
    Setgroups(Vec<u32>),
    Setgid(u32),
    Setuid(u32),
    Setns(libc::c_int, libc::c_int),
    Setrlimit(Resource, u64, u64),
    /// A filter of this many instructions.
    Seccomp(usize),
    LoopbackUp,
    Execve(PathBuf, Vec<String>),
}

/// Records every call; optionally fails the mounts of one file system type.
#[derive(Debug, Default)]
pub struct RecordingSyscall {
    calls: RefCell<Vec<Call>>,
    /// Mounts of this type fail with `EINVAL`, as overlay does where the kernel lacks it.
    pub fail_fstype: Option<String>,
    /// `execve` of anything fails with this errno (default `ENOENT`: nothing is real).
    pub exec_errno: Option<i32>,
}

impl RecordingSyscall {
    /// The calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    fn push(&self, c: Call) -> io::Result<()> {
        self.calls.borrow_mut().push(c);
        Ok(())
    }
}

impl Syscall for RecordingSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MountFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        if fstype.is_some() && fstype == self.fail_fstype.as_deref() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        self.push(Call::Mount {
            source: source.map(Path::to_path_buf),
            target: target.to_path_buf(),
            fstype: fstype.map(str::to_string),
            flags,
            data: data.map(str::to_string),
        })
    }
    fn umount2(&self, target: &Path, flags: libc::c_int) -> io::Result<()> {
        self.push(Call::Umount2(target.to_path_buf(), flags))
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        self.push(Call::PivotRoot(
            new_root.to_path_buf(),
            put_old.to_path_buf(),
        ))
    }
    fn chdir(&self, path: &Path) -> io::Result<()> {
        self.push(Call::Chdir(path.to_path_buf()))
    }
    fn mkdir_all(&self, path: &Path, _mode: u32) -> io::Result<()> {
        self.push(Call::MkdirAll(path.to_path_buf()))
    }
    fn create_file(&self, path: &Path) -> io::Result<()> {
        self.push(Call::CreateFile(path.to_path_buf()))
    }
    fn mknod(&self, path: &Path, mode: u32, dev: u64) -> io::Result<()> {
        self.push(Call::Mknod(path.to_path_buf(), mode, dev))
    }
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        self.push(Call::Symlink(target.to_path_buf(), link.to_path_buf()))
    }
    fn write_file(&self, path: &Path, data: &str) -> io::Result<()> {
        self.push(Call::WriteFile(path.to_path_buf(), data.to_string()))
    }
    fn sethostname(&self, name: &str) -> io::Result<()> {
        self.push(Call::Sethostname(name.to_string()))
    }
    fn setsid(&self) -> io::Result<()> {
        self.push(Call::Setsid)
    }
    fn set_controlling_tty(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.push(Call::SetControllingTty(fd.as_raw_fd()))
    }
    fn dup_stdio(&self, fd: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
        self.push(Call::DupStdio(fd.as_raw_fd(), target))
    }
    fn capbset_drop(&self, cap: u32) -> io::Result<()> {
        self.push(Call::CapbsetDrop(cap))
    }
    fn capset(&self, e: u64, p: u64, i: u64) -> io::Result<()> {
        self.push(Call::Capset(e, p, i))
    }
    fn set_keepcaps(&self, on: bool) -> io::Result<()> {
        self.push(Call::SetKeepcaps(on))
    }
    fn set_no_new_privs(&self) -> io::Result<()> {
        self.push(Call::SetNoNewPrivs)
    }
    fn set_dumpable(&self, on: bool) -> io::Result<()> {
        self.push(Call::SetDumpable(on))
    }
    fn setgroups(&self, gids: &[u32]) -> io::Result<()> {
        self.push(Call::Setgroups(gids.to_vec()))
    }
    fn setgid(&self, gid: u32) -> io::Result<()> {
        self.push(Call::Setgid(gid))
    }
    fn setuid(&self, uid: u32) -> io::Result<()> {
        self.push(Call::Setuid(uid))
    }
    fn setns(&self, fd: BorrowedFd<'_>, nstype: libc::c_int) -> io::Result<()> {
        self.push(Call::Setns(fd.as_raw_fd(), nstype))
    }
    fn setrlimit(&self, resource: Resource, soft: u64, hard: u64) -> io::Result<()> {
        self.push(Call::Setrlimit(resource, soft, hard))
    }
    fn seccomp(&self, program: &Program) -> io::Result<()> {
        self.push(Call::Seccomp(program.len()))
    }
    fn loopback_up(&self) -> io::Result<()> {
        self.push(Call::LoopbackUp)
    }
    fn execve(&self, path: &Path, argv: &[CString], _envp: &[CString]) -> io::Error {
        let _ = self.push(Call::Execve(
            path.to_path_buf(),
            argv.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
        ));
        io::Error::from_raw_os_error(self.exec_errno.unwrap_or(libc::ENOENT))
    }
}

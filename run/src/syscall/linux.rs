//! The real system calls, through `rustix` (raw `libc` only where rustix has no call:
//! `capset`'s v3 layout is rustix's too, but the seccomp filter and `execve` are not). Every
//! call here exists in Linux 3.10.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::mount::{MountFlags as RMountFlags, MountPropagationFlags, UnmountFlags};
use rustix::thread::{CapabilitySet, CapabilitySets, LinkNameSpaceType};

use super::{MountFlags, Resource, Syscall};
use crate::seccomp::Program;

/// Makes the calls for real.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSyscall;

fn cstr(p: &OsStr) -> io::Result<CString> {
    CString::new(p.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte"))
}

fn flags32(flags: MountFlags) -> u32 {
    // Every MS_* flag fits in the low 32 bits; the kernel reads them as `unsigned long`.
    flags as u32
}

const PROPAGATION: MountFlags =
    libc::MS_SHARED | libc::MS_PRIVATE | libc::MS_SLAVE | libc::MS_UNBINDABLE;

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MountFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        // rustix has one function per kind of mount(2); the flags say which one this is.
        let r = if flags & libc::MS_REMOUNT != 0 {
            let rest = RMountFlags::from_bits_retain(flags32(flags & !libc::MS_REMOUNT));
            rustix::mount::mount_remount(target, rest, data.unwrap_or(""))
        } else if flags & PROPAGATION != 0 {
            rustix::mount::mount_change(
                target,
                MountPropagationFlags::from_bits_retain(flags32(flags)),
            )
        } else if flags & libc::MS_BIND != 0 {
            let source = source.ok_or(io::ErrorKind::InvalidInput)?;
            if flags & libc::MS_REC != 0 {
                rustix::mount::mount_bind_recursive(source, target)
            } else {
                rustix::mount::mount_bind(source, target)
            }
        } else {
            let source = source.ok_or(io::ErrorKind::InvalidInput)?;
            let fstype = fstype.ok_or(io::ErrorKind::InvalidInput)?;
            let data = data.map(|d| cstr(OsStr::new(d))).transpose()?;
            rustix::mount::mount(
                source,
                target,
                fstype,
                RMountFlags::from_bits_retain(flags32(flags)),
                data.as_deref(),
            )
        };
        Ok(r?)
    }

    fn umount2(&self, target: &Path, flags: libc::c_int) -> io::Result<()> {
        Ok(rustix::mount::unmount(
            target,
            UnmountFlags::from_bits_retain(flags as u32),
        )?)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        Ok(rustix::process::pivot_root(new_root, put_old)?)
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        std::env::set_current_dir(path)
    }

    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
    }

    fn create_file(&self, path: &Path) -> io::Result<()> {
        if std::fs::symlink_metadata(path).is_ok() {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            self.mkdir_all(parent, 0o755)?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map(drop)
    }

    fn mknod(&self, path: &Path, mode: u32, dev: u64) -> io::Result<()> {
        use rustix::fs::{CWD, FileType, Mode};
        Ok(rustix::fs::mknodat(
            CWD,
            path,
            FileType::from_raw_mode(mode),
            Mode::from_raw_mode(mode),
            dev,
        )?)
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn write_file(&self, path: &Path, data: &str) -> io::Result<()> {
        use std::io::Write;
        // No truncation, no creation: these are kernel files (cgroup.procs, uid_map).
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .write_all(data.as_bytes())
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        Ok(rustix::system::sethostname(name.as_bytes())?)
    }

    fn setsid(&self) -> io::Result<()> {
        rustix::process::setsid()?;
        Ok(())
    }

    fn set_controlling_tty(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        rustix::process::ioctl_tiocsctty(fd)?;
        rustix::stdio::dup2_stdin(fd)?;
        rustix::stdio::dup2_stdout(fd)?;
        rustix::stdio::dup2_stderr(fd)?;
        Ok(())
    }

    fn dup_stdio(&self, fd: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
        if fd.as_raw_fd() == target {
            return Ok(());
        }
        Ok(match target {
            0 => rustix::stdio::dup2_stdin(fd),
            1 => rustix::stdio::dup2_stdout(fd),
            2 => rustix::stdio::dup2_stderr(fd),
            _ => return Err(io::ErrorKind::InvalidInput.into()),
        }?)
    }

    fn capbset_drop(&self, cap: u32) -> io::Result<()> {
        let set = CapabilitySet::from_bits_retain(1u64.checked_shl(cap).unwrap_or(0));
        Ok(rustix::thread::remove_capability_from_bounding_set(set)?)
    }

    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
        Ok(rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: CapabilitySet::from_bits_retain(effective),
                permitted: CapabilitySet::from_bits_retain(permitted),
                inheritable: CapabilitySet::from_bits_retain(inheritable),
            },
        )?)
    }

    fn set_keepcaps(&self, on: bool) -> io::Result<()> {
        Ok(rustix::thread::set_keep_capabilities(on)?)
    }

    fn set_no_new_privs(&self) -> io::Result<()> {
        // Linux 3.5.
        Ok(rustix::thread::set_no_new_privs(true)?)
    }

    fn set_dumpable(&self, on: bool) -> io::Result<()> {
        use rustix::process::DumpableBehavior;
        Ok(rustix::process::set_dumpable_behavior(if on {
            DumpableBehavior::Dumpable
        } else {
            DumpableBehavior::NotDumpable
        })?)
    }

    fn setgroups(&self, gids: &[u32]) -> io::Result<()> {
        // The thread-level call changes this thread only, which is all there is; glibc's
        // wrapper would try to signal other threads.
        let gids: Vec<_> = gids
            .iter()
            .map(|g| rustix::process::Gid::from_raw(*g))
            .collect();
        Ok(rustix::thread::set_thread_groups(&gids)?)
    }

    fn setgid(&self, gid: u32) -> io::Result<()> {
        let g = rustix::process::Gid::from_raw(gid);
        Ok(rustix::thread::set_thread_res_gid(g, g, g)?)
    }

    fn setuid(&self, uid: u32) -> io::Result<()> {
        let u = rustix::process::Uid::from_raw(uid);
        Ok(rustix::thread::set_thread_res_uid(u, u, u)?)
    }

    fn setns(&self, fd: BorrowedFd<'_>, nstype: libc::c_int) -> io::Result<()> {
        // Mount and PID namespaces since Linux 3.8.
        let kind = match nstype {
            libc::CLONE_NEWNS => LinkNameSpaceType::Mount,
            libc::CLONE_NEWPID => LinkNameSpaceType::ProcessID,
            libc::CLONE_NEWNET => LinkNameSpaceType::Network,
            libc::CLONE_NEWUSER => LinkNameSpaceType::User,
            libc::CLONE_NEWUTS => LinkNameSpaceType::HostNameAndNISDomainName,
            libc::CLONE_NEWIPC => LinkNameSpaceType::InterProcessCommunication,
            libc::CLONE_NEWCGROUP => LinkNameSpaceType::ControlGroup,
            _ => return Err(io::ErrorKind::InvalidInput.into()),
        };
        Ok(rustix::thread::move_into_link_name_space(fd, Some(kind))?)
    }

    fn setrlimit(&self, resource: Resource, soft: u64, hard: u64) -> io::Result<()> {
        let value = |v: u64| (v != u64::MAX).then_some(v);
        Ok(rustix::process::setrlimit(
            resource,
            rustix::process::Rlimit {
                current: value(soft),
                maximum: value(hard),
            },
        )?)
    }

    fn seccomp(&self, program: &Program) -> io::Result<()> {
        program.install()
    }

    fn loopback_up(&self) -> io::Result<()> {
        crate::net::loopback::up()
    }

    fn execve(&self, path: &Path, argv: &[CString], envp: &[CString]) -> io::Error {
        let path = match cstr(path.as_os_str()) {
            Ok(p) => p,
            Err(e) => return e,
        };
        let mut argv: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
        envp.push(std::ptr::null());
        // rustix offers execve only to programs that are their own libc.
        // SAFETY: NULL-terminated arrays of NUL-terminated strings that outlive the call.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        io::Error::last_os_error()
    }
}

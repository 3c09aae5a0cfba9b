//! The real system calls, through `libc`. Every call here exists in Linux 3.10.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{MountFlags, Syscall};

/// Makes the calls for real.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSyscall;

fn cstr(p: &OsStr) -> io::Result<CString> {
    CString::new(p.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte"))
}

fn check(rc: libc::c_long) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MountFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        let source = source.map(|s| cstr(s.as_os_str())).transpose()?;
        let target = cstr(target.as_os_str())?;
        let fstype = fstype.map(|s| cstr(OsStr::new(s))).transpose()?;
        let data = data.map(|s| cstr(OsStr::new(s))).transpose()?;
        let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        // SAFETY: every pointer is a NUL-terminated string that outlives the call, or null.
        let rc = unsafe {
            libc::mount(
                ptr(&source),
                target.as_ptr(),
                ptr(&fstype),
                flags,
                ptr(&data).cast(),
            )
        };
        check(rc.into())
    }

    fn umount2(&self, target: &Path, flags: libc::c_int) -> io::Result<()> {
        let target = cstr(target.as_os_str())?;
        // SAFETY: NUL-terminated path.
        check(unsafe { libc::umount2(target.as_ptr(), flags) }.into())
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        let new_root = cstr(new_root.as_os_str())?;
        let put_old = cstr(put_old.as_os_str())?;
        // SAFETY: NUL-terminated paths; glibc has no wrapper.
        check(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
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
        let p = cstr(path.as_os_str())?;
        // SAFETY: NUL-terminated path.
        check(unsafe { libc::mknod(p.as_ptr(), mode, dev) }.into())
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
        // SAFETY: pointer and length describe `name`.
        check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }.into())
    }

    fn setsid(&self) -> io::Result<()> {
        // SAFETY: no arguments.
        check(unsafe { libc::setsid() }.into())
    }

    fn set_controlling_tty(&self, fd: libc::c_int) -> io::Result<()> {
        // SAFETY: plain ioctl/dup2 on descriptors this process owns.
        unsafe {
            check(libc::ioctl(fd, libc::TIOCSCTTY, 0).into())?;
            for std in 0..3 {
                check(libc::dup2(fd, std).into())?;
            }
        }
        Ok(())
    }

    fn capbset_drop(&self, cap: u32) -> io::Result<()> {
        // SAFETY: plain prctl.
        check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) }.into())
    }

    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: libc::c_int,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        // _LINUX_CAPABILITY_VERSION_3: 64-bit sets as two 32-bit halves (since 2.6.26).
        let header = Header {
            version: 0x2008_0522,
            pid: 0,
        };
        let data = [
            Data {
                effective: effective as u32,
                permitted: permitted as u32,
                inheritable: inheritable as u32,
            },
            Data {
                effective: (effective >> 32) as u32,
                permitted: (permitted >> 32) as u32,
                inheritable: (inheritable >> 32) as u32,
            },
        ];
        // SAFETY: header and data have the kernel's layout and live across the call.
        check(unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) })
    }

    fn set_keepcaps(&self, on: bool) -> io::Result<()> {
        // SAFETY: plain prctl.
        check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, on as libc::c_ulong, 0, 0, 0) }.into())
    }

    fn set_no_new_privs(&self) -> io::Result<()> {
        // SAFETY: plain prctl (Linux 3.5).
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }.into())
    }

    fn set_dumpable(&self, on: bool) -> io::Result<()> {
        // SAFETY: plain prctl.
        check(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, on as libc::c_ulong, 0, 0, 0) }.into())
    }

    fn setgroups(&self, gids: &[u32]) -> io::Result<()> {
        // The raw call changes this thread only, which is all there is; glibc's wrapper would
        // try to signal other threads.
        // SAFETY: pointer and length describe `gids`.
        check(unsafe { libc::syscall(libc::SYS_setgroups, gids.len(), gids.as_ptr()) })
    }

    fn setgid(&self, gid: u32) -> io::Result<()> {
        // SAFETY: plain syscall.
        check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) })
    }

    fn setuid(&self, uid: u32) -> io::Result<()> {
        // SAFETY: plain syscall.
        check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) })
    }

    fn setns(&self, fd: libc::c_int, nstype: libc::c_int) -> io::Result<()> {
        // SAFETY: plain syscall (mount and pid namespaces since Linux 3.8).
        check(unsafe { libc::setns(fd, nstype) }.into())
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
        // SAFETY: NULL-terminated arrays of NUL-terminated strings that outlive the call.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        io::Error::last_os_error()
    }
}

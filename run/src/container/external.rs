//! `--runtime runc|crun|PATH`: the same bundle handed to an installed OCI runtime.
//!
//! ferry mounts the rootfs on the host (the runtime expects `root.path` ready), runs
//! `RUNTIME run --bundle DIR ID` as its child and treats that process as the container: the
//! runtime forwards signals to the container and exits with its status (128+N when killed).
//!
//! crun (1.8) refuses hosts whose v1 hierarchies sit next to a v2 one with controllers
//! ("cgroups in hybrid mode not supported"), whatever its `--cgroup-manager`. There ferry starts
//! it (and its `exec` and `kill`) in a mount namespace of its own where the v2 mount at
//! `/sys/fs/cgroup/unified` is hidden: crun then sees a v1 host and manages its cgroups there,
//! limits and device rules included, where the controllers really are.

use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::cgroups::Layout;

use super::run::Prepared;
use crate::error::RunError;
use crate::image::ImageSource;
use crate::process::spawn::Stdio;
use crate::rootfs::{self, RootSource};
use crate::syscall::{LinuxSyscall, Syscall};

fn stdio_of(fd: Option<RawFd>) -> std::process::Stdio {
    match fd {
        // SAFETY: the descriptor stays open until the child has been spawned.
        Some(fd) => match unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned() {
            Ok(owned) => owned.into(),
            Err(_) => std::process::Stdio::null(),
        },
        None => std::process::Stdio::inherit(),
    }
}

/// Whether `runtime` is crun on a hybrid host, which it refuses.
fn crun_on_hybrid(runtime: &Path) -> bool {
    runtime
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("crun"))
        && Layout::detect().hybrid
}

/// `RUNTIME`, for every call ferry makes to it (run, exec, kill): crun on a hybrid host in a
/// mount namespace that shows it a v1 host.
pub fn command(runtime: &Path) -> Command {
    let mut cmd = Command::new(runtime);
    if crun_on_hybrid(runtime) {
        // SAFETY: between fork and exec the closure only makes unshare/mount/umount2 system
        // calls on static strings: no allocation, no lock that another thread could hold.
        unsafe {
            cmd.pre_exec(|| {
                use rustix::mount::{MountPropagationFlags, UnmountFlags};
                // (NEWNS only: the FILES caveat of unshare_unsafe does not apply.)
                rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS)?;
                // Nothing done here reaches the host; the host's mounts still reach in.
                rustix::mount::mount_change(
                    c"/",
                    MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
                )?;
                rustix::mount::unmount(c"/sys/fs/cgroup/unified", UnmountFlags::DETACH)?;
                Ok(())
            });
        }
    }
    cmd
}

/// Mounts the rootfs on the host and starts the runtime.
pub fn start(
    p: &mut Prepared,
    source: &dyn ImageSource,
    runtime: &Path,
    stdio: Stdio,
) -> Result<i32, RunError> {
    let rootfs = rootfs::rootfs_dir(&p.container.dir);
    if let RootSource::Overlay(o) = &p.source {
        let cwd = std::env::current_dir().ok();
        if let Some(d) = &o.chdir {
            let _ = std::env::set_current_dir(d);
        }
        let r = LinuxSyscall.mount(
            Some(Path::new("overlay")),
            &rootfs,
            Some("overlay"),
            0,
            Some(&o.data),
        );
        if let Some(c) = cwd {
            let _ = std::env::set_current_dir(c);
        }
        match r {
            Ok(()) => p.host_mounted = true,
            Err(e) if p.opts.rootfs == crate::options::RootfsMode::Auto => {
                tracing::debug!("overlay mount failed ({e}); copying the image");
                source
                    .materialise(&p.layers, &rootfs)
                    .map_err(|e| RunError::Io {
                        action: "copy the image's layers into",
                        path: rootfs.clone(),
                        source: std::io::Error::other(e),
                    })?;
                p.source = RootSource::Directory;
            }
            Err(source) => {
                return Err(RunError::Sys {
                    action: format!("mount overlay on {}", rootfs.display()),
                    source,
                });
            }
        }
    }
    let mut cmd = command(runtime);
    cmd.arg("run")
        .arg("--bundle")
        .arg(&p.container.dir)
        .arg(&p.container.id)
        .stdin(stdio_of(stdio.fds[0]))
        .stdout(stdio_of(stdio.fds[1]))
        .stderr(stdio_of(stdio.fds[2]));
    let child = cmd.spawn().map_err(|source| RunError::Runtime {
        runtime: runtime.to_path_buf(),
        source,
    });
    match child {
        Ok(c) => {
            let pid = c.id() as i32;
            if p.opts.detach {
                wait_created(runtime, &p.container.id, pid);
            }
            Ok(pid)
        }
        Err(e) => {
            unmount(p);
            Err(e)
        }
    }
}

/// Waits until the runtime knows the container, so `ferry run -d` returns a container that
/// `ferry exec` and `ferry kill` can reach at once, as Docker's does (or until the runtime
/// exits, or 10 seconds).
fn wait_created(runtime: &Path, id: &str, pid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let known = command(runtime)
            .args(["state", id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if known || super::state::start_time(pid).is_none() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Unmounts the host-side overlay.
pub fn unmount(p: &mut Prepared) {
    let rootfs = rootfs::rootfs_dir(&p.container.dir);
    let _ = LinuxSyscall.umount2(&rootfs, libc::MNT_DETACH);
    p.host_mounted = false;
}

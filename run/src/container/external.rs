//! `--runtime runc|crun|PATH`: the same bundle handed to an installed OCI runtime.
//!
//! ferry mounts the rootfs on the host (the runtime expects `root.path` ready), runs
//! `RUNTIME run --bundle DIR ID` as its child and treats that process as the container: the
//! runtime forwards signals to the container and exits with its status (128+N when killed).

use std::os::fd::{BorrowedFd, RawFd};
use std::path::Path;
use std::process::Command;

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
    let child = Command::new(runtime)
        .arg("run")
        .arg("--bundle")
        .arg(&p.container.dir)
        .arg(&p.container.id)
        .stdin(stdio_of(stdio.fds[0]))
        .stdout(stdio_of(stdio.fds[1]))
        .stderr(stdio_of(stdio.fds[2]))
        .spawn()
        .map_err(|source| RunError::Runtime {
            runtime: runtime.to_path_buf(),
            source,
        });
    match child {
        Ok(c) => Ok(c.id() as i32),
        Err(e) => {
            unmount(p);
            Err(e)
        }
    }
}

/// Unmounts the host-side overlay.
pub fn unmount(p: &mut Prepared) {
    let rootfs = rootfs::rootfs_dir(&p.container.dir);
    let _ = LinuxSyscall.umount2(&rootfs, libc::MNT_DETACH);
    p.host_mounted = false;
}

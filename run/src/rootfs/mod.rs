//! The container's file system view, built inside its new mount namespace: the image's layers
//! (overlayfs, or a copy), Docker's standard mounts and volumes, a minimal `/dev`, then
//! `pivot_root`, masked and read-only paths.

pub mod cgroupfs;
pub mod copy;
pub mod device;
pub mod mount;
pub mod overlay;
pub mod secure_join;

use std::io;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::syscall::{MountFlags, Syscall};

/// What the rootfs is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    /// An overlayfs mount to make on the rootfs directory.
    Overlay(overlay::Overlay),
    /// The rootfs directory already holds the files (copy fallback, or a bundle).
    Directory,
}

/// Why a step failed, for the message the user sees.
#[derive(Debug)]
pub struct StepError {
    /// The step (`mount overlay on /…/rootfs`).
    pub step: String,
    /// The errno.
    pub source: io::Error,
}

fn step<T>(what: impl FnOnce() -> String, r: io::Result<T>) -> Result<T, StepError> {
    r.map_err(|source| StepError {
        step: what(),
        source,
    })
}

/// What the rootfs needs besides the spec.
#[derive(Debug, Clone, Default)]
pub struct Extras<'a> {
    /// The pty slave with `-t` (`/dev/console`).
    pub console: Option<&'a Path>,
    /// `--privileged`: nothing `nodev`.
    pub privileged: bool,
    /// `--device` nodes, or the host's with `--privileged`.
    pub devices: &'a [device::Node],
    /// Make `devices` with `mknod` (privileged root) rather than bind them.
    pub mknod: bool,
    /// The container's own cgroup directories on the host, for `/sys/fs/cgroup`.
    pub cgroups: &'a [PathBuf],
}

/// Builds the root file system at `rootfs` and moves into it. On success the process's root is
/// the container's and its working directory is `/`.
pub fn prepare(
    sys: &dyn Syscall,
    spec: &Spec,
    rootfs: &Path,
    source: &RootSource,
    extras: &Extras<'_>,
) -> Result<(), StepError> {
    let privileged = extras.privileged;
    // Nothing mounted from here on may propagate back to the host; host mounts still
    // propagate in (`rslave`, runc's default).
    step(
        || "make / a slave mount".into(),
        sys.mount(
            None,
            Path::new("/"),
            None,
            libc::MS_REC | libc::MS_SLAVE,
            None,
        ),
    )?;
    let nodev: MountFlags = if privileged { 0 } else { libc::MS_NODEV };
    match source {
        RootSource::Overlay(o) => {
            if let Some(dir) = &o.chdir {
                step(|| format!("enter {}", dir.display()), sys.chdir(dir))?;
            }
            step(
                || format!("mount overlay on {}", rootfs.display()),
                sys.mount(
                    Some(Path::new("overlay")),
                    rootfs,
                    Some("overlay"),
                    nodev,
                    Some(&o.data),
                ),
            )?;
        }
        RootSource::Directory => {
            // pivot_root needs a mount point.
            step(
                || format!("bind {}", rootfs.display()),
                sys.mount(
                    Some(rootfs),
                    rootfs,
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                ),
            )?;
            if nodev != 0 {
                step(
                    || format!("remount {}", rootfs.display()),
                    mount::remount(sys, rootfs, nodev),
                )?;
            }
        }
    }
    for m in spec.mounts().as_deref().unwrap_or_default() {
        let r = if m.typ().as_deref() == Some("cgroup") {
            let opts = mount::parse_options(m.options().as_deref().unwrap_or_default());
            cgroupfs::mount(
                sys,
                &secure_join::secure_join(rootfs, m.destination()),
                extras.cgroups,
                opts.flags & libc::MS_RDONLY,
            )
        } else {
            mount::mount_entry(sys, rootfs, m, nodev)
        };
        step(|| format!("mount {}", m.destination().display()), r)?;
    }
    step(
        || "populate /dev".into(),
        device::populate(sys, rootfs, extras.console, extras.devices, extras.mknod),
    )?;

    // pivot_root(".", ".") stacks the old root on the new one; detaching it leaves only the
    // container's tree (no put_old directory needed, as runc does). Unlike chroot, the host's
    // root is then unreachable (chroot escapes via a second chroot and `..`).
    step(|| format!("enter {}", rootfs.display()), sys.chdir(rootfs))?;
    step(
        || "pivot_root into the container's root".into(),
        sys.pivot_root(Path::new("."), Path::new(".")),
    )?;
    step(
        || "detach the host's root".into(),
        sys.umount2(Path::new("."), libc::MNT_DETACH),
    )?;
    step(|| "enter /".into(), sys.chdir(Path::new("/")))?;

    let linux = spec.linux().clone().unwrap_or_default();
    for p in linux.masked_paths().as_deref().unwrap_or_default() {
        mask(sys, Path::new(p)).map_err(|source| StepError {
            step: format!("mask {p}"),
            source,
        })?;
    }
    for p in linux.readonly_paths().as_deref().unwrap_or_default() {
        readonly(sys, Path::new(p)).map_err(|source| StepError {
            step: format!("make {p} read-only"),
            source,
        })?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        step(
            || "make the root file system read-only".into(),
            mount::remount(sys, Path::new("/"), libc::MS_RDONLY | nodev),
        )?;
    }
    Ok(())
}

/// Hides a path: `/dev/null` over a file, an empty read-only tmpfs over a directory.
fn mask(sys: &dyn Syscall, p: &Path) -> io::Result<()> {
    let r = match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => sys.mount(
            Some(Path::new("tmpfs")),
            p,
            Some("tmpfs"),
            libc::MS_RDONLY,
            None,
        ),
        Ok(_) => sys.mount(Some(Path::new("/dev/null")), p, None, libc::MS_BIND, None),
        Err(e) => Err(e),
    };
    ignore_missing(r)
}

fn readonly(sys: &dyn Syscall, p: &Path) -> io::Result<()> {
    let r = sys
        .mount(Some(p), p, None, libc::MS_BIND | libc::MS_REC, None)
        .and_then(|()| {
            mount::remount(
                sys,
                p,
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_REC,
            )
        });
    ignore_missing(r)
}

/// Paths the kernel does not have (no `/proc/timer_stats` on new kernels) need no hiding.
fn ignore_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The container's rootfs directory inside its directory.
pub fn rootfs_dir(container_dir: &Path) -> PathBuf {
    container_dir.join("rootfs")
}

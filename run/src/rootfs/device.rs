//! The minimal `/dev`: null, zero, full, random, urandom, tty (and console with `-t`), each a
//! bind mount of the host's node, plus the usual symlinks.
//!
//! Why bind mounts and `nodev` everywhere else: the default capability set keeps `CAP_MKNOD`
//! (images expect it), and Docker relies on the devices cgroup to make a node like
//! `mknod /dev/sda b 8 0` useless. A devices cgroup needs v1, or BPF on v2 (4.15+). Instead, every
//! file system ferry mounts into the container is `nodev` (the rootfs, `/dev`'s tmpfs, volumes,
//! tmpfs), so a node the container creates cannot be opened on any kernel; only these bind
//! mounts, each a mount of its own, stay usable.

use std::io;
use std::path::{Path, PathBuf};

use crate::syscall::Syscall;

/// The device nodes every container gets.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

const SYMLINKS: [(&str, &str); 6] = [
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
    ("pts/ptmx", "ptmx"),
    ("/proc/kcore", "core"),
];

/// Populates `root`/dev (already a tmpfs). `console` is the pty slave with `-t`.
pub fn populate(sys: &dyn Syscall, root: &Path, console: Option<&Path>) -> io::Result<()> {
    let dev = root.join("dev");
    for name in DEVICES {
        let target = dev.join(name);
        sys.create_file(&target)?;
        sys.mount(
            Some(&PathBuf::from("/dev").join(name)),
            &target,
            None,
            libc::MS_BIND,
            None,
        )?;
    }
    if let Some(console) = console {
        let target = dev.join("console");
        sys.create_file(&target)?;
        sys.mount(Some(console), &target, None, libc::MS_BIND, None)?;
    }
    for (target, link) in SYMLINKS {
        match sys.symlink(Path::new(target), &dev.join(link)) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            other => other?,
        }
    }
    Ok(())
}

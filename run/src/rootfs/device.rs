//! `/dev`: null, zero, full, random, urandom, tty (and console with `-t`), each a bind mount of
//! the host's node, the usual symlinks, then `--device` nodes, or with `--privileged` every
//! device of the host's `/dev`, as Docker gives them.
//!
//! Why bind mounts and `nodev` everywhere else: the default capability set keeps `CAP_MKNOD`
//! (images expect it), and Docker relies on the devices cgroup to make a node like
//! `mknod /dev/sda b 8 0` useless. A devices cgroup needs v1, or BPF on v2 (4.15+). Instead, every
//! file system ferry mounts into the container is `nodev` (the rootfs, `/dev`'s tmpfs, volumes,
//! tmpfs), so a node the container creates cannot be opened on any kernel; only these bind
//! mounts, each a mount of its own, stay usable. `--privileged` lifts `nodev`, so its nodes are
//! made with `mknod` like Docker's (bound instead where `mknod` is refused: rootless).

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceBuilder, LinuxDeviceType};

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

/// What of the host's `/dev` a privileged container does not get (runc's list): mount points
/// of their own, and the host's console.
const HOST_DEV_SKIPPED_DIRS: [&str; 7] =
    ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// One extra device node of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The node on the host.
    pub host: PathBuf,
    /// Where it appears in the container (absolute).
    pub container: PathBuf,
    /// `c`, `b` or `p`.
    pub kind: char,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl Node {
    fn of(host: &Path, container: PathBuf) -> io::Result<Option<Node>> {
        let m = std::fs::symlink_metadata(host)?;
        let ft = m.file_type();
        let kind = if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else if ft.is_fifo() {
            'p'
        } else {
            return Ok(None);
        };
        let rdev = m.rdev();
        Ok(Some(Node {
            host: host.to_path_buf(),
            container,
            kind,
            major: rustix::fs::major(rdev) as i64,
            minor: rustix::fs::minor(rdev) as i64,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
        }))
    }

    /// The OCI `linux.devices` entry (for runc and crun, which make the node themselves).
    pub fn to_oci(&self) -> LinuxDevice {
        LinuxDeviceBuilder::default()
            .path(self.container.clone())
            .typ(match self.kind {
                'b' => LinuxDeviceType::B,
                'p' => LinuxDeviceType::P,
                _ => LinuxDeviceType::C,
            })
            .major(self.major)
            .minor(self.minor)
            .file_mode(self.mode)
            .uid(self.uid)
            .gid(self.gid)
            .build()
            .expect("every field is set")
    }

    /// `mknod`'s mode argument: type bits and permissions.
    fn mknod_mode(&self) -> u32 {
        let t = match self.kind {
            'b' => libc::S_IFBLK,
            'p' => libc::S_IFIFO,
            _ => libc::S_IFCHR,
        };
        t | self.mode
    }
}

/// `--device HOST:CONTAINER`: the node, or every node under a directory (as Docker does for
/// `--device /dev/snd`).
pub fn requested(host: &Path, container: &Path) -> io::Result<Vec<Node>> {
    let m = std::fs::metadata(host)?;
    if m.is_dir() {
        let mut out = Vec::new();
        walk(host, &mut |p| {
            let rel = p.strip_prefix(host).unwrap_or(p);
            if let Some(n) = Node::of(p, container.join(rel))? {
                out.push(n);
            }
            Ok(())
        })?;
        return Ok(out);
    }
    match Node::of(host, container.to_path_buf())? {
        Some(n) => Ok(vec![n]),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a device node",
        )),
    }
}

/// A container's extra nodes: its `--device`s, after every device of the host with
/// `--privileged`; a `--device` that is not there is an error naming it.
pub fn for_container(
    devices: &[crate::options::Device],
    privileged: bool,
) -> Result<Vec<Node>, crate::RunError> {
    let mut out = if privileged { host_devices() } else { vec![] };
    for d in devices {
        let nodes = requested(&d.host, &d.container).map_err(|source| crate::RunError::Io {
            action: "use the device",
            path: d.host.clone(),
            source,
        })?;
        for n in nodes {
            out.retain(|o| o.container != n.container);
            out.push(n);
        }
    }
    Ok(out)
}

/// Every device of the host's `/dev`, for `--privileged`.
pub fn host_devices() -> Vec<Node> {
    let mut out = Vec::new();
    let _ = walk(Path::new("/dev"), &mut |p| {
        if p == Path::new("/dev/console") {
            return Ok(());
        }
        if let Ok(Some(n)) = Node::of(p, p.to_path_buf()) {
            out.push(n);
        }
        Ok(())
    });
    out.sort_by(|a, b| a.container.cmp(&b.container));
    out
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path) -> io::Result<()>) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        let ft = e.file_type()?;
        if ft.is_dir() {
            let name = e.file_name();
            if dir == Path::new("/dev")
                && HOST_DEV_SKIPPED_DIRS
                    .iter()
                    .any(|s| name.to_str() == Some(s))
            {
                continue;
            }
            walk(&p, f)?;
        } else if !ft.is_symlink() {
            f(&p)?;
        }
    }
    Ok(())
}

/// Populates `root`/dev (already a tmpfs). `console` is the pty slave with `-t`; `extra` the
/// `--device` and privileged nodes, made with `mknod` when `mknod` is set, else bound.
pub fn populate(
    sys: &dyn Syscall,
    root: &Path,
    console: Option<&Path>,
    extra: &[Node],
    mknod: bool,
) -> io::Result<()> {
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
    for n in extra {
        let rel = n.container.strip_prefix("/").unwrap_or(&n.container);
        let target = super::secure_join::secure_join(root, rel);
        if DEVICES.iter().any(|d| target == dev.join(d)) {
            // Already there (a privileged container lists the defaults again).
            continue;
        }
        if let Some(parent) = target.parent() {
            sys.mkdir_all(parent, 0o755)?;
        }
        if mknod {
            let dev = rustix::fs::makedev(n.major as u32, n.minor as u32);
            match sys.mknod(&target, n.mknod_mode(), dev) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                other => other?,
            }
        } else {
            sys.create_file(&target)?;
            sys.mount(Some(&n.host), &target, None, libc::MS_BIND, None)?;
        }
    }
    Ok(())
}

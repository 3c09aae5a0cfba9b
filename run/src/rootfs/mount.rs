//! One OCI mount entry → `mount(2)` calls under the new root.

use std::io;
use std::path::Path;

use oci_spec::runtime::Mount;

use super::secure_join::secure_join;
use crate::syscall::{MountFlags, Syscall};

/// Flags and file-system data parsed from an OCI mount's `options`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// `MS_*` flags.
    pub flags: MountFlags,
    /// Options the file system itself interprets (`mode=755,size=65536k`).
    pub data: Vec<String>,
}

/// Splits options into flags and data, as runc does. Propagation options are dropped: the
/// whole tree is made a slave of the host first, which is what they would ask for.
pub fn parse_options(options: &[String]) -> Parsed {
    let mut p = Parsed::default();
    for o in options {
        let (set, clear): (MountFlags, MountFlags) = match o.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "noatime" => (libc::MS_NOATIME, 0),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "bind" => (libc::MS_BIND, 0),
            "rbind" => (libc::MS_BIND | libc::MS_REC, 0),
            "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" | "unbindable"
            | "runbindable" => (0, 0),
            other => {
                p.data.push(other.to_string());
                (0, 0)
            }
        };
        p.flags = (p.flags | set) & !clear;
    }
    p
}

/// Mounts `m` under `root` (before `pivot_root`). `extra` flags are ORed in (ferry adds
/// `MS_NODEV`, see `rootfs::device`).
pub fn mount_entry(sys: &dyn Syscall, root: &Path, m: &Mount, extra: MountFlags) -> io::Result<()> {
    let typ = m.typ().as_deref().unwrap_or("bind");
    let mut opts = parse_options(m.options().as_deref().unwrap_or_default());
    if typ == "bind" {
        opts.flags |= libc::MS_BIND;
    }
    if typ != "devpts" {
        opts.flags |= extra;
    }
    let dest = secure_join(root, m.destination());
    let source = m.source().as_deref();
    let is_bind = opts.flags & libc::MS_BIND != 0;

    if is_bind && source.is_some_and(|s| !s.is_dir()) {
        sys.create_file(&dest)?;
    } else {
        sys.mkdir_all(&dest, 0o755)?;
    }
    let data = (!opts.data.is_empty()).then(|| opts.data.join(","));
    if is_bind {
        sys.mount(
            source,
            &dest,
            None,
            opts.flags & (libc::MS_BIND | libc::MS_REC),
            None,
        )?;
        // A bind mount ignores every other flag until it is remounted.
        let rest = opts.flags & !(libc::MS_BIND | libc::MS_REC);
        if rest != 0 {
            remount(sys, &dest, rest)?;
        }
        return Ok(());
    }
    let source = source.unwrap_or(Path::new(typ));
    match sys.mount(Some(source), &dest, Some(typ), opts.flags, data.as_deref()) {
        // sysfs needs a network namespace of one's own when not real root (rootless with
        // --network host): bind the host's read-only instead, as runc does.
        Err(e) if typ == "sysfs" && e.raw_os_error() == Some(libc::EPERM) => {
            sys.mount(
                Some(Path::new("/sys")),
                &dest,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )?;
            remount(
                sys,
                &dest,
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            )
        }
        other => other,
    }
}

/// Remounts a bind mount with `flags`, keeping the flags the kernel locked on it (in a user
/// namespace a remount may not clear `nosuid`, `nodev`, … inherited from the source).
pub fn remount(sys: &dyn Syscall, dest: &Path, flags: MountFlags) -> io::Result<()> {
    let base = libc::MS_BIND | libc::MS_REMOUNT;
    match sys.mount(None, dest, None, base | flags, None) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            sys.mount(None, dest, None, base | flags | locked_flags(dest), None)
        }
        other => other,
    }
}

fn locked_flags(path: &Path) -> MountFlags {
    use rustix::fs::StatVfsMountFlags as St;
    let Ok(st) = rustix::fs::statvfs(path) else {
        return 0;
    };
    [
        (St::RDONLY, libc::MS_RDONLY),
        (St::NOSUID, libc::MS_NOSUID),
        (St::NODEV, libc::MS_NODEV),
        (St::NOEXEC, libc::MS_NOEXEC),
        (St::NOATIME, libc::MS_NOATIME),
        (St::NODIRATIME, libc::MS_NODIRATIME),
        (St::RELATIME, libc::MS_RELATIME),
    ]
    .iter()
    .filter(|(flag, _)| st.f_flag.contains(*flag))
    .fold(0, |m, (_, ms)| m | ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let p = parse_options(
            &[
                "nosuid",
                "strictatime",
                "mode=755",
                "size=65536k",
                "rbind",
                "ro",
                "rprivate",
            ]
            .map(String::from),
        );
        assert_eq!(
            p.flags,
            libc::MS_NOSUID | libc::MS_STRICTATIME | libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY
        );
        assert_eq!(p.data, ["mode=755", "size=65536k"]);
        assert_eq!(parse_options(&["ro".into(), "rw".into()]).flags, 0);
    }
}

//! `/sys/fs/cgroup` inside the container: its own cgroups, read-only, where Docker puts them —
//! so the JVM, Go, .NET and Node, which size themselves from their cgroup, see `--memory` and
//! `--cpus`.
//!
//! On a v1 or hybrid host that is a tmpfs with one directory per hierarchy the container has a
//! cgroup in (`memory`, `cpu`, `pids`, `unified`), each a bind mount of the container's own
//! cgroup directory; on a v2-only host the container's cgroup directory itself. A container
//! without limits has no cgroup of its own (see [`crate::cgroups`]) and sees an empty
//! directory: there is no limit to find, and the caller's cgroups are not shown.

use std::io;
use std::path::{Path, PathBuf};

use crate::syscall::{MountFlags, Syscall};

/// A cgroup file system mounted on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupMount {
    mountpoint: PathBuf,
    v2: bool,
}

fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let mountpoint = pre.split(' ').nth(4)?.replace("\\040", " ");
            let v2 = match post.split(' ').next()? {
                "cgroup" => false,
                "cgroup2" => true,
                _ => return None,
            };
            Some(CgroupMount {
                mountpoint: PathBuf::from(mountpoint),
                v2,
            })
        })
        .collect()
}

/// Where each of `dirs` (the container's cgroup directories on the host) goes under `dest`:
/// `(host directory, path in the container)`; `None` for a v2-only host, whose one directory
/// replaces `dest` itself.
fn plan(
    mountinfo: &str,
    dirs: &[PathBuf],
    host_root: &Path,
) -> (Vec<(PathBuf, PathBuf)>, Option<PathBuf>) {
    let mounts = cgroup_mounts(mountinfo);
    let mut binds = Vec::new();
    let mut whole = None;
    for d in dirs {
        // The deepest cgroup mount holding the directory.
        let Some(m) = mounts
            .iter()
            .filter(|m| d.starts_with(&m.mountpoint))
            .max_by_key(|m| m.mountpoint.components().count())
        else {
            continue;
        };
        if m.v2 && m.mountpoint == host_root {
            whole = Some(d.clone());
        } else if let Ok(rel) = m.mountpoint.strip_prefix(host_root) {
            binds.push((d.clone(), rel.to_path_buf()));
        }
    }
    (binds, whole)
}

/// Mounts the container's cgroups at `dest` (under the new root, before `pivot_root`).
pub fn mount(
    sys: &dyn Syscall,
    dest: &Path,
    dirs: &[PathBuf],
    flags: MountFlags,
) -> io::Result<()> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let (binds, whole) = plan(&mountinfo, dirs, Path::new("/sys/fs/cgroup"));
    let locked = flags | libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV;
    sys.mkdir_all(dest, 0o755)?;
    if let Some(dir) = whole {
        sys.mount(Some(&dir), dest, None, libc::MS_BIND, None)?;
        return super::mount::remount(sys, dest, locked);
    }
    sys.mount(
        Some(Path::new("tmpfs")),
        dest,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV,
        Some("mode=755"),
    )?;
    for (dir, rel) in &binds {
        let target = dest.join(rel);
        sys.mkdir_all(&target, 0o755)?;
        sys.mount(Some(dir), &target, None, libc::MS_BIND, None)?;
        super::mount::remount(sys, &target, locked)?;
    }
    if flags & libc::MS_RDONLY != 0 {
        sys.mount(
            None,
            dest,
            None,
            libc::MS_REMOUNT | locked,
            Some("mode=755"),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 24 0:26 / /sys/fs/cgroup/memory rw,relatime shared:8 - cgroup cgroup rw,memory
31 24 0:27 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
33 24 0:29 / /sys/fs/cgroup/unified rw,relatime shared:11 - cgroup2 cgroup2 rw
";

    #[test]
    fn each_own_cgroup_goes_under_its_hierarchys_name() {
        let dirs = [
            PathBuf::from("/sys/fs/cgroup/memory/ferry/abc"),
            PathBuf::from("/sys/fs/cgroup/cpu/ferry/abc"),
        ];
        let (binds, whole) = plan(HYBRID, &dirs, Path::new("/sys/fs/cgroup"));
        assert_eq!(whole, None);
        assert_eq!(
            binds,
            [
                (dirs[0].clone(), PathBuf::from("memory")),
                (dirs[1].clone(), PathBuf::from("cpu"))
            ]
        );
        let v2 = "35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n";
        let dirs = [PathBuf::from("/sys/fs/cgroup/ferry/abc")];
        let (binds, whole) = plan(v2, &dirs, Path::new("/sys/fs/cgroup"));
        assert!(binds.is_empty());
        assert_eq!(whole, Some(dirs[0].clone()));
    }
}

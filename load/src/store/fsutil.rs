//! File operations below a directory handle that never follow a symlink.
//!
//! Layers are applied with `*at` calls relative to the snapshot's directory, opening each path
//! component with `O_NOFOLLOW | O_DIRECTORY`: a symlink anywhere in a path is an error, never
//! a way out (the class of bug behind CVE-2018-15664 in Docker and CVE-2019-16884 in runc).
//! `openat2(RESOLVE_BENEATH)` would do this in one call but needs Linux 5.6; ferry must run
//! on 3.10.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// Opens a directory (not following a final symlink).
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens `name` in `dir` as a directory, refusing symlinks.
pub fn open_child_dir(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The type of `name` in `dir` (not following symlinks), or `None` when absent.
pub fn kind_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<rustix::fs::Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether a stat result is an overlayfs whiteout (a 0:0 character device).
pub fn is_whiteout(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

/// Removes `name` from `dir`, whatever it is; directories with their content. Symlinks are
/// removed, never followed.
pub fn remove_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let Some(st) = kind_at(dir, name)? else {
        return Ok(());
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let child = open_child_dir(dir, name)?;
        // A directory without write or search permission (mode 0o000 from a layer) must be
        // opened up before its entries can go: as root this is not needed, as a user it is.
        // Through the handle opened with O_NOFOLLOW, never by name: a name may be a symlink
        // (to `/`, to /etc/shadow…) by the time it is used, and chmod follows symlinks.
        if st.st_mode & 0o700 != 0o700 {
            let _ = rustix::fs::fchmod(&child, Mode::from_raw_mode(0o700));
        }
        empty_dir(child.as_fd())?;
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
    }
    Ok(())
}

/// Removes everything inside `dir`.
pub fn empty_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    // A directory listing that is being modified is not reliable: collect names first.
    for name in list(dir)? {
        remove_at(dir, &name)?;
    }
    Ok(())
}

/// The names in `dir`, without `.` and `..`.
pub fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let fd = rustix::fs::openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let d = rustix::fs::Dir::read_from(&fd)?;
    let mut names = Vec::new();
    for e in d {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    Ok(names)
}

/// Removes a directory tree by path, without following symlinks inside it.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => {
            let fd = open_dir(path)?;
            empty_dir(fd.as_fd())?;
            std::fs::remove_dir(path)
        }
        Ok(_) => std::fs::remove_file(path),
    }
}

/// Asks the filesystem to spread the subdirectories of `dir` over the disk (ext4's "top of a
/// directory hierarchy" flag, `chattr +T`); elsewhere, and where it cannot be set, nothing.
///
/// Loads stage under one directory. On ext4 without a journal, a new inode skips every inode
/// of its block group deleted in the last minute (`recently_deleted()` in fs/ext4/ialloc.c),
/// so a load right after a removal of thousands of files (an old store, a pruned image) pays
/// for each of them on each file it creates: measured here, 0.3 s of system time became 2–5 s.
/// With the flag, each staging directory is placed by the Orlov allocator in a group of its
/// own choosing, away from what was just deleted.
pub fn spread_subdirectories(dir: &Path) {
    let Ok(fd) = open_dir(dir) else { return };
    if let Ok(flags) = rustix::fs::ioctl_getflags(&fd)
        && !flags.contains(rustix::fs::IFlags::TOPDIR)
        && let Err(e) = rustix::fs::ioctl_setflags(&fd, flags | rustix::fs::IFlags::TOPDIR)
    {
        tracing::debug!("cannot mark {} as a top directory: {e}", dir.display());
    }
}

/// Makes everything written to the filesystem that holds `path` durable: data, inodes and
/// directory entries of every file, in one `syncfs`.
pub fn sync_filesystem(path: &Path) -> io::Result<()> {
    let fd = open_dir(path)?;
    #[cfg(target_os = "linux")]
    rustix::fs::syncfs(&fd)?;
    #[cfg(not(target_os = "linux"))]
    {
        drop(fd);
        rustix::fs::sync();
    }
    Ok(())
}

/// Makes a directory's entries (renames into it) durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

/// Disk usage of a tree (allocated blocks), not following symlinks; hard-linked files count once.
pub fn disk_usage(path: &Path) -> u64 {
    fn walk(p: &Path, seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let Ok(m) = std::fs::symlink_metadata(p) else {
            return 0;
        };
        if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
            return 0;
        }
        let mut total = m.blocks() * 512;
        if m.is_dir()
            && let Ok(rd) = std::fs::read_dir(p)
        {
            for e in rd.flatten() {
                total += walk(&e.path(), seen);
            }
        }
        total
    }
    walk(path, &mut std::collections::HashSet::new())
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, synced, then
/// renamed over the target, so a reader (or a crash) sees the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    // The rename itself is durable only once the directory is.
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Emptying a directory must not change what its symlinks point at: a snapshot's absolute
    /// symlinks (Debian's `/etc/alternatives/*`, a hostile layer's link to `/`) name host
    /// files, and chmod through a name follows them.
    #[test]
    fn removing_a_tree_never_touches_what_its_symlinks_point_at() {
        let work = tempfile::tempdir().unwrap();
        let outside = work.path().join("outside");
        std::fs::write(&outside, b"host file").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        let outside_dir = work.path().join("outside-dir");
        std::fs::create_dir(&outside_dir).unwrap();
        std::fs::set_permissions(&outside_dir, std::fs::Permissions::from_mode(0o755)).unwrap();

        let tree = work.path().join("tree");
        std::fs::create_dir_all(tree.join("d/locked")).unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("d/file-link")).unwrap();
        std::os::unix::fs::symlink(&outside_dir, tree.join("d/dir-link")).unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("d/locked/deep-link")).unwrap();
        std::fs::set_permissions(
            tree.join("d/locked"),
            std::fs::Permissions::from_mode(0o000),
        )
        .unwrap();

        let fd = open_dir(&tree).unwrap();
        remove_at(fd.as_fd(), b"d").unwrap();

        assert!(!tree.join("d").exists());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&outside), 0o644, "a symlinked file's mode changed");
        assert_eq!(
            mode(&outside_dir),
            0o755,
            "a symlinked directory's mode changed"
        );
        assert_eq!(std::fs::read(&outside).unwrap(), b"host file");
    }
}

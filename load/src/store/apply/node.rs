//! Creating the non-directory entries of a layer (files, symlinks, device nodes, fifos) with
//! their metadata, each below the handle of its parent directory: the part of applying a layer
//! that may run on any thread (see [`super::writers`]).
//!
//! System calls per entry are what a layer costs on a disk whose metadata operations are slow,
//! so each one is made only when it changes something: a file is created with its final mode
//! where the umask lets it (`open` then `write`, `futimens`, `close`), the owner is set only
//! when it differs from the one the creating process gives, the mode only when creation could
//! not give it (setuid/setgid/sticky bits, bits the umask removes).

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::{AtFlags, Dev, FileType, Gid, Mode, OFlags, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use super::failed;
use crate::error::LayerError;

/// What an entry's metadata asks for, decided on the applier's thread.
#[derive(Debug)]
pub(super) struct Meta {
    /// The owner, when it differs from the one the creating process gives (root only).
    pub owner: Option<(Uid, Gid)>,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    /// Access and modification times.
    pub times: Timestamps,
    /// Extended attributes to set (those overlayfs would read already dropped).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What a non-directory entry is.
#[derive(Debug)]
pub(super) enum Content {
    /// A regular file with its data (small ones are carried in memory to a writer).
    File(Vec<u8>),
    /// A symbolic link and its target.
    Symlink(Vec<u8>),
    /// A device node or fifo.
    Node(FileType, Dev),
}

/// One non-directory entry, ready to be created by any thread.
#[derive(Debug)]
pub(super) struct Node {
    /// The directory it goes into (opened without following symlinks).
    pub parent: Arc<OwnedFd>,
    /// Its name there: one path component.
    pub name: Vec<u8>,
    /// The entry's path, for messages.
    pub entry: String,
    /// What to create.
    pub content: Content,
    /// Its metadata.
    pub meta: Meta,
    /// The process's umask (files are created with their final mode where it allows).
    pub umask: u32,
}

impl Node {
    /// Creates the entry, replacing an earlier entry of the same path.
    pub fn create(self) -> Result<(), LayerError> {
        let dir = self.parent.as_fd();
        let (name, entry, meta) = (self.name.as_slice(), self.entry.as_str(), &self.meta);
        match &self.content {
            Content::File(data) => write_file(dir, name, entry, meta, self.umask, |f| {
                use std::io::Write;
                f.write_all(data).map_err(failed("write", entry))
            }),
            Content::Symlink(target) => {
                let made = replacing(dir, name, || {
                    rustix::fs::symlinkat(target.as_slice(), dir, name)
                })
                .map_err(failed("create symlink", entry))?;
                match made {
                    Some(()) => settle_at(dir, name, entry, meta, false),
                    None => Ok(()),
                }
            }
            Content::Node(kind, dev) => {
                let (mode, fix) = creation_mode(meta.mode, self.umask);
                let made = replacing(dir, name, || {
                    rustix::fs::mknodat(dir, name, *kind, Mode::from_raw_mode(mode), *dev)
                })
                .map_err(failed("create device node", entry))?;
                match made {
                    Some(()) => settle_at(dir, name, entry, meta, fix),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Creates the regular file `name` in `dir`, `fill` writing its content, then its metadata.
/// An entry that lost to a later directory of the same path writes nothing.
pub(super) fn write_file(
    dir: BorrowedFd<'_>,
    name: &[u8],
    entry: &str,
    meta: &Meta,
    umask: u32,
    fill: impl FnOnce(&mut File) -> Result<(), LayerError>,
) -> Result<(), LayerError> {
    let (mode, fix) = creation_mode(meta.mode, umask);
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let made = replacing(dir, name, || {
        rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(mode))
    })
    .map_err(failed("create", entry))?;
    let Some(fd) = made else {
        return Ok(());
    };
    let mut file = File::from(fd);
    fill(&mut file)?;
    settle(file.as_fd(), entry, meta, fix)
}

/// The mode to create with, and whether the final mode must still be set afterwards: setuid,
/// setgid and sticky bits are never given at creation (a later `chown` clears them, and a write
/// by a user without CAP_FSETID too), nor bits the umask would remove.
pub(super) fn creation_mode(mode: u32, umask: u32) -> (u32, bool) {
    let perm = mode & 0o777;
    let fix = mode & 0o7000 != 0 || perm & umask != 0;
    (perm, fix)
}

/// Creates a name with `create`, an `*at` call that fails with EEXIST when the name is taken.
///
/// A non-directory in the way is an earlier entry of the same path: it is removed and the call
/// made again. A directory in the way was made by a *later* entry: directories are made in
/// stream order on the applier's thread, which removes a directory before it hands out an entry
/// that replaces it. Then this entry lost, and `None` says so. (That directory may appear
/// between the removal and the next call: hence the loop.)
pub(super) fn replacing<T>(
    dir: BorrowedFd<'_>,
    name: &[u8],
    mut create: impl FnMut() -> Result<T, Errno>,
) -> Result<Option<T>, Errno> {
    for _ in 0..3 {
        match create() {
            Err(Errno::EXIST) => {}
            other => return other.map(Some),
        }
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                return Ok(None);
            }
            Ok(_) => match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                // Became a directory since the stat.
                Err(Errno::ISDIR) => return Ok(None),
                Err(e) => return Err(e),
            },
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Err(Errno::EXIST)
}

/// Owner, xattrs, mode, times of an open file, in that order (`chown` clears setuid bits and
/// file capabilities).
fn settle(fd: BorrowedFd<'_>, entry: &str, meta: &Meta, fix_mode: bool) -> Result<(), LayerError> {
    if let Some((u, g)) = meta.owner {
        rustix::fs::fchown(fd, Some(u), Some(g)).map_err(failed("chown", entry))?;
    }
    set_xattrs(fd, entry, &meta.xattrs);
    if fix_mode {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode)).map_err(failed("chmod", entry))?;
    }
    rustix::fs::futimens(fd, &meta.times).map_err(failed("set times of", entry))
}

/// Owner, mode, times of `name` in `dir` without opening it (symlinks, device nodes): never
/// following a symlink there.
fn settle_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    entry: &str,
    meta: &Meta,
    fix_mode: bool,
) -> Result<(), LayerError> {
    if let Some((u, g)) = meta.owner {
        rustix::fs::chownat(dir, name, Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(failed("chown", entry))?;
    }
    if fix_mode || meta.owner.is_some() && meta.mode & 0o6000 != 0 {
        // Only device nodes and fifos get here (a symlink has no mode); the node was just made
        // by this thread in a directory no other entry writes to at the same time.
        rustix::fs::chmodat(dir, name, Mode::from_raw_mode(meta.mode), AtFlags::empty())
            .map_err(failed("chmod", entry))?;
    }
    rustix::fs::utimensat(dir, name, &meta.times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(failed("set times of", entry))
}

/// Sets extended attributes; those the filesystem or the user cannot set are skipped.
pub(super) fn set_xattrs(fd: BorrowedFd<'_>, entry: &str, xattrs: &[(Vec<u8>, Vec<u8>)]) {
    for (name, value) in xattrs {
        if let Err(e) = rustix::fs::fsetxattr(fd, name.as_slice(), value, XattrFlags::empty()) {
            // Filesystems without xattrs, and users without the right to set security.* or
            // trusted.*, are normal: the content is what matters.
            tracing::debug!(
                "cannot set xattr {} on {entry}: {e}",
                String::from_utf8_lossy(name)
            );
        }
    }
}

//! Writing COPY and ADD results into a step's own directory (its "changes"), which becomes the
//! new layer: what the step writes, plus the directories above it, copied up from the layers
//! below with their owner and mode, as overlayfs would copy them up.
//!
//! Paths are resolved as the container would see them (through the image's symlinks, never out
//! of its root) before anything is written; the changes directory itself is private to the
//! build and every path written in it is free of symlinks, so nothing lands outside it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Gid, Mode, Timespec, Timestamps, Uid};

use super::stack::Stack;

/// What an entry is.
pub enum Item<'a> {
    /// A directory.
    Dir,
    /// A regular file with its content.
    File(&'a mut dyn Read),
    /// A symbolic link to this target.
    Symlink(PathBuf),
    /// A hard link to another entry written by this step (the path [`Writer::put`] returned
    /// for it).
    HardLink(PathBuf),
    /// A named pipe.
    Fifo,
    /// A character device.
    Char(u64),
    /// A block device.
    Block(u64),
}

/// Owner, mode and time of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits, with set-id and sticky bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time: seconds, nanoseconds.
    pub mtime: (i64, i64),
}

impl Meta {
    /// The metadata of an existing file.
    pub fn of(m: &std::fs::Metadata) -> Meta {
        Meta {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime: (m.mtime(), m.mtime_nsec()),
        }
    }
}

/// Writes entries into a changes directory over the layers below.
pub struct Writer {
    changes: PathBuf,
    view: Stack,
    privileged: bool,
    now: (i64, i64),
    /// Directory modes and times, applied last (a read-only directory must stay fillable).
    dirs: Vec<(PathBuf, Meta)>,
    resolved: HashMap<PathBuf, PathBuf>,
    entries: u64,
}

impl Writer {
    /// A writer into `changes` (an empty directory) over `lowers` (bottom first).
    pub fn new(changes: PathBuf, lowers: &[PathBuf], now: (i64, i64)) -> Writer {
        let mut layers = lowers.to_vec();
        layers.push(changes.clone());
        Writer {
            changes,
            view: Stack::new(layers),
            privileged: rustix::process::geteuid().is_root(),
            now,
            dirs: Vec::new(),
            resolved: HashMap::new(),
            entries: 0,
        }
    }

    /// The merged view: the layers below with what was written so far on top.
    pub fn view(&self) -> &Stack {
        &self.view
    }

    /// Entries written.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Resolves a container path through the tree's symlinks (see [`Stack::resolve`]).
    pub fn resolve(&self, path: &Path) -> io::Result<PathBuf> {
        self.view.resolve(path).map_err(io::Error::other)
    }

    /// Makes sure the (resolved) directory `rel` and its parents exist in the changes:
    /// existing ones are copied up with their metadata, missing ones are made with mode 755
    /// and `owner`.
    pub fn ensure_dir(&mut self, rel: &Path, owner: (u32, u32)) -> io::Result<()> {
        let mut cur = PathBuf::new();
        for c in rel.components() {
            cur.push(c);
            let dst = self.changes.join(&cur);
            match dst.symlink_metadata() {
                Ok(m) if m.is_dir() => continue,
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("/{} is not a directory", cur.display()),
                    ));
                }
                Err(_) => {}
            }
            let below = self.view.lookup(&cur);
            match below {
                Some(n) if n.meta.is_dir() => {
                    std::fs::create_dir(&dst)?;
                    let mut meta = Meta::of(&n.meta);
                    // Adding an entry updates the directory's time, as in a container.
                    meta.mtime = self.now;
                    self.set_owner(&dst, meta.uid, meta.gid)?;
                    self.dirs.push((dst, meta));
                }
                Some(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("/{} is not a directory", cur.display()),
                    ));
                }
                None => {
                    std::fs::create_dir(&dst)?;
                    self.set_owner(&dst, owner.0, owner.1)?;
                    self.dirs.push((
                        dst,
                        Meta {
                            mode: 0o755,
                            uid: owner.0,
                            gid: owner.1,
                            mtime: self.now,
                        },
                    ));
                }
            }
        }
        Ok(())
    }

    /// Writes one entry at the container path `target` (its parent resolved through symlinks,
    /// the entry itself replacing whatever is there unless both are directories). Returns the
    /// resolved path written.
    pub fn put(
        &mut self,
        target: &Path,
        item: Item<'_>,
        meta: Meta,
        parent_owner: (u32, u32),
    ) -> io::Result<PathBuf> {
        let (parent, name) = match (target.parent(), target.file_name()) {
            (Some(p), Some(n)) => (p.to_path_buf(), n.to_os_string()),
            _ => {
                // The root itself: only its metadata can change.
                if matches!(item, Item::Dir) {
                    return Ok(PathBuf::new());
                }
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot replace the root directory",
                ));
            }
        };
        let parent = self.resolve_dir(&parent)?;
        self.ensure_dir(&parent, parent_owner)?;
        let rel = parent.join(&name);
        let dst = self.changes.join(&rel);
        self.entries += 1;
        let existing = dst.symlink_metadata().ok();
        if let Item::Dir = item {
            match &existing {
                Some(m) if m.is_dir() => {}
                Some(_) => {
                    remove_any(&dst)?;
                    std::fs::create_dir(&dst)?;
                }
                None => std::fs::create_dir(&dst)?,
            }
            self.set_owner(&dst, meta.uid, meta.gid)?;
            self.dirs.retain(|(p, _)| p != &dst);
            self.dirs.push((dst, meta));
            self.resolved.insert(target.to_path_buf(), rel.clone());
            return Ok(rel);
        }
        if existing.is_some() {
            remove_any(&dst)?;
        }
        match item {
            Item::Dir => unreachable!("handled above"),
            Item::File(r) => {
                let mut f = File::options().write(true).create_new(true).open(&dst)?;
                io::copy(r, &mut f)?;
                drop(f);
            }
            Item::Symlink(t) => std::os::unix::fs::symlink(&t, &dst)?,
            Item::HardLink(t) => {
                std::fs::hard_link(self.changes.join(t), &dst)?;
                return Ok(rel);
            }
            Item::Fifo | Item::Char(_) | Item::Block(_) => {
                let (kind, dev) = match item {
                    Item::Fifo => (rustix::fs::FileType::Fifo, 0),
                    Item::Char(d) => (rustix::fs::FileType::CharacterDevice, d),
                    Item::Block(d) => (rustix::fs::FileType::BlockDevice, d),
                    _ => unreachable!("matched above"),
                };
                if kind != rustix::fs::FileType::Fifo && !self.privileged {
                    // Only root makes device nodes; the entry is skipped, as on load.
                    self.entries -= 1;
                    return Ok(rel);
                }
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &dst,
                    kind,
                    Mode::from_raw_mode(meta.mode & 0o777),
                    dev,
                )?;
            }
        }
        self.set_meta(&dst, meta)?;
        Ok(rel)
    }

    /// The resolved form of a directory path, remembered per directory (a copy of a tree
    /// resolves each directory once).
    fn resolve_dir(&mut self, dir: &Path) -> io::Result<PathBuf> {
        if let Some(r) = self.resolved.get(dir) {
            return Ok(r.clone());
        }
        let r = self.resolve(dir)?;
        self.resolved.insert(dir.to_path_buf(), r.clone());
        Ok(r)
    }

    fn set_owner(&self, p: &Path, uid: u32, gid: u32) -> io::Result<()> {
        if !self.privileged {
            return Ok(());
        }
        rustix::fs::chownat(
            rustix::fs::CWD,
            p,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    }

    /// Owner (first: chown clears set-id bits), mode, then time.
    fn set_meta(&self, p: &Path, meta: Meta) -> io::Result<()> {
        self.set_owner(p, meta.uid, meta.gid)?;
        let symlink = p.symlink_metadata()?.file_type().is_symlink();
        if !symlink {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(meta.mode))?;
        }
        set_mtime(p, meta.mtime)
    }

    /// Applies directory modes and times, deepest first; returns the entries written.
    pub fn finish(mut self) -> io::Result<u64> {
        self.dirs
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (p, meta) in std::mem::take(&mut self.dirs) {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(meta.mode))?;
            set_mtime(&p, meta.mtime)?;
        }
        Ok(self.entries)
    }
}

/// Sets a path's modification (and access) time, not following a final symlink.
pub fn set_mtime(p: &Path, (sec, nsec): (i64, i64)) -> io::Result<()> {
    let t = Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

/// Removes a file, symlink or directory tree (never following symlinks).
pub fn remove_any(p: &Path) -> io::Result<()> {
    match p.symlink_metadata() {
        Ok(m) if m.is_dir() => {
            // A read-only directory of a finished copy must be opened up to be emptied.
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700));
            for e in std::fs::read_dir(p)? {
                remove_any(&e?.path())?;
            }
            std::fs::remove_dir(p)
        }
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A name for a path component.
pub fn name_of(p: &Path) -> OsString {
    p.file_name().map(|n| n.to_os_string()).unwrap_or_default()
}

//! A step's changes as layer entries, from either source the runtime leaves:
//!
//! - an overlay upper directory (or a COPY changes directory, which has the same form): every
//!   entry in it is a change; a 0:0 character device is a deletion (`.wh.NAME`), a directory
//!   with `trusted.overlay.opaque=y` replaced the one below (`DIR/.wh..wh..opq`);
//! - the copy fallback: the container's whole tree compared with the layers it started from,
//!   entry by entry (type, mode, owner, size, time, link target, xattrs); what vanished
//!   becomes `.wh.NAME`.
//!
//! Both put the directories above a change in front of it, so both give the same layer for
//! the same change. Hard links between files of the layer stay hard links.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::tar::{EntryHeader, EntryKind, TarWriter};
use crate::fs::stack::{DirView, Stack};
use crate::fs::{
    OPAQUE_MARKER, OPAQUE_XATTR, WHITEOUT_PREFIX, is_whiteout_device, layer_xattrs,
    layer_xattrs_named,
};

/// How entries are written.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiffOptions {
    /// Times later than this are written as this (SOURCE_DATE_EPOCH), and set so on disk too,
    /// so a snapshot made from the directory matches the tar.
    pub clamp_mtime: Option<i64>,
    /// Without root, files belong to the build's user: write them as root's, as a user
    /// namespace would show them.
    pub map_user_to_root: Option<(u32, u32)>,
    /// Remove overlayfs's own bookkeeping xattrs (all but the opaque flag), so the upper
    /// directory can serve as a lower one.
    pub strip_overlay_xattrs: bool,
    /// The time of deletions found by comparing trees.
    pub now: i64,
}

/// What a walk found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffStats {
    /// Entries written (directories above changes included).
    pub entries: u64,
    /// Whether any deletion or opaque directory was written.
    pub whiteouts: bool,
    /// Of an overlay-form directory: its entries (at every depth), and the bytes of its
    /// regular files (what the store records of a snapshot made from it).
    pub tree_entries: u64,
    /// See `tree_entries`.
    pub tree_bytes: u64,
}

/// Why a layer could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// Reading the tree or writing the tar failed.
    #[error("failed to read {path}")]
    Io {
        /// The entry.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// overlayfs recorded a renamed directory or a metadata-only copy, which an upper
    /// directory alone cannot express.
    #[error(
        "overlayfs wrote {what} for {path} (its redirect_dir or metacopy feature is on); set FERRY_ROOTFS=copy to build without overlayfs"
    )]
    OverlayFeature {
        /// `a redirect` or `a metacopy`.
        what: &'static str,
        /// The entry.
        path: PathBuf,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DiffError + '_ {
    move |source| DiffError::Io {
        path: path.to_path_buf(),
        source,
    }
}

struct Emitter<'a, W: Write> {
    tar: &'a mut TarWriter<W>,
    opts: DiffOptions,
    links: HashMap<(u64, u64), Vec<u8>>,
    /// Directories above the current position not written yet (written before the first
    /// change below them).
    pending: Vec<(PathBuf, Vec<u8>, std::fs::Metadata)>,
    stats: DiffStats,
}

impl<'a, W: Write> Emitter<'a, W> {
    fn new(tar: &'a mut TarWriter<W>, opts: DiffOptions) -> Self {
        Emitter {
            tar,
            opts,
            links: HashMap::new(),
            pending: Vec::new(),
            stats: DiffStats::default(),
        }
    }

    fn flush_pending(&mut self) -> Result<(), DiffError> {
        for (path, name, meta) in std::mem::take(&mut self.pending) {
            self.entry(&path, name, &meta, false, None)?;
        }
        Ok(())
    }

    fn header(&self, name: Vec<u8>, kind: EntryKind, m: &std::fs::Metadata) -> EntryHeader {
        let mut h = EntryHeader::new(name, kind);
        h.mode = m.mode() & 0o7777;
        let (mut uid, mut gid) = (m.uid(), m.gid());
        if let Some((u, g)) = self.opts.map_user_to_root {
            if uid == u {
                uid = 0;
            }
            if gid == g {
                gid = 0;
            }
        }
        h.uid = u64::from(uid);
        h.gid = u64::from(gid);
        h.mtime = m.mtime();
        if let Some(c) = self.opts.clamp_mtime {
            h.mtime = h.mtime.min(c);
        }
        h
    }

    /// Writes the entry at `path` (named `name` in the layer); a regular file may come
    /// open already, with its xattr names.
    fn entry(
        &mut self,
        path: &Path,
        name: Vec<u8>,
        m: &std::fs::Metadata,
        opaque: bool,
        open: Option<(File, Vec<u8>)>,
    ) -> Result<(), DiffError> {
        self.flush_pending()?;
        let ft = m.file_type();
        if let Some(c) = self.opts.clamp_mtime
            && m.mtime() > c
        {
            crate::fs::writer::set_mtime(path, (c, 0)).map_err(io_err(path))?;
        }
        if is_whiteout_device(m) {
            let mut h = self.header(whiteout_name(&name), EntryKind::File, m);
            h.mode = 0o600;
            self.stats.whiteouts = true;
            return self.tar.append(&h, None).map_err(io_err(path));
        }
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_char_device() {
            EntryKind::Char
        } else if ft.is_block_device() {
            EntryKind::Block
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else {
            // Sockets do not go into layers.
            return Ok(());
        };
        let mut h = self.header(name.clone(), kind, m);
        if kind != EntryKind::Symlink {
            h.xattrs = match &open {
                Some((f, names)) => layer_xattrs_named(f, names),
                None => layer_xattrs(path),
            };
        }
        match kind {
            EntryKind::Symlink => {
                h.link = std::fs::read_link(path)
                    .map_err(io_err(path))?
                    .into_os_string()
                    .into_encoded_bytes();
            }
            EntryKind::Char | EntryKind::Block => {
                let rdev = m.rdev();
                h.dev = (libc::major(rdev), libc::minor(rdev));
            }
            EntryKind::File if m.nlink() > 1 => {
                if let Some(first) = self.links.get(&(m.dev(), m.ino())) {
                    h.kind = EntryKind::HardLink;
                    h.link = first.clone();
                    h.xattrs.clear();
                } else {
                    self.links.insert((m.dev(), m.ino()), name.clone());
                }
            }
            _ => {}
        }
        if h.kind == EntryKind::File {
            h.size = m.len();
            let mut f = match open {
                Some((f, _)) => f,
                None => File::open(path).map_err(io_err(path))?,
            };
            self.tar.append(&h, Some(&mut f)).map_err(io_err(path))?;
        } else {
            self.tar.append(&h, None).map_err(io_err(path))?;
        }
        self.stats.entries += 1;
        if opaque {
            let mut marker = name;
            marker.extend_from_slice(b"/");
            marker.extend_from_slice(OPAQUE_MARKER.as_bytes());
            let mut o = self.header(marker, EntryKind::File, m);
            o.mode &= 0o777;
            self.tar.append(&o, None).map_err(io_err(path))?;
            self.stats.whiteouts = true;
        }
        Ok(())
    }

    fn deletion(&mut self, parent: &[u8], name: &OsStr) -> Result<(), DiffError> {
        self.flush_pending()?;
        let mut layer_name = parent.to_vec();
        if !layer_name.is_empty() {
            layer_name.push(b'/');
        }
        layer_name.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
        layer_name.extend_from_slice(name.as_bytes());
        let mut h = EntryHeader::new(layer_name, EntryKind::File);
        h.mode = 0o600;
        h.mtime = self
            .opts
            .clamp_mtime
            .map_or(self.opts.now, |c| c.min(self.opts.now));
        self.stats.whiteouts = true;
        self.stats.entries += 1;
        self.tar.append(&h, None).map_err(io_err(Path::new(name)))
    }
}

fn whiteout_name(name: &[u8]) -> Vec<u8> {
    let (dir, base) = match name.iter().rposition(|b| *b == b'/') {
        Some(i) => (&name[..=i], &name[i + 1..]),
        None => (&b""[..], name),
    };
    let mut out = dir.to_vec();
    out.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
    out.extend_from_slice(base);
    out
}

fn join(parent: &[u8], name: &OsStr) -> Vec<u8> {
    let mut v = parent.to_vec();
    if !v.is_empty() {
        v.push(b'/');
    }
    v.extend_from_slice(name.as_bytes());
    v
}

fn sorted_names(dir: &Path) -> Result<Vec<OsString>, DiffError> {
    let mut names: Vec<OsString> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_err(dir))?;
    names.sort();
    Ok(names)
}

/// Writes every entry of an overlay-form directory (an upper directory, or COPY's changes).
pub fn from_upper<W: Write>(
    dir: &Path,
    tar: &mut TarWriter<W>,
    opts: DiffOptions,
) -> Result<DiffStats, DiffError> {
    let mut e = Emitter::new(tar, opts);
    if opts.strip_overlay_xattrs {
        strip_overlay_xattrs(dir)?;
    }
    walk_upper(&mut e, dir, &[])?;
    Ok(e.stats)
}

/// A directory's entries sorted by name, with their metadata (read relative to the open
/// directory, not by walking each entry's whole path again).
fn sorted_entries(dir: &Path) -> Result<Vec<(OsString, std::fs::Metadata)>, DiffError> {
    let mut entries = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .map(|e| {
            let e = e?;
            let m = e.metadata()?;
            Ok((e.file_name(), m))
        })
        .collect::<io::Result<Vec<_>>>()
        .map_err(io_err(dir))?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

fn walk_upper<W: Write>(e: &mut Emitter<'_, W>, dir: &Path, rel: &[u8]) -> Result<(), DiffError> {
    use rustix::fs::{Mode, OFlags};
    let dir_fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|err| io_err(dir)(err.into()))?;
    for (name, m) in sorted_entries(dir)? {
        let path = dir.join(&name);
        e.stats.tree_entries += 1;
        if m.is_file() {
            e.stats.tree_bytes += m.len();
        }
        let layer_name = join(rel, &name);
        if m.is_dir() {
            let xattr = |n: &str| {
                let mut buf = [0u8; 8];
                rustix::fs::lgetxattr(&path, n, &mut buf[..])
                    .ok()
                    .map(|len| buf[..len].to_vec())
            };
            if xattr("trusted.overlay.redirect").is_some() {
                return Err(DiffError::OverlayFeature {
                    what: "a redirect",
                    path,
                });
            }
            let opaque = xattr(OPAQUE_XATTR).is_some_and(|v| v == b"y");
            if e.opts.strip_overlay_xattrs {
                strip_overlay_xattrs(&path)?;
            }
            e.entry(&path, layer_name.clone(), &m, opaque, None)?;
            walk_upper(e, &path, &layer_name)?;
        } else if m.is_file() {
            // Opened once, and every question about the file asked through it: each
            // path-based call walks the whole path again.
            let f = rustix::fs::openat(
                &dir_fd,
                name.as_os_str(),
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map(File::from)
            .map_err(|err| io_err(&path)(err.into()))?;
            let names = crate::fs::xattr_names_of(&f);
            let overlay: Vec<&[u8]> = overlay_bookkeeping(&names).collect();
            if overlay.contains(&&b"trusted.overlay.metacopy"[..]) {
                return Err(DiffError::OverlayFeature {
                    what: "a metacopy",
                    path,
                });
            }
            if e.opts.strip_overlay_xattrs {
                for name in overlay {
                    let _ = rustix::fs::fremovexattr(&f, name);
                }
            }
            e.entry(&path, layer_name, &m, false, Some((f, names)))?;
        } else {
            if e.opts.strip_overlay_xattrs && !m.file_type().is_symlink() {
                strip_overlay_xattrs(&path)?;
            }
            e.entry(&path, layer_name, &m, false, None)?;
        }
    }
    Ok(())
}

/// Of NUL-separated xattr names, overlayfs's own bookkeeping: `trusted.overlay.*` but the
/// opaque flag.
fn overlay_bookkeeping(names: &[u8]) -> impl Iterator<Item = &[u8]> {
    names
        .split(|b| *b == 0)
        .filter(|n| n.starts_with(b"trusted.overlay.") && *n != OPAQUE_XATTR.as_bytes())
}

/// Removes overlayfs's bookkeeping xattrs (see [`overlay_bookkeeping`]).
fn strip_overlay_xattrs(path: &Path) -> Result<(), DiffError> {
    let mut names = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names[..]) else {
        return Ok(());
    };
    for name in overlay_bookkeeping(&names[..n]) {
        let _ = rustix::fs::lremovexattr(path, name);
    }
    Ok(())
}

/// Writes what differs between `after` (a whole tree) and the merged `before` stack.
pub fn from_trees<W: Write>(
    after: &Path,
    before: &Stack,
    tar: &mut TarWriter<W>,
    opts: DiffOptions,
) -> Result<DiffStats, DiffError> {
    let mut e = Emitter::new(tar, opts);
    compare(&mut e, after, &[], Some(&before.root()), before)?;
    Ok(e.stats)
}

fn compare<W: Write>(
    e: &mut Emitter<'_, W>,
    dir: &Path,
    rel: &[u8],
    before: Option<&DirView>,
    stack: &Stack,
) -> Result<(), DiffError> {
    let after = sorted_names(dir)?;
    let mut old = match before {
        Some(v) => stack.children(v).map_err(io_err(dir))?,
        None => Default::default(),
    };
    // Deletions first, in name order, then what is there now.
    let gone: Vec<OsString> = old.keys().filter(|k| !after.contains(k)).cloned().collect();
    for name in &gone {
        e.deletion(rel, name)?;
    }
    for name in after {
        let path = dir.join(&name);
        let m = path.symlink_metadata().map_err(io_err(&path))?;
        let layer_name = join(rel, &name);
        let was = old.remove(&name);
        match was {
            Some(b) if m.is_dir() && b.meta.is_dir() => {
                let pushed = if changed(&path, &m, &b.path, &b.meta) {
                    e.entry(&path, layer_name.clone(), &m, false, None)?;
                    false
                } else {
                    e.pending
                        .push((path.clone(), layer_name.clone(), m.clone()));
                    true
                };
                let mark = e.pending.len();
                compare(e, &path, &layer_name, b.dir.as_ref(), stack)?;
                // Nothing below changed (nothing flushed it): the directory needs no entry.
                if pushed && e.pending.len() == mark {
                    e.pending.pop();
                }
            }
            Some(b) if !changed(&path, &m, &b.path, &b.meta) => {}
            _ => {
                e.entry(&path, layer_name.clone(), &m, false, None)?;
                if m.is_dir() {
                    compare(e, &path, &layer_name, None, stack)?;
                }
            }
        }
    }
    Ok(())
}

/// Whether an entry differs from what was there before (as Docker's tree comparison judges:
/// type, mode, owner, size, time, device, link target; plus the layer's xattrs).
fn changed(a_path: &Path, a: &std::fs::Metadata, b_path: &Path, b: &std::fs::Metadata) -> bool {
    if a.mode() != b.mode() || a.uid() != b.uid() || a.gid() != b.gid() {
        return true;
    }
    if (a.mtime(), a.mtime_nsec()) != (b.mtime(), b.mtime_nsec()) {
        return true;
    }
    let ft = a.file_type();
    if ft.is_file() && a.len() != b.len() {
        return true;
    }
    if (ft.is_char_device() || ft.is_block_device()) && a.rdev() != b.rdev() {
        return true;
    }
    if ft.is_symlink() {
        return std::fs::read_link(a_path).ok() != std::fs::read_link(b_path).ok();
    }
    layer_xattrs(a_path) != layer_xattrs(b_path)
}

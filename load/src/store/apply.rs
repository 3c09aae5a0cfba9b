//! Applying one layer tar to a snapshot directory that holds only that layer's changes, in
//! the form overlayfs reads as a lower directory (as Docker's overlay2 and containerd's
//! overlayfs snapshotter store them):
//!
//! | in the tar (image-spec `layer.md`) | in an overlay snapshot (root)     | in a portable snapshot (not root) |
//! |------------------------------------|-----------------------------------|-----------------------------------|
//! | `dir/.wh.NAME`                     | `dir/NAME`, char device 0:0       | `dir/.wh.NAME`, empty file        |
//! | `dir/.wh..wh..opq`                 | `trusted.overlay.opaque=y` on dir | `dir/.wh..wh..opq`, empty file    |
//!
//! The portable form is the tar's own: it needs neither `mknod` nor `trusted.*` xattrs, which
//! an unprivileged user cannot create, and [`super::materialize()`] understands both. Which one a
//! snapshot uses is recorded in its `info.json`.
//!
//! Rules, in the order they matter:
//! - every path is confined ([`crate::layer::classify`]) and resolved component by component
//!   below the snapshot without following symlinks; an entry below a symlink of the same layer
//!   is refused;
//! - a whiteout hides lower layers only: an entry of the same layer stays, before or after it;
//!   a directory that replaces a whiteout of its own layer becomes opaque, so the lower
//!   directory stays hidden;
//! - an existing entry is replaced, except directory over directory, which only updates
//!   metadata;
//! - ownership first (`lchown` clears setuid bits and file capabilities), then xattrs, then the
//!   mode, then times; directory modes and times last, deepest first, so read-only
//!   directories can still be filled;
//! - hard links may point at files of earlier layers: such links are resolved when the
//!   layer's place in a chain is known ([`super::snapshot::resolve_pending`]), by copying the
//!   file up, as overlayfs itself would;
//! - device nodes are created as root and skipped (counted) otherwise; xattrs that the
//!   filesystem or the user cannot set are skipped; `trusted.overlay.*` from a tar is dropped,
//!   since forged overlay metadata (redirects, opaque flags) would change what the kernel shows.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use crate::error::LayerError;
use crate::layer::{Action, LayerEntry, OPAQUE_MARKER, SymlinkGuard, WHITEOUT_PREFIX, classify};
use crate::path::{self, Components};
use crate::scan::{LayerSink, LayerStats};
use crate::store::fsutil::{self, is_whiteout, kind_at, open_child_dir, remove_at};
use crate::tar::{Header, Kind};

/// The xattr overlayfs reads to make a directory opaque.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// How often (bytes written) free space is checked.
const SPACE_CHECK_BYTES: u64 = 64 * 1024 * 1024;
/// How often (entries) free space and inodes are checked.
const SPACE_CHECK_ENTRIES: u64 = 4096;

/// How whiteouts and opaque directories are represented (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotFormat {
    /// overlayfs's own: whiteout devices and the opaque xattr. Needs root.
    Overlay,
    /// The OCI tar form: `.wh.` files. Works for anyone.
    Portable,
}

/// How a layer is applied.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    /// The representation of whiteouts.
    pub format: SnapshotFormat,
    /// Whether ownership and device nodes can be set (running as root).
    pub privileged: bool,
    /// Unpacking stops when the filesystem would have less than this free.
    pub min_free: u64,
}

/// A hard link whose target was not in its own layer.
#[derive(Debug, Clone)]
pub struct PendingLink {
    /// The link's path.
    pub link: Components,
    /// The target's path (in some lower layer).
    pub target: Components,
}

/// What applying a layer produced besides the files.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Sizes and counts.
    pub stats: LayerStats,
    /// Hard links left for the chain to resolve.
    pub pending: Vec<PendingLink>,
}

/// Shared between the stage that creates appliers and reads their reports after the scan.
pub type Reports = Rc<RefCell<HashMap<usize, ApplyReport>>>;

struct DirMeta {
    path: Components,
    mode: u32,
    times: (i64, u32, i64, u32),
}

/// Applies one layer's entries below `root` (see the module comment).
pub struct Applier {
    root: OwnedFd,
    opts: ApplyOptions,
    guard: SymlinkGuard,
    dirs: Vec<DirMeta>,
    dir_index: HashMap<Components, usize>,
    pending: Vec<PendingLink>,
    stats: LayerStats,
    /// The last parent directory opened, which the next entry usually shares.
    cache: Option<(Components, OwnedFd)>,
    since_check: (u64, u64),
    buf: Vec<u8>,
    report_to: Option<(Reports, usize)>,
}

fn io_err<'h>(action: &'static str, h: &'h Header) -> impl FnOnce(Errno) -> LayerError + 'h {
    move |e| LayerError::Io {
        action,
        entry: h.display_path(),
        source: e.into(),
    }
}

/// Sets the owner of `name` in `dir` without following a symlink there; `None` leaves it.
fn chown_nofollow(
    dir: BorrowedFd<'_>,
    name: &[u8],
    owner: Option<(Uid, Gid)>,
    h: &Header,
) -> Result<(), LayerError> {
    if let Some((u, g)) = owner {
        rustix::fs::chownat(dir, name, Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io_err("chown", h))?;
    }
    Ok(())
}

impl Applier {
    /// An applier writing below the directory `root` (which should be empty).
    pub fn new(root: OwnedFd, opts: ApplyOptions) -> Self {
        Applier {
            root,
            opts,
            guard: SymlinkGuard::default(),
            dirs: Vec::new(),
            dir_index: HashMap::new(),
            pending: Vec::new(),
            stats: LayerStats::default(),
            cache: None,
            since_check: (0, 0),
            buf: vec![0; 256 * 1024],
            report_to: None,
        }
    }

    /// Reports (stats and pending links) go to `reports[id]` when the layer is finished.
    pub fn reporting_to(mut self, reports: Reports, id: usize) -> Self {
        self.report_to = Some((reports, id));
        self
    }

    /// Hard links whose target must come from a lower layer.
    pub fn take_pending(&mut self) -> Vec<PendingLink> {
        std::mem::take(&mut self.pending)
    }

    fn check_space(&mut self, h: &Header, force: bool) -> Result<(), LayerError> {
        if !force
            && self.since_check.0 < SPACE_CHECK_BYTES
            && self.since_check.1 < SPACE_CHECK_ENTRIES
        {
            return Ok(());
        }
        self.since_check = (0, 0);
        let Ok(st) = rustix::fs::fstatvfs(&self.root) else {
            return Ok(());
        };
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        let inodes_short = st.f_files > 0 && st.f_favail < 1000;
        if free < self.opts.min_free || inodes_short {
            return Err(LayerError::DiskFull {
                entry: h.display_path(),
                free,
                reserve: self.opts.min_free,
            });
        }
        Ok(())
    }

    /// Opens the directory `comps` below the root, creating missing parents when `create`.
    fn walk(
        &self,
        comps: &[Vec<u8>],
        create: bool,
        h: &Header,
    ) -> Result<Option<OwnedFd>, LayerError> {
        let mut cur = rustix::fs::openat(
            &self.root,
            c".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err("open the snapshot for", h))?;
        for (i, c) in comps.iter().enumerate() {
            let next = match open_child_dir(cur.as_fd(), c) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                    if !create {
                        return Ok(None);
                    }
                    // Parents a tar does not list are implied: root-owned, 0755, as Docker
                    // and containerd create them (apple/container#1797).
                    match rustix::fs::mkdirat(&cur, c.as_slice(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(io_err("create the parent of", h)(e)),
                    }
                    open_child_dir(cur.as_fd(), c).map_err(|e| LayerError::Io {
                        action: "open the parent of",
                        entry: h.display_path(),
                        source: e,
                    })?
                }
                Err(e)
                    if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error())
                        || e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) =>
                {
                    let st = kind_at(cur.as_fd(), c).ok().flatten();
                    if create
                        && self.opts.format == SnapshotFormat::Overlay
                        && st.as_ref().is_some_and(is_whiteout)
                    {
                        // `.wh.d` then `d/x` in one layer: d becomes a directory that still
                        // hides the lower d.
                        rustix::fs::unlinkat(&cur, c.as_slice(), AtFlags::empty())
                            .map_err(io_err("replace the whiteout above", h))?;
                        rustix::fs::mkdirat(&cur, c.as_slice(), Mode::from_raw_mode(0o755))
                            .map_err(io_err("create the parent of", h))?;
                        let fd = open_child_dir(cur.as_fd(), c).map_err(|e| LayerError::Io {
                            action: "open the parent of",
                            entry: h.display_path(),
                            source: e,
                        })?;
                        set_opaque(fd.as_fd()).map_err(|e| LayerError::Io {
                            action: "mark opaque the parent of",
                            entry: h.display_path(),
                            source: e,
                        })?;
                        fd
                    } else {
                        let what = match st.map(|s| FileType::from_raw_mode(s.st_mode)) {
                            Some(FileType::Symlink) => "a symlink",
                            _ => "not a directory",
                        };
                        return Err(LayerError::Unsafe {
                            entry: h.display_path(),
                            reason: format!(
                                "its parent `{}` is {what}",
                                path::display(&comps[..=i])
                            ),
                        });
                    }
                }
                Err(e) => {
                    return Err(LayerError::Io {
                        action: "open the parent of",
                        entry: h.display_path(),
                        source: e,
                    });
                }
            };
            cur = next;
        }
        Ok(Some(cur))
    }

    /// The parent directory of an entry, from the cache when possible.
    fn parent(&mut self, comps: &Components, h: &Header) -> Result<BorrowedFd<'_>, LayerError> {
        let hit = self.cache.as_ref().is_some_and(|(c, _)| c == comps);
        if !hit {
            let fd = self.walk(comps, true, h)?.expect("created");
            self.cache = Some((comps.clone(), fd));
        }
        Ok(self.cache.as_ref().expect("just set").1.as_fd())
    }

    /// Forgets cached directories at or below `comps` (they are about to be replaced).
    fn invalidate(&mut self, comps: &[Vec<u8>]) {
        if self
            .cache
            .as_ref()
            .is_some_and(|(c, _)| c.starts_with(comps))
        {
            self.cache = None;
        }
    }

    fn record_dir(&mut self, path: Components, h: &Header) {
        let (at, an) = h.atime.unwrap_or((h.mtime, h.mtime_nsec));
        let meta = DirMeta {
            path: path.clone(),
            mode: h.mode,
            times: (at, an, h.mtime, h.mtime_nsec),
        };
        match self.dir_index.get(&path) {
            Some(&i) => self.dirs[i] = meta,
            None => {
                self.dir_index.insert(path, self.dirs.len());
                self.dirs.push(meta);
            }
        }
    }

    fn owner(&self, h: &Header) -> Result<Option<(Uid, Gid)>, LayerError> {
        if !self.opts.privileged {
            return Ok(None);
        }
        let uid = u32::try_from(h.uid).ok().filter(|&u| u != u32::MAX);
        let gid = u32::try_from(h.gid).ok().filter(|&g| g != u32::MAX);
        match (uid, gid) {
            (Some(u), Some(g)) => Ok(Some((Uid::from_raw(u), Gid::from_raw(g)))),
            _ => Err(LayerError::Unsafe {
                entry: h.display_path(),
                reason: format!("owner {}:{} is out of range", h.uid, h.gid),
            }),
        }
    }

    fn set_xattrs(&self, fd: BorrowedFd<'_>, h: &Header) {
        for (name, value) in &h.xattrs {
            if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
                tracing::debug!(
                    "dropping {} on {}",
                    String::from_utf8_lossy(name),
                    h.display_path()
                );
                continue;
            }
            if let Err(e) = rustix::fs::fsetxattr(fd, name.as_slice(), value, XattrFlags::empty()) {
                // Filesystems without xattrs, and users without the right to set
                // security.* or trusted.*, are normal: the content is what matters.
                tracing::debug!(
                    "cannot set xattr {} on {}: {e}",
                    String::from_utf8_lossy(name),
                    h.display_path()
                );
            }
        }
    }

    fn create(
        &mut self,
        e: &LayerEntry,
        h: &Header,
        data: &mut dyn Read,
    ) -> Result<(), LayerError> {
        let owner = self.owner(h)?;
        let Some(name) = e.name.clone() else {
            // The layer's root directory: its metadata becomes the snapshot root's.
            if let Some((u, g)) = owner {
                rustix::fs::fchown(&self.root, Some(u), Some(g)).map_err(io_err("chown", h))?;
            }
            self.set_xattrs(self.root.as_fd(), h);
            self.record_dir(Vec::new(), h);
            return Ok(());
        };
        let full = e.components();
        match h.kind {
            Kind::Dir => {
                let overlay = self.opts.format == SnapshotFormat::Overlay;
                let dir = self.parent(&e.parent, h)?;
                let mut replaced_whiteout = false;
                match rustix::fs::mkdirat(dir, name.as_slice(), Mode::from_raw_mode(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        let st = kind_at(dir, &name).map_err(|e| LayerError::Io {
                            action: "inspect",
                            entry: h.display_path(),
                            source: e,
                        })?;
                        if !st.as_ref().is_some_and(|s| {
                            FileType::from_raw_mode(s.st_mode) == FileType::Directory
                        }) {
                            replaced_whiteout = overlay && st.as_ref().is_some_and(is_whiteout);
                            remove_at(dir, &name).map_err(|e| LayerError::Io {
                                action: "replace",
                                entry: h.display_path(),
                                source: e,
                            })?;
                            rustix::fs::mkdirat(dir, name.as_slice(), Mode::from_raw_mode(0o700))
                                .map_err(io_err("create directory", h))?;
                        }
                    }
                    Err(e) => return Err(io_err("create directory", h)(e)),
                }
                let fd = open_child_dir(dir, &name).map_err(|e| LayerError::Io {
                    action: "open directory",
                    entry: h.display_path(),
                    source: e,
                })?;
                if let Some((u, g)) = owner {
                    rustix::fs::fchown(&fd, Some(u), Some(g)).map_err(io_err("chown", h))?;
                }
                self.set_xattrs(fd.as_fd(), h);
                if replaced_whiteout {
                    set_opaque(fd.as_fd()).map_err(|e| LayerError::Io {
                        action: "mark opaque",
                        entry: h.display_path(),
                        source: e,
                    })?;
                }
                self.record_dir(full, h);
            }
            Kind::File => {
                let file = self.create_file(&e.parent, &name, &full, h)?;
                let mut file = std::fs::File::from(file);
                let mut left = h.size;
                while left > 0 {
                    let want = self
                        .buf
                        .len()
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = data
                        .read(&mut self.buf[..want])
                        .map_err(|e| LayerError::Io {
                            action: "read",
                            entry: h.display_path(),
                            source: e,
                        })?;
                    if n == 0 {
                        return Err(LayerError::Io {
                            action: "read",
                            entry: h.display_path(),
                            source: io::ErrorKind::UnexpectedEof.into(),
                        });
                    }
                    file.write_all(&self.buf[..n]).map_err(|e| LayerError::Io {
                        action: "write",
                        entry: h.display_path(),
                        source: e,
                    })?;
                    left -= n as u64;
                    self.since_check.0 += n as u64;
                    self.check_space(h, false)?;
                }
                self.stats.bytes += h.size;
                if let Some((u, g)) = owner {
                    rustix::fs::fchown(&file, Some(u), Some(g)).map_err(io_err("chown", h))?;
                }
                self.set_xattrs(file.as_fd(), h);
                rustix::fs::fchmod(&file, Mode::from_raw_mode(h.mode))
                    .map_err(io_err("chmod", h))?;
                rustix::fs::futimens(&file, &times(h)).map_err(io_err("set times of", h))?;
            }
            Kind::Symlink => {
                let dir = self.parent(&e.parent, h)?;
                let target = h.link.as_slice();
                if let Err(err) = rustix::fs::symlinkat(target, dir, name.as_slice()) {
                    if err != Errno::EXIST {
                        return Err(io_err("create symlink", h)(err));
                    }
                    remove_at(dir, &name).map_err(|e| LayerError::Io {
                        action: "replace",
                        entry: h.display_path(),
                        source: e,
                    })?;
                    self.invalidate(&full);
                    let dir = self.parent(&e.parent, h)?;
                    rustix::fs::symlinkat(target, dir, name.as_slice())
                        .map_err(io_err("create symlink", h))?;
                }
                let dir = self.parent(&e.parent, h)?;
                chown_nofollow(dir, name.as_slice(), owner, h)?;
                rustix::fs::utimensat(dir, name.as_slice(), &times(h), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(io_err("set times of", h))?;
            }
            Kind::Hardlink => {
                let target = e.link.clone().expect("classify sets hard link targets");
                let (tname, tparent) = target.split_last().expect("not empty");
                let tdir = self.walk(tparent, false, h)?;
                let found = match &tdir {
                    Some(d) => kind_at(d.as_fd(), tname).map_err(|e| LayerError::Io {
                        action: "inspect the target of",
                        entry: h.display_path(),
                        source: e,
                    })?,
                    None => None,
                };
                let in_this_layer = match &found {
                    None => false,
                    Some(st) if self.opts.format == SnapshotFormat::Overlay && is_whiteout(st) => {
                        false
                    }
                    Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                        return Err(LayerError::Unsafe {
                            entry: h.display_path(),
                            reason: "hard link to a directory".into(),
                        });
                    }
                    Some(_) => true,
                };
                // Make sure the link's own parent exists even when the link waits.
                let dir = self.parent(&e.parent, h)?;
                if !in_this_layer {
                    // Remove anything in the way now; the copy is made at commit time.
                    remove_at(dir, &name).map_err(|e| LayerError::Io {
                        action: "replace",
                        entry: h.display_path(),
                        source: e,
                    })?;
                    self.pending.push(PendingLink { link: full, target });
                    return Ok(());
                }
                let tdir = tdir.expect("found");
                if let Err(err) = rustix::fs::linkat(
                    &tdir,
                    tname.as_slice(),
                    dir,
                    name.as_slice(),
                    AtFlags::empty(),
                ) {
                    if err != Errno::EXIST {
                        return Err(io_err("create hard link", h)(err));
                    }
                    remove_at(dir, &name).map_err(|e| LayerError::Io {
                        action: "replace",
                        entry: h.display_path(),
                        source: e,
                    })?;
                    self.invalidate(&full);
                    let dir = self.parent(&e.parent, h)?;
                    rustix::fs::linkat(
                        &tdir,
                        tname.as_slice(),
                        dir,
                        name.as_slice(),
                        AtFlags::empty(),
                    )
                    .map_err(io_err("create hard link", h))?;
                }
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                let file_type = match h.kind {
                    Kind::Char => FileType::CharacterDevice,
                    Kind::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                if file_type != FileType::Fifo && !self.opts.privileged {
                    self.stats.devices_skipped += 1;
                    return Ok(());
                }
                let dev = rustix::fs::makedev(h.dev_major, h.dev_minor);
                let dir = self.parent(&e.parent, h)?;
                let mode = Mode::from_raw_mode(h.mode & 0o777);
                if let Err(err) = rustix::fs::mknodat(dir, name.as_slice(), file_type, mode, dev) {
                    if err != Errno::EXIST {
                        return Err(io_err("create device node", h)(err));
                    }
                    remove_at(dir, &name).map_err(|e| LayerError::Io {
                        action: "replace",
                        entry: h.display_path(),
                        source: e,
                    })?;
                    self.invalidate(&full);
                    let dir = self.parent(&e.parent, h)?;
                    rustix::fs::mknodat(dir, name.as_slice(), file_type, mode, dev)
                        .map_err(io_err("create device node", h))?;
                }
                let dir = self.parent(&e.parent, h)?;
                chown_nofollow(dir, name.as_slice(), owner, h)?;
                rustix::fs::chmodat(
                    dir,
                    name.as_slice(),
                    Mode::from_raw_mode(h.mode),
                    AtFlags::empty(),
                )
                .map_err(io_err("chmod", h))?;
                rustix::fs::utimensat(dir, name.as_slice(), &times(h), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(io_err("set times of", h))?;
            }
            Kind::Other(_) => unreachable!("classify refuses other entry types"),
        }
        Ok(())
    }

    /// Creates a regular file for writing, replacing whatever is in the way.
    fn create_file(
        &mut self,
        parent: &Components,
        name: &[u8],
        full: &Components,
        h: &Header,
    ) -> Result<OwnedFd, LayerError> {
        let flags =
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let dir = self.parent(parent, h)?;
        match rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => Ok(fd),
            Err(Errno::EXIST) => {
                remove_at(dir, name).map_err(|e| LayerError::Io {
                    action: "replace",
                    entry: h.display_path(),
                    source: e,
                })?;
                self.invalidate(full);
                let dir = self.parent(parent, h)?;
                rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600))
                    .map_err(io_err("create", h))
            }
            Err(e) => Err(io_err("create", h)(e)),
        }
    }

    fn whiteout(&mut self, e: &LayerEntry, h: &Header) -> Result<(), LayerError> {
        let name = e.name.clone().expect("whiteouts have names");
        let format = self.opts.format;
        let dir = self.parent(&e.parent, h)?;
        match format {
            SnapshotFormat::Overlay => {
                // An entry of this very layer is not hidden by its own layer's whiteout, and
                // already hides the lower one: nothing to do.
                if kind_at(dir, &name)
                    .map_err(|e| LayerError::Io {
                        action: "inspect",
                        entry: h.display_path(),
                        source: e,
                    })?
                    .is_none()
                {
                    rustix::fs::mknodat(
                        dir,
                        name.as_slice(),
                        FileType::CharacterDevice,
                        Mode::empty(),
                        0,
                    )
                    .map_err(io_err("create whiteout", h))?;
                }
            }
            SnapshotFormat::Portable => {
                let mut marker = WHITEOUT_PREFIX.to_vec();
                marker.extend_from_slice(&name);
                touch(dir, &marker).map_err(io_err("create whiteout", h))?;
            }
        }
        Ok(())
    }

    fn opaque(&mut self, e: &LayerEntry, h: &Header) -> Result<(), LayerError> {
        let format = self.opts.format;
        let dir = self.parent(&e.parent, h)?;
        match format {
            SnapshotFormat::Overlay => set_opaque(dir).map_err(|e| LayerError::Io {
                action: "mark opaque",
                entry: h.display_path(),
                source: e,
            }),
            SnapshotFormat::Portable => touch(dir, OPAQUE_MARKER).map_err(io_err("create", h)),
        }
    }

    /// Restores directory modes and times, deepest (latest created) first.
    fn restore_dirs(&mut self) -> Result<(), LayerError> {
        self.cache = None;
        let dirs = std::mem::take(&mut self.dirs);
        for d in dirs.iter().rev() {
            let fd = if d.path.is_empty() {
                match rustix::fs::openat(
                    &self.root,
                    c".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(_) => continue,
                }
            } else {
                let (name, parent) = d.path.split_last().expect("not empty");
                let h = dummy_header(&d.path);
                // A directory replaced later by something else is simply gone.
                let Ok(Some(p)) = self.walk(parent, false, &h) else {
                    continue;
                };
                let Ok(fd) = open_child_dir(p.as_fd(), name) else {
                    continue;
                };
                fd
            };
            let entry = || path::display(&d.path);
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(d.mode)).map_err(|e| LayerError::Io {
                action: "chmod",
                entry: entry(),
                source: e.into(),
            })?;
            let t = Timestamps {
                last_access: Timespec {
                    tv_sec: d.times.0,
                    tv_nsec: d.times.1.into(),
                },
                last_modification: Timespec {
                    tv_sec: d.times.2,
                    tv_nsec: d.times.3.into(),
                },
            };
            rustix::fs::futimens(&fd, &t).map_err(|e| LayerError::Io {
                action: "set times of",
                entry: entry(),
                source: e.into(),
            })?;
        }
        Ok(())
    }
}

impl LayerSink for Applier {
    fn entry(&mut self, h: &Header, data: &mut dyn Read) -> Result<(), LayerError> {
        let e = classify(h)?;
        self.guard.check(h, &e)?;
        self.stats.entries += 1;
        self.since_check.1 += 1;
        self.check_space(h, false)?;
        match e.action {
            Action::Ignore => Ok(()),
            Action::Opaque => self.opaque(&e, h),
            Action::Whiteout => self.whiteout(&e, h),
            Action::Create => self.create(&e, h, data),
        }
    }

    fn finish(&mut self) -> Result<LayerStats, LayerError> {
        self.restore_dirs()?;
        let stats = self.stats.clone();
        let pending = self.take_pending();
        if let Some((reports, id)) = &self.report_to {
            reports.borrow_mut().insert(
                *id,
                ApplyReport {
                    stats: stats.clone(),
                    pending,
                },
            );
        } else {
            self.pending = pending;
        }
        Ok(stats)
    }
}

fn times(h: &Header) -> Timestamps {
    let (at, an) = h.atime.unwrap_or((h.mtime, h.mtime_nsec));
    Timestamps {
        last_access: Timespec {
            tv_sec: at,
            tv_nsec: an.into(),
        },
        last_modification: Timespec {
            tv_sec: h.mtime,
            tv_nsec: h.mtime_nsec.into(),
        },
    }
}

fn dummy_header(path: &[Vec<u8>]) -> Header {
    Header {
        path: path::display(path).into_bytes(),
        link: Vec::new(),
        kind: Kind::Dir,
        mode: 0,
        uid: 0,
        gid: 0,
        mtime: 0,
        mtime_nsec: 0,
        atime: None,
        size: 0,
        dev_major: 0,
        dev_minor: 0,
        xattrs: Vec::new(),
    }
}

/// Marks a directory opaque for overlayfs.
pub fn set_opaque(dir: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::fs::fsetxattr(
        dir,
        OPAQUE_XATTR,
        b"y",
        XattrFlags::empty(),
    )?)
}

fn touch(dir: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map(drop)
}

/// Decides the snapshot format for a store directory: overlay when running as root on a
/// filesystem that takes whiteout devices and trusted xattrs, portable otherwise.
pub fn probe_format(dir: &std::path::Path) -> SnapshotFormat {
    if !rustix::process::geteuid().is_root() {
        return SnapshotFormat::Portable;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let probe = dir.join(format!("probe-{}-{nanos}", std::process::id()));
    let ok = (|| -> io::Result<()> {
        std::fs::create_dir(&probe)?;
        let fd = fsutil::open_dir(&probe)?;
        rustix::fs::mknodat(&fd, "wh", FileType::CharacterDevice, Mode::empty(), 0)?;
        set_opaque(fd.as_fd())?;
        Ok(())
    })()
    .is_ok();
    let _ = fsutil::remove_tree(&probe);
    if ok {
        SnapshotFormat::Overlay
    } else {
        SnapshotFormat::Portable
    }
}

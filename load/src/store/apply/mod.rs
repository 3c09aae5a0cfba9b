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
//!   mode, then times; each only where creating the entry did not already give it;
//!   directory modes that would stop the directory from being filled, last, deepest first;
//! - hard links may point at files of earlier layers: such links are resolved when the
//!   layer's place in a chain is known ([`super::snapshot::resolve_pending`]), by copying the
//!   file up, as overlayfs itself would;
//! - device nodes are created as root and skipped (counted) otherwise; xattrs that the
//!   filesystem or the user cannot set are skipped; `trusted.overlay.*` from a tar is dropped,
//!   since forged overlay metadata (redirects, opaque flags) would change what the kernel shows.
//!
//! The work is split by what it touches: `tree` walks and makes directories (on the applier's
//! thread, in tar order), `node` makes everything else with its metadata, on the applier's
//! thread or on a pool of [`writers`] that keeps the order of entries of one path.

mod node;
mod tree;
pub mod writers;

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use self::node::{Content, Meta, Node};
use self::tree::Tree;
use self::writers::{Lanes, Writers};
use crate::error::LayerError;
use crate::layer::{Action, LayerEntry, OPAQUE_MARKER, SymlinkGuard, WHITEOUT_PREFIX, classify};
use crate::path::Components;
use crate::scan::{LayerSink, LayerStats};
use crate::store::fsutil::{self, is_whiteout, kind_at};
use crate::tar::{Header, Kind};

/// The xattr overlayfs reads to make a directory opaque.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// How often (bytes written) free space is checked.
const SPACE_CHECK_BYTES: u64 = 64 * 1024 * 1024;
/// How often (entries) free space and inodes are checked.
const SPACE_CHECK_ENTRIES: u64 = 4096;
/// Files up to this size are read into memory and handed to a writer; larger ones are
/// streamed by the applier's thread itself.
const SMALL_FILE: u64 = 1024 * 1024;

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
pub type Reports = Arc<Mutex<HashMap<usize, ApplyReport>>>;

/// The error for a failed system call on an entry: every error of applying a layer is built
/// here, naming the operation and the entry.
pub(crate) fn failed<'a, E: Into<io::Error>>(
    action: &'static str,
    entry: &'a str,
) -> impl FnOnce(E) -> LayerError + 'a {
    move |e| LayerError::Io {
        action,
        entry: entry.to_string(),
        source: e.into(),
    }
}

/// The process's umask, read once (from `/proc` where the kernel has it, so that no other
/// thread ever sees a changed umask).
fn process_umask() -> u32 {
    static UMASK: OnceLock<u32> = OnceLock::new();
    *UMASK.get_or_init(|| {
        if let Ok(status) = std::fs::read_to_string("/proc/self/status")
            && let Some(v) = status.lines().find_map(|l| l.strip_prefix("Umask:"))
            && let Ok(m) = u32::from_str_radix(v.trim(), 8)
        {
            return m;
        }
        // Linux before 4.7: set and restore it.
        let old = rustix::process::umask(Mode::from_raw_mode(0o077));
        rustix::process::umask(old);
        old.bits()
    })
}

/// Reads the umask now, while the process has one thread (see `process_umask`).
pub fn init_umask() {
    process_umask();
}

/// Applies one layer's entries below `root` (see the module comment).
pub struct Applier {
    tree: Tree,
    lanes: Lanes,
    opts: ApplyOptions,
    /// The owner new files get, so that `chown` is called only where it changes something.
    creator: (u32, u32),
    umask: u32,
    guard: SymlinkGuard,
    pending: Vec<PendingLink>,
    stats: LayerStats,
    since_check: (u64, u64),
    buf: Vec<u8>,
    report_to: Option<(Reports, usize)>,
}

impl Applier {
    /// An applier writing below the directory `root` (which should be empty), on the calling
    /// thread.
    pub fn new(root: OwnedFd, opts: ApplyOptions) -> Self {
        let umask = process_umask();
        Applier {
            tree: Tree::new(root, opts.format == SnapshotFormat::Overlay, umask),
            lanes: Lanes::inline(),
            opts,
            creator: (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            ),
            umask,
            guard: SymlinkGuard::default(),
            pending: Vec::new(),
            stats: LayerStats::default(),
            since_check: (0, 0),
            buf: Vec::new(),
            report_to: None,
        }
    }

    /// Small files, symlinks and device nodes are created by `writers`, several at a time.
    pub fn with_writers(mut self, writers: Arc<Writers>) -> Self {
        self.lanes = Lanes::pooled(writers);
        self
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
        let Ok(st) = rustix::fs::fstatvfs(&**self.tree.root()) else {
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

    /// The metadata an entry asks for: the owner only where it differs from the creator's.
    fn meta(&self, h: &Header) -> Result<Meta, LayerError> {
        Ok(Meta {
            owner: self.owner(h)?,
            mode: h.mode,
            times: times(h),
            xattrs: allowed_xattrs(h),
        })
    }

    fn owner(&self, h: &Header) -> Result<Option<(Uid, Gid)>, LayerError> {
        if !self.opts.privileged {
            return Ok(None);
        }
        let uid = u32::try_from(h.uid).ok().filter(|&u| u != u32::MAX);
        let gid = u32::try_from(h.gid).ok().filter(|&g| g != u32::MAX);
        match (uid, gid) {
            (Some(u), Some(g)) if (u, g) == self.creator => Ok(None),
            (Some(u), Some(g)) => Ok(Some((Uid::from_raw(u), Gid::from_raw(g)))),
            _ => Err(LayerError::Unsafe {
                entry: h.display_path(),
                reason: format!("owner {}:{} is out of range", h.uid, h.gid),
            }),
        }
    }

    /// The parent directory of `e`, after removing a directory of this layer that `e`
    /// replaces.
    fn parent_replacing(
        &mut self,
        e: &LayerEntry,
        path: &Components,
        entry: &str,
    ) -> Result<Arc<OwnedFd>, LayerError> {
        if self.tree.is_dir(path) {
            self.tree.remove(path, &mut self.lanes, entry)?;
        }
        self.tree.open(&e.parent, &mut self.lanes, entry)
    }

    /// The layer's root directory entry: its metadata becomes the snapshot root's.
    fn root_dir(&mut self, h: &Header) -> Result<(), LayerError> {
        let entry = h.display_path();
        let root = self.tree.root().clone();
        if let Some((u, g)) = self.owner(h)? {
            rustix::fs::fchown(&*root, Some(u), Some(g)).map_err(failed("chown", &entry))?;
        }
        node::set_xattrs(root.as_fd(), &entry, &allowed_xattrs(h));
        self.tree.root_meta(h.mode, times(h));
        Ok(())
    }

    fn dir(&mut self, e: &LayerEntry, h: &Header) -> Result<(), LayerError> {
        let entry = h.display_path();
        let path = e.components();
        self.tree.open(&e.parent, &mut self.lanes, &entry)?;
        let owner = self.owner(h)?;
        self.tree.make_dir(
            &path,
            h.mode,
            times(h),
            owner,
            &allowed_xattrs(h),
            &mut self.lanes,
            &entry,
        )
    }

    fn file(&mut self, e: &LayerEntry, h: &Header, data: &mut dyn Read) -> Result<(), LayerError> {
        let entry = h.display_path();
        let path = e.components();
        let name = e.name.clone().expect("not the root");
        let parent = self.parent_replacing(e, &path, &entry)?;
        let meta = self.meta(h)?;
        self.stats.bytes += h.size;
        if h.size <= SMALL_FILE {
            self.since_check.0 += h.size;
            let mut bytes = vec![0; h.size as usize];
            data.read_exact(&mut bytes)
                .map_err(failed("read", &entry))?;
            let node = Node {
                parent,
                name,
                entry,
                content: Content::File(bytes),
                meta,
                umask: self.umask,
            };
            return self.lanes.run(&path, node);
        }
        // Streamed here: no writer may be making this path meanwhile.
        self.lanes.flush_path(&path)?;
        let umask = self.umask;
        node::write_file(parent.as_fd(), &name, &entry, &meta, umask, |f| {
            self.stream(data, f, h)
        })
    }

    /// Copies a large file's data, checking the free space as it goes (a decompression bomb
    /// stops at the reserve).
    fn stream(
        &mut self,
        data: &mut dyn Read,
        out: &mut std::fs::File,
        h: &Header,
    ) -> Result<(), LayerError> {
        use std::io::Write;
        let entry = h.display_path();
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(256 * 1024, 0);
        let mut left = h.size;
        let result = loop {
            if left == 0 {
                break Ok(());
            }
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match data.read(&mut buf[..want]) {
                Ok(0) => {
                    break Err(failed("read", &entry)(io::Error::from(
                        io::ErrorKind::UnexpectedEof,
                    )));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(failed("read", &entry)(e)),
            };
            if let Err(e) = out.write_all(&buf[..n]) {
                break Err(failed("write", &entry)(e));
            }
            left -= n as u64;
            self.since_check.0 += n as u64;
            if let Err(e) = self.check_space(h, false) {
                break Err(e);
            }
        };
        self.buf = buf;
        result
    }

    fn symlink(&mut self, e: &LayerEntry, h: &Header) -> Result<(), LayerError> {
        self.non_file(e, h, Content::Symlink(h.link.clone()))
    }

    fn device(&mut self, e: &LayerEntry, h: &Header) -> Result<(), LayerError> {
        let kind = match h.kind {
            Kind::Char => FileType::CharacterDevice,
            Kind::Block => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        if kind != FileType::Fifo && !self.opts.privileged {
            self.stats.devices_skipped += 1;
            return Ok(());
        }
        let dev = rustix::fs::makedev(h.dev_major, h.dev_minor);
        self.non_file(e, h, Content::Node(kind, dev))
    }

    /// A symlink or a node, created by a writer.
    fn non_file(&mut self, e: &LayerEntry, h: &Header, content: Content) -> Result<(), LayerError> {
        let entry = h.display_path();
        let path = e.components();
        let parent = self.parent_replacing(e, &path, &entry)?;
        let node = Node {
            parent,
            name: e.name.clone().expect("not the root"),
            entry,
            content,
            meta: self.meta(h)?,
            umask: self.umask,
        };
        self.lanes.run(&path, node)
    }

    fn hard_link(&mut self, e: &LayerEntry, h: &Header) -> Result<(), LayerError> {
        let entry = h.display_path();
        let path = e.components();
        let name = e.name.clone().expect("not the root");
        let target = e.link.clone().expect("classify sets hard link targets");
        let (tname, tparent) = target.split_last().expect("not empty");
        // The target, and whatever an earlier entry put at the link's path, must be on disk.
        self.lanes.flush_all()?;
        let tdir = self.tree.lookup(tparent, &entry)?;
        let found = match &tdir {
            Some(d) => {
                kind_at(d.as_fd(), tname).map_err(failed("inspect the target of", &entry))?
            }
            None => None,
        };
        let in_this_layer = match &found {
            None => false,
            Some(st) if self.opts.format == SnapshotFormat::Overlay && is_whiteout(st) => false,
            Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                return Err(LayerError::Unsafe {
                    entry,
                    reason: "hard link to a directory".into(),
                });
            }
            Some(_) => true,
        };
        let dir = self.parent_replacing(e, &path, &entry)?;
        if !in_this_layer {
            // Whatever is in the way goes now; the copy is made once the chain is known.
            fsutil::remove_at(dir.as_fd(), &name).map_err(failed("replace", &entry))?;
            self.pending.push(PendingLink { link: path, target });
            return Ok(());
        }
        let tdir = tdir.expect("found");
        node::replacing(dir.as_fd(), &name, || {
            rustix::fs::linkat(
                &*tdir,
                tname.as_slice(),
                &*dir,
                name.as_slice(),
                AtFlags::empty(),
            )
        })
        .map_err(failed("create hard link", &entry))?;
        Ok(())
    }

    fn whiteout(&mut self, e: &LayerEntry, h: &Header) -> Result<(), LayerError> {
        let entry = h.display_path();
        let name = e.name.clone().expect("whiteouts have names");
        let dir = self.tree.open(&e.parent, &mut self.lanes, &entry)?;
        match self.opts.format {
            SnapshotFormat::Overlay => {
                // An entry of this very layer is not hidden by its own layer's whiteout, and
                // already hides the lower one: nothing to do (a writer still making one
                // replaces the whiteout made here).
                if !self.tree.whiteout(&e.components()) {
                    return Ok(());
                }
                match rustix::fs::mknodat(
                    &*dir,
                    name.as_slice(),
                    FileType::CharacterDevice,
                    Mode::empty(),
                    0,
                ) {
                    Ok(()) | Err(Errno::EXIST) => Ok(()),
                    Err(err) => Err(failed("create whiteout", &entry)(err)),
                }
            }
            SnapshotFormat::Portable => {
                let mut marker = WHITEOUT_PREFIX.to_vec();
                marker.extend_from_slice(&name);
                touch(dir.as_fd(), &marker).map_err(failed("create whiteout", &entry))
            }
        }
    }

    fn opaque(&mut self, e: &LayerEntry, h: &Header) -> Result<(), LayerError> {
        let entry = h.display_path();
        let dir = self.tree.open(&e.parent, &mut self.lanes, &entry)?;
        match self.opts.format {
            SnapshotFormat::Overlay => {
                set_opaque(dir.as_fd()).map_err(failed("mark opaque", &entry))
            }
            SnapshotFormat::Portable => {
                touch(dir.as_fd(), OPAQUE_MARKER).map_err(failed("create", &entry))
            }
        }
    }
}

impl LayerSink for Applier {
    fn entry(&mut self, h: &Header, data: &mut dyn Read) -> Result<(), LayerError> {
        let e = classify(h)?;
        self.guard.check(h, &e)?;
        self.stats.entries += 1;
        self.since_check.1 += 1;
        self.check_space(h, false)?;
        if self.tree.must_flush() {
            self.tree.flush(&mut self.lanes)?;
        }
        match e.action {
            Action::Ignore => Ok(()),
            Action::Opaque => self.opaque(&e, h),
            Action::Whiteout => self.whiteout(&e, h),
            Action::Create if e.name.is_none() => self.root_dir(h),
            Action::Create => match h.kind {
                Kind::Dir => self.dir(&e, h),
                Kind::File => self.file(&e, h, data),
                Kind::Symlink => self.symlink(&e, h),
                Kind::Hardlink => self.hard_link(&e, h),
                Kind::Char | Kind::Block | Kind::Fifo => self.device(&e, h),
                Kind::Other(_) => unreachable!("classify refuses other entry types"),
            },
        }
    }

    fn finish(&mut self) -> Result<LayerStats, LayerError> {
        self.tree.finish(&mut self.lanes)?;
        let stats = self.stats.clone();
        let pending = self.take_pending();
        if let Some((reports, id)) = &self.report_to {
            reports.lock().expect("reports lock").insert(
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

/// The xattrs of an entry that may be set: `trusted.overlay.*` from a tar is dropped, since
/// forged overlay metadata (redirects, opaque flags) would change what the kernel shows.
fn allowed_xattrs(h: &Header) -> Vec<(Vec<u8>, Vec<u8>)> {
    h.xattrs
        .iter()
        .filter(|(name, _)| {
            let forged =
                name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.");
            if forged {
                tracing::debug!(
                    "dropping {} on {}",
                    String::from_utf8_lossy(name),
                    h.display_path()
                );
            }
            !forged
        })
        .cloned()
        .collect()
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

#[cfg(test)]
mod tests;

//! Snapshots: one directory per layer, keyed by chain ID, holding `fs/` (the layer's changes,
//! ready as an overlayfs lower directory) and `info.json` (what it is and how it is stored).
//!
//! Snapshots are normally filled while the archive streams past ([`super::apply`]); this
//! module holds what needs the finished chain: copying up files that hard links of a layer
//! point to in lower layers, unpacking a stored blob again when no streamed snapshot fits, and
//! finding a path through a stack of snapshots with overlay semantics.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ferry_oci::Digest;
use rustix::fs::{Gid, Mode, OFlags, Timespec, Timestamps, Uid};
use serde::{Deserialize, Serialize};

use crate::error::LayerError;
use crate::layer::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::path::{self, Components};
use crate::scan::LayerStats;
use crate::store::apply::{Applier, ApplyOptions, OPAQUE_XATTR, PendingLink, SnapshotFormat};
use crate::store::fsutil::{self, open_child_dir, remove_at};

/// Name of the layer directory inside a snapshot.
pub const FS_DIR: &str = "fs";
/// Name of the metadata file inside a snapshot.
pub const INFO_JSON: &str = "info.json";

/// `info.json` of a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The chain ID (the snapshot's name).
    pub chain_id: String,
    /// The layer's diff_id.
    pub diff_id: String,
    /// The chain ID of the snapshot below, if any.
    pub parent: Option<String>,
    /// How whiteouts are stored.
    pub format: SnapshotFormat,
    /// Bytes of regular-file content.
    pub size: u64,
    /// Entries in the layer tar.
    pub entries: u64,
    /// Device nodes that could not be created (not root).
    #[serde(default)]
    pub devices_skipped: u64,
    /// sha256 of the first bytes of the decompressed layer: how a load recognises a layer
    /// the store has before it knows its diff_id (see `scan::layer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
}

impl SnapshotInfo {
    /// Reads `dir/info.json`.
    pub fn read(dir: &Path) -> Option<SnapshotInfo> {
        serde_json::from_slice(&std::fs::read(dir.join(INFO_JSON)).ok()?).ok()
    }
}

/// Unpacks a stored layer blob into `fs` (an empty directory); returns its diff_id, the
/// digest of its head, stats, and the hard links left for [`resolve_pending`].
pub fn apply_blob(
    blob: &Path,
    fs: &Path,
    opts: ApplyOptions,
) -> Result<(Digest, Digest, LayerStats, Vec<PendingLink>), LayerError> {
    let root = fsutil::open_dir(fs).map_err(|e| LayerError::Io {
        action: "open the snapshot",
        entry: fs.display().to_string(),
        source: e,
    })?;
    let mut applier = Applier::new(root, opts);
    let (diff_id, head, stats) = crate::scan::layer::unpack_blob(blob, &mut applier)?;
    Ok((diff_id, head, stats, applier.take_pending()))
}

/// Whether a directory of a snapshot is opaque (either representation).
pub fn is_opaque(dir: &Path) -> bool {
    if dir
        .join(OsBytes(OPAQUE_MARKER).as_path())
        .symlink_metadata()
        .is_ok()
    {
        return true;
    }
    let mut buf = [0u8; 8];
    matches!(rustix::fs::lgetxattr(dir, OPAQUE_XATTR, &mut buf[..]), Ok(1) if buf[0] == b'y')
}

struct OsBytes<'a>(&'a [u8]);

impl OsBytes<'_> {
    fn as_path(&self) -> &Path {
        use std::os::unix::ffi::OsStrExt;
        Path::new(std::ffi::OsStr::from_bytes(self.0))
    }
}

fn is_whiteout_meta(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    m.file_type().is_char_device() && m.rdev() == 0
}

/// Finds `target` in a stack of snapshot directories (top first), as the merged view would
/// show it: a whiteout or a non-directory on the way hides lower layers, and so does an
/// opaque directory. Entries of a layer win over that layer's own `.wh.` markers.
pub fn find_in_stack(layers_top_first: &[PathBuf], target: &[Vec<u8>]) -> Option<PathBuf> {
    for layer in layers_top_first {
        let mut dir = layer.clone();
        let mut opaque = is_opaque(&dir);
        for (i, comp) in target.iter().enumerate() {
            let next = dir.join(OsBytes(comp).as_path());
            match next.symlink_metadata() {
                Ok(m) if is_whiteout_meta(&m) => return None,
                Ok(m) if i + 1 == target.len() => return (!m.is_dir()).then_some(next),
                Ok(m) if m.is_dir() => {
                    opaque |= is_opaque(&next);
                    dir = next;
                }
                Ok(_) => return None,
                Err(_) => {
                    let mut marker = WHITEOUT_PREFIX.to_vec();
                    marker.extend_from_slice(comp);
                    if opaque
                        || dir
                            .join(OsBytes(&marker).as_path())
                            .symlink_metadata()
                            .is_ok()
                    {
                        return None;
                    }
                    break;
                }
            }
        }
    }
    None
}

/// Copies up, into the snapshot `fs`, the files that its pending hard links point to in the
/// layers below (`lowers`, bottom first). A target no layer has is an error.
pub fn resolve_pending(
    fs: &Path,
    pending: &[PendingLink],
    lowers: &[PathBuf],
    privileged: bool,
) -> Result<(), LayerError> {
    let mut stack: Vec<PathBuf> = vec![fs.to_path_buf()];
    stack.extend(lowers.iter().rev().cloned());
    for p in pending {
        let entry = path::display(&p.link);
        let Some(source) = find_in_stack(&stack, &p.target) else {
            return Err(LayerError::Unsafe {
                entry,
                reason: format!(
                    "hard link to `{}`, which neither this layer nor any below it has",
                    path::display(&p.target)
                ),
            });
        };
        copy_up(fs, &p.link, &source, privileged).map_err(|e| LayerError::Io {
            action: "copy up the target of hard link",
            entry,
            source: e,
        })?;
    }
    Ok(())
}

/// Copies `source` (a file of a trusted snapshot) to `link` below `fs`, metadata included.
fn copy_up(fs: &Path, link: &Components, source: &Path, privileged: bool) -> io::Result<()> {
    let (name, parent) = link.split_last().expect("links have names");
    let mut dir = fsutil::open_dir(fs)?;
    for c in parent {
        dir = open_child_dir(dir.as_fd(), c)?;
    }
    remove_at(dir.as_fd(), name)?;
    let meta = source.symlink_metadata()?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(source)?;
        rustix::fs::symlinkat(target.as_path(), &dir, name.as_slice())?;
        return Ok(());
    }
    let mut src = File::open(source)?;
    let fd = rustix::fs::openat(
        &dir,
        name.as_slice(),
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut dst = File::from(fd);
    io::copy(&mut src, &mut dst)?;
    if privileged {
        rustix::fs::fchown(
            &dst,
            Some(Uid::from_raw(meta.uid())),
            Some(Gid::from_raw(meta.gid())),
        )?;
    }
    rustix::fs::fchmod(&dst, Mode::from_raw_mode(meta.mode() & 0o7777))?;
    rustix::fs::futimens(
        &dst,
        &Timestamps {
            last_access: Timespec {
                tv_sec: meta.atime(),
                tv_nsec: meta.atime_nsec(),
            },
            last_modification: Timespec {
                tv_sec: meta.mtime(),
                tv_nsec: meta.mtime_nsec(),
            },
        },
    )?;
    Ok(())
}

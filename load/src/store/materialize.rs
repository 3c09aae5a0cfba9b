//! Merging a stack of snapshots into one plain directory tree: the root filesystem overlayfs
//! would show. The runner's fallback where overlayfs cannot be mounted, and the tests' way to
//! compare ferry's result with `docker export`.
//!
//! Both snapshot formats are understood at once (they cannot be confused: overlay snapshots
//! have no `.wh.` names, portable ones no 0:0 devices). Per directory of a layer: an opaque
//! marker empties the merged directory first, then whiteouts remove, then entries are copied,
//! a directory merging into a directory and anything else replacing what was there. Hard links
//! within a layer stay hard links.

use std::collections::HashMap;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, Timespec, Timestamps, Uid};

use crate::error::StoreError;
use crate::layer::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::store::fsutil;
use crate::store::snapshot::is_opaque;

/// Merges `layers` (snapshot `fs` directories, bottom first) into `dest`, an existing empty
/// directory.
pub fn materialize(layers: &[PathBuf], dest: &Path) -> Result<(), StoreError> {
    let privileged = rustix::process::geteuid().is_root();
    for layer in layers {
        let mut links = HashMap::new();
        merge(layer, dest, privileged, &mut links)
            .map_err(StoreError::io("materialize layer", layer))?;
        let m = layer
            .symlink_metadata()
            .map_err(StoreError::io("inspect", layer))?;
        set_meta(dest, &m, layer, privileged).map_err(StoreError::io("set metadata of", dest))?;
    }
    Ok(())
}

fn merge(
    src: &Path,
    dst: &Path,
    privileged: bool,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(src)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    if is_opaque(src) {
        let fd = fsutil::open_dir(dst)?;
        fsutil::empty_dir(std::os::fd::AsFd::as_fd(&fd))?;
    }
    let mut entries = Vec::new();
    for n in names {
        let b = n.as_bytes();
        if b == OPAQUE_MARKER || b.starts_with(b".wh..wh.") {
            continue;
        }
        if let Some(hidden) = b.strip_prefix(WHITEOUT_PREFIX) {
            fsutil::remove_tree(&dst.join(std::ffi::OsStr::from_bytes(hidden)))?;
            continue;
        }
        let s = src.join(&n);
        let m = s.symlink_metadata()?;
        if m.file_type().is_char_device() && m.rdev() == 0 {
            fsutil::remove_tree(&dst.join(&n))?;
            continue;
        }
        entries.push((n, s, m));
    }
    for (n, s, m) in entries {
        let d = dst.join(&n);
        if m.is_dir() {
            match d.symlink_metadata() {
                Ok(dm) if dm.is_dir() => {}
                Ok(_) => {
                    fsutil::remove_tree(&d)?;
                    std::fs::create_dir(&d)?;
                }
                Err(_) => std::fs::create_dir(&d)?,
            }
            merge(&s, &d, privileged, links)?;
            set_meta(&d, &m, &s, privileged)?;
            continue;
        }
        fsutil::remove_tree(&d)?;
        let ft = m.file_type();
        if ft.is_file() && m.nlink() > 1 {
            if let Some(first) = links.get(&(m.dev(), m.ino())) {
                std::fs::hard_link(first, &d)?;
                continue;
            }
            links.insert((m.dev(), m.ino()), d.clone());
        }
        if ft.is_file() {
            std::fs::copy(&s, &d)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&s)?, &d)?;
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            let kind = if ft.is_fifo() {
                FileType::Fifo
            } else if ft.is_char_device() {
                FileType::CharacterDevice
            } else {
                FileType::BlockDevice
            };
            if kind != FileType::Fifo && !privileged {
                continue;
            }
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &d,
                kind,
                Mode::from_raw_mode(m.mode() & 0o777),
                m.rdev(),
            )?;
        } else {
            continue;
        }
        set_meta(&d, &m, &s, privileged)?;
    }
    Ok(())
}

/// Owner first, xattrs, mode, then times (see `apply` for why this order).
fn set_meta(d: &Path, m: &std::fs::Metadata, src: &Path, privileged: bool) -> io::Result<()> {
    let symlink = m.file_type().is_symlink();
    if privileged {
        rustix::fs::chownat(
            rustix::fs::CWD,
            d,
            Some(Uid::from_raw(m.uid())),
            Some(Gid::from_raw(m.gid())),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
    }
    if !symlink {
        copy_xattrs(src, d);
        rustix::fs::chmodat(
            rustix::fs::CWD,
            d,
            Mode::from_raw_mode(m.mode() & 0o7777),
            AtFlags::empty(),
        )?;
    }
    rustix::fs::utimensat(
        rustix::fs::CWD,
        d,
        &Timestamps {
            last_access: Timespec {
                tv_sec: m.atime(),
                tv_nsec: m.atime_nsec(),
            },
            last_modification: Timespec {
                tv_sec: m.mtime(),
                tv_nsec: m.mtime_nsec(),
            },
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

fn copy_xattrs(src: &Path, dst: &Path) {
    let mut list = vec![0u8; 64 * 1024];
    let Ok(n) = rustix::fs::llistxattr(src, &mut list[..]) else {
        return;
    };
    for name in list[..n].split(|&c| c == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"trusted.overlay.") {
            continue;
        }
        let mut value = vec![0u8; 64 * 1024];
        if let Ok(len) = rustix::fs::lgetxattr(src, name, &mut value[..]) {
            let _ =
                rustix::fs::lsetxattr(dst, name, &value[..len], rustix::fs::XattrFlags::empty());
        }
    }
}

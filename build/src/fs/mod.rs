//! The file-system side of a build: layer stacks seen as one tree ([`stack`]) and writing a
//! step's changes into a fresh directory ([`writer`]).
//!
//! Snapshots come in the two forms ferry's store writes: overlayfs's own (a whiteout is a 0:0
//! character device, an opaque directory carries `trusted.overlay.opaque=y`) and the portable
//! one (`.wh.NAME` files, `.wh..wh..opq`). Everything here understands both.

pub mod stack;
pub mod writer;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// The xattr overlayfs reads to make a directory opaque.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The prefix of a whiteout file in a layer tar (and a portable snapshot).
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The opaque-directory marker in a layer tar (and a portable snapshot).
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Whether `meta` is an overlayfs whiteout (a 0:0 character device).
pub fn is_whiteout_device(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether the directory `dir` is opaque, in either form.
pub fn is_opaque(dir: &Path) -> bool {
    let mut buf = [0u8; 4];
    if matches!(rustix::fs::lgetxattr(dir, OPAQUE_XATTR, &mut buf[..]), Ok(1) if buf[0] == b'y') {
        return true;
    }
    dir.join(OPAQUE_MARKER).symlink_metadata().is_ok()
}

/// The name a portable whiteout file hides, if `name` is one (not the opaque marker).
pub fn whiteout_target(name: &OsStr) -> Option<&OsStr> {
    let b = name.as_bytes();
    if b == OPAQUE_MARKER.as_bytes() {
        return None;
    }
    b.strip_prefix(WHITEOUT_PREFIX.as_bytes())
        .map(OsStr::from_bytes)
}

/// The extended attributes a layer carries: `user.*` and file capabilities, as Docker's
/// layers do (SELinux labels and overlayfs's own bookkeeping belong to the host).
pub fn layer_xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let names = xattr_names(|buf| rustix::fs::llistxattr(path, buf));
    kept_xattrs(&names, |name, buf| rustix::fs::lgetxattr(path, name, buf))
}

/// [`layer_xattrs`] of an open file whose xattr names (from [`xattr_names_of`]) are known.
pub fn layer_xattrs_named(file: &std::fs::File, names: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    kept_xattrs(names, |name, buf| rustix::fs::fgetxattr(file, name, buf))
}

/// The xattr names of an open file, each ended by a NUL (empty when it has none or the file
/// system keeps none).
pub fn xattr_names_of(file: &std::fs::File) -> Vec<u8> {
    xattr_names(|buf| rustix::fs::flistxattr(file, buf))
}

fn xattr_names(list: impl Fn(&mut [u8]) -> rustix::io::Result<usize>) -> Vec<u8> {
    let mut names = vec![0u8; 4096];
    let n = match list(&mut names[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::RANGE) => {
            names = vec![0u8; 64 * 1024];
            list(&mut names[..]).unwrap_or(0)
        }
        Err(_) => 0,
    };
    names.truncate(n);
    names
}

fn kept_xattrs(
    names: &[u8],
    get: impl Fn(&[u8], &mut [u8]) -> rustix::io::Result<usize>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if !(name.starts_with(b"user.") || name == b"security.capability") {
            continue;
        }
        let mut value = vec![0u8; 64 * 1024];
        if let Ok(len) = get(name, &mut value[..]) {
            value.truncate(len);
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    out
}

//! Turning a step's changes into a layer blob: a tar written once, hashed as it goes (the
//! diff_id), gzip-compressed on every core ([`gzip`]) and hashed again (the blob digest),
//! straight into a file.

pub mod diff;
pub mod gzip;
pub mod tar;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use ferry_oci::{Digest, Hasher};

pub use diff::{DiffError, DiffOptions, DiffStats};

use crate::fs::stack::Stack;

/// A layer written to a file.
#[derive(Debug, Clone)]
pub struct LayerFile {
    /// The gzip file.
    pub path: PathBuf,
    /// Digest of the compressed bytes.
    pub digest: Digest,
    /// Compressed size.
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// What the walk found.
    pub stats: DiffStats,
}

impl LayerFile {
    /// Whether the layer holds no change (Docker then adds no layer, only history).
    pub fn is_empty(&self) -> bool {
        self.stats.entries == 0 && !self.stats.whiteouts
    }
}

/// Where a layer's entries come from.
pub enum Changes<'a> {
    /// A directory in overlay form: an upper directory, or COPY's changes.
    Upper {
        /// The directory.
        dir: &'a Path,
        /// Strip overlayfs bookkeeping so the directory can become a snapshot.
        strip_overlay_xattrs: bool,
    },
    /// A whole tree compared with the stack it started from (the copy fallback).
    Trees {
        /// The container's tree after the step.
        after: &'a Path,
        /// The layers before it.
        before: &'a Stack,
    },
}

struct Hashing<W> {
    inner: W,
    hasher: Hasher,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the layer of `changes` to `dest` (created; removed again on failure).
pub fn write(changes: Changes<'_>, dest: &Path, opts: DiffOptions) -> Result<LayerFile, DiffError> {
    let r = write_inner(changes, dest, opts);
    if r.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    r
}

fn write_inner(
    changes: Changes<'_>,
    dest: &Path,
    opts: DiffOptions,
) -> Result<LayerFile, DiffError> {
    let io_err = |source| DiffError::Io {
        path: dest.to_path_buf(),
        source,
    };
    let file = File::create(dest).map_err(io_err)?;
    let blob = Hashing {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Hasher::sha256(),
        bytes: 0,
    };
    let gz = gzip::ParallelGzip::new(blob);
    let raw = Hashing {
        inner: gz,
        hasher: Hasher::sha256(),
        bytes: 0,
    };
    let mut tar = tar::TarWriter::new(BufWriter::with_capacity(1 << 20, raw));
    let stats = match changes {
        Changes::Upper {
            dir,
            strip_overlay_xattrs,
        } => diff::from_upper(
            dir,
            &mut tar,
            DiffOptions {
                strip_overlay_xattrs,
                ..opts
            },
        )?,
        Changes::Trees { after, before } => diff::from_trees(after, before, &mut tar, opts)?,
    };
    let raw = tar
        .finish()
        .map_err(io_err)?
        .into_inner()
        .map_err(|e| io_err(e.into_error()))?;
    let diff_id = raw.hasher.finish();
    let blob = raw.inner.finish().map_err(io_err)?;
    let size = blob.bytes;
    let digest = blob.hasher.finish();
    // Not synced here: the store makes it durable with the snapshot, in one `syncfs`.
    blob.inner
        .into_inner()
        .map_err(|e| io_err(e.into_error()))?;
    Ok(LayerFile {
        path: dest.to_path_buf(),
        digest,
        size,
        diff_id,
        stats,
    })
}

//! Reusing blobs of archives ferry wrote before, so fetching a second image with the same base
//! layers does not download them again.
//!
//! The cache holds no copies of blobs: it is an index (`<cache dir>/blob-index.json`) of where
//! each blob sits in archives ferry has written (path, offset, and the archive's size and
//! modification time). A fetch copies an indexed blob from there into its own archive, and the
//! verifier hashes it like a downloaded one, so a moved, truncated or edited archive costs a
//! download, never a wrong byte. Nothing hidden grows on a PC whose disk may be small; deleting
//! old archives is all the cleaning there is.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use ferry_oci::archive::{ArchivePlan, BlobRef};
use serde::{Deserialize, Serialize};

/// Entries beyond this many are dropped, oldest archives first.
const MAX_ENTRIES: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Location {
    archive: PathBuf,
    offset: u64,
    size: u64,
    archive_len: u64,
    archive_mtime: u64,
}

/// Where blobs can be found in earlier archives.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BlobIndex {
    blobs: BTreeMap<String, Vec<Location>>,
}

fn stamp(path: &Path) -> Option<(u64, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some((meta.len(), mtime))
}

impl BlobIndex {
    fn file(cache_dir: &Path) -> PathBuf {
        cache_dir.join("blob-index.json")
    }

    /// Reads the index; a missing or unreadable one is empty (it is only an optimisation).
    pub fn load(cache_dir: &Path) -> Self {
        std::fs::read(Self::file(cache_dir))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// An archive that still looks as it did when `blob` was recorded in it.
    pub fn find(&self, blob: &BlobRef) -> Option<(PathBuf, u64)> {
        self.blobs
            .get(&blob.digest.to_string())?
            .iter()
            .find_map(|loc| {
                (loc.size == blob.size
                    && stamp(&loc.archive) == Some((loc.archive_len, loc.archive_mtime)))
                .then(|| (loc.archive.clone(), loc.offset))
            })
    }

    /// Adds every blob of the archive just written at `archive`, forgets archives that are
    /// gone or changed, and saves the index. Failures only cost future reuse, so they are
    /// logged, not returned.
    pub fn record(cache_dir: &Path, archive: &Path, plan: &ArchivePlan) {
        let Ok(archive) = std::fs::canonicalize(archive) else {
            return;
        };
        let Some((archive_len, archive_mtime)) = stamp(&archive) else {
            return;
        };
        let mut index = Self::load(cache_dir);
        for locations in index.blobs.values_mut() {
            locations.retain(|l| {
                l.archive != archive && stamp(&l.archive) == Some((l.archive_len, l.archive_mtime))
            });
        }
        for (entry, blob) in plan.blobs() {
            index
                .blobs
                .entry(blob.digest.to_string())
                .or_default()
                .insert(
                    0,
                    Location {
                        archive: archive.clone(),
                        offset: entry.data_offset(),
                        size: blob.size,
                        archive_len,
                        archive_mtime,
                    },
                );
        }
        index.blobs.retain(|_, l| !l.is_empty());
        let mut count: usize = index.blobs.values().map(Vec::len).sum();
        while count > MAX_ENTRIES {
            // Newest locations are first in each list; drop from the back.
            for l in index.blobs.values_mut() {
                if l.pop().is_some() {
                    count -= 1;
                }
            }
            index.blobs.retain(|_, l| !l.is_empty());
        }
        if let Err(e) = index.save(cache_dir) {
            tracing::debug!(error = %e, "cannot save the blob index");
        }
    }

    fn save(&self, cache_dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(cache_dir)?;
        let file = Self::file(cache_dir);
        let tmp = crate::partial::with_suffix(&file, &format!(".{}.tmp", std::process::id()));
        std::fs::write(
            &tmp,
            serde_json::to_vec(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, &file)
    }
}

/// Reads `len` bytes at `offset` of `source`, in pieces, handing each to `write` with its
/// position relative to the blob's start.
///
/// The destination is written through the caller's handle: on Windows the part file is locked,
/// and a second handle could not write to it.
pub fn copy_range(
    source: &Path,
    offset: u64,
    len: u64,
    mut write: impl FnMut(u64, &[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut src = File::open(source)?;
    src.seek(SeekFrom::Start(offset))?;
    let mut src = src.take(len);
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0;
    while done < len {
        let n = src.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} ends before the blob does", source.display()),
            ));
        }
        write(done, &buf[..n])?;
        done += n as u64;
    }
    Ok(())
}

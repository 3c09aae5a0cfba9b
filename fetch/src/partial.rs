//! The archive while it is being written: `FILE.part` beside the output, and a journal
//! `FILE.part.json` recording which blobs are in it.
//!
//! The archive's layout is known before the first byte arrives (see `ArchivePlan`), so the part
//! file is created at its final size and every blob is written straight to its offset, by
//! several downloads at once, with no second copy. The journal is a lower bound of what is on
//! disk: it is written after the data, so a process killed at any moment (Ctrl-C, kill -9)
//! leaves a state a rerun can continue from. A rerun trusts nothing: every blob is hashed again
//! from the file before it counts as verified, and only an archive whose every blob was
//! verified is renamed to its final name.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry_oci::archive::{ArchivePlan, BlobRef, Content, publish};
use ferry_oci::digest::{Digest, Hasher};
use serde::{Deserialize, Serialize};

use crate::error::FetchError;

/// How often progress of partially downloaded chunks is written to the journal: often enough
/// that a kill loses little, rarely enough to cost nothing (a small file and a rename).
const JOURNAL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Default, Serialize, Deserialize)]
struct Journal {
    /// The plan this part file was laid out for, and the chunk size its chunks are counted in.
    fingerprint: String,
    /// For each blob, the bytes known to be written from the start of each of its chunks.
    chunks: BTreeMap<String, BTreeMap<u32, u64>>,
    /// Blobs written and verified.
    complete: Vec<String>,
}

/// An archive being written.
pub struct PartFile {
    part_path: PathBuf,
    journal_path: PathBuf,
    file: File,
    journal: Mutex<(Journal, Instant)>,
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> FetchError + 'a {
    move |source| FetchError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

impl PartFile {
    /// Opens `part_path` for `plan`: continues it if its journal belongs to the same plan,
    /// otherwise starts it afresh at the archive's full size.
    pub fn open(
        part_path: PathBuf,
        plan: &ArchivePlan,
        chunk_size: u64,
    ) -> Result<Self, FetchError> {
        let journal_path = with_suffix(&part_path, ".json");
        let fingerprint = format!("{} chunk={chunk_size}", plan.fingerprint());
        let previous = std::fs::read(&journal_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Journal>(&b).ok())
            .filter(|j| j.fingerprint == fingerprint);
        let resuming = previous.is_some() && part_path.exists();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part_path)
            .map_err(io_err("create", &part_path))?;
        // Two fetches into the same file would interleave their writes: the second one waits
        // for nothing and says why. The lock goes away with the process, however it ends.
        if let Err(e) = file.try_lock() {
            return Err(match e {
                std::fs::TryLockError::WouldBlock => FetchError::Busy { path: part_path },
                std::fs::TryLockError::Error(source) => FetchError::Io {
                    action: "lock",
                    path: part_path,
                    source,
                },
            });
        }
        let stale = file.metadata().map(|m| m.len() > 0).unwrap_or(true);
        if !resuming && stale {
            // Only now, holding the lock: a stale part file from another plan starts over.
            // Never on a fresh file: ext4 flushes a file truncated to zero when it is closed
            // (`auto_da_alloc`), which would cost a synchronous write of the whole archive.
            file.set_len(0).map_err(io_err("truncate", &part_path))?;
        }
        file.set_len(plan.total_len())
            .map_err(io_err("allocate", &part_path))?;
        let journal = match previous {
            Some(j) if resuming => j,
            _ => Journal {
                fingerprint,
                ..Default::default()
            },
        };
        let part = PartFile {
            part_path,
            journal_path,
            file,
            journal: Mutex::new((journal, Instant::now())),
        };
        part.flush_journal()?;
        Ok(part)
    }

    /// Writes every header, the metadata, and the small blobs already in memory.
    pub fn write_known(
        &self,
        plan: &ArchivePlan,
        small: &dyn Fn(&BlobRef) -> Option<Vec<u8>>,
    ) -> Result<(), FetchError> {
        for e in plan.entries() {
            self.write_at(e.header_offset, e.header().as_bytes())?;
            match &e.content {
                Content::Bytes(b) => self.write_at(e.data_offset(), b)?,
                Content::Blob(b) => {
                    if let Some(bytes) = small(b) {
                        self.write_at(e.data_offset(), &bytes)?;
                        self.mark_complete(&b.digest)?;
                    }
                }
                Content::Dir => {}
            }
        }
        Ok(())
    }

    /// Writes `bytes` at `offset`.
    pub fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<(), FetchError> {
        positional::write_all_at(&self.file, bytes, offset)
            .map_err(io_err("write", &self.part_path))
    }

    /// How many bytes of each chunk of `digest` an earlier run wrote, counted from the
    /// chunk's start (`chunk_lens` gives each chunk's full length; a complete blob has them all).
    pub fn chunk_progress(&self, digest: &Digest, chunk_lens: &[u64]) -> Vec<u64> {
        let j = self.journal.lock().expect("journal lock");
        let key = digest.to_string();
        if j.0.complete.contains(&key) {
            return chunk_lens.to_vec();
        }
        let known = j.0.chunks.get(&key);
        chunk_lens
            .iter()
            .enumerate()
            .map(|(i, len)| {
                known
                    .and_then(|k| k.get(&(i as u32)))
                    .map_or(0, |w| (*w).min(*len))
            })
            .collect()
    }

    /// Records that the first `written` bytes of chunk `index` of `digest` are on disk.
    /// Written to the journal file at most every [`JOURNAL_INTERVAL`], and whenever `flush`.
    pub fn record_chunk(
        &self,
        digest: &Digest,
        index: u32,
        written: u64,
        flush: bool,
    ) -> Result<(), FetchError> {
        let due = {
            let mut j = self.journal.lock().expect("journal lock");
            j.0.chunks
                .entry(digest.to_string())
                .or_default()
                .insert(index, written);
            flush || j.1.elapsed() >= JOURNAL_INTERVAL
        };
        if due { self.flush_journal() } else { Ok(()) }
    }

    /// Records that `digest` is written and verified.
    pub fn mark_complete(&self, digest: &Digest) -> Result<(), FetchError> {
        {
            let mut j = self.journal.lock().expect("journal lock");
            let key = digest.to_string();
            j.0.chunks.remove(&key);
            if !j.0.complete.contains(&key) {
                j.0.complete.push(key);
            }
        }
        self.flush_journal()
    }

    /// Forgets everything about `digest` (its bytes did not verify).
    pub fn forget(&self, digest: &Digest) -> Result<(), FetchError> {
        {
            let mut j = self.journal.lock().expect("journal lock");
            let key = digest.to_string();
            j.0.chunks.remove(&key);
            j.0.complete.retain(|d| d != &key);
        }
        self.flush_journal()
    }

    /// Writes the journal to a temporary file and renames it over the old one, so a crash
    /// leaves either the old or the new journal, never half of one.
    fn flush_journal(&self) -> Result<(), FetchError> {
        let mut j = self.journal.lock().expect("journal lock");
        let bytes = serde_json::to_vec(&j.0).expect("journal serializes");
        let tmp = with_suffix(&self.journal_path, ".tmp");
        std::fs::write(&tmp, bytes).map_err(io_err("write", &tmp))?;
        std::fs::rename(&tmp, &self.journal_path).map_err(io_err("rename", &tmp))?;
        j.1 = Instant::now();
        Ok(())
    }

    /// Reads exactly `buf.len()` bytes at `offset`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), FetchError> {
        positional::read_exact_at(&self.file, buf, offset).map_err(io_err("read", &self.part_path))
    }

    /// Feeds the bytes at `offset..offset + len` to `hasher`, reading through `buf`.
    pub fn hash_range(
        &self,
        offset: u64,
        len: u64,
        hasher: &mut Hasher,
        buf: &mut [u8],
    ) -> Result<(), FetchError> {
        let mut done = 0;
        while done < len {
            let n = buf.len().min((len - done) as usize);
            positional::read_exact_at(&self.file, &mut buf[..n], offset + done)
                .map_err(io_err("read", &self.part_path))?;
            hasher.update(&buf[..n]);
            done += n as u64;
        }
        Ok(())
    }

    /// Copies the whole archive to `out` (for `-o -`).
    pub fn copy_to(&self, out: &mut dyn Write) -> Result<(), FetchError> {
        let mut f = &self.file;
        f.seek(SeekFrom::Start(0))
            .map_err(io_err("read", &self.part_path))?;
        std::io::copy(&mut f, out).map_err(|source| FetchError::Io {
            action: "write",
            path: PathBuf::from("<stdout>"),
            source,
        })?;
        out.flush().map_err(|source| FetchError::Io {
            action: "write",
            path: PathBuf::from("<stdout>"),
            source,
        })
    }

    /// Publishes the finished archive: the archive's data reaches the disk and it is renamed
    /// to `final_path` (see [`publish`]), then `FINAL.sha256` (sha256sum format) is written
    /// beside it the same way, and the journal removed. The archive appears under its final
    /// name complete or not at all, and its checksum only once the archive is there.
    pub fn commit(self, final_path: &Path, checksum: &Digest) -> Result<(), FetchError> {
        let sidecar = with_suffix(final_path, ".sha256");
        let tmp = with_suffix(&sidecar, ".part");
        let name = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        publish(self.file, &self.part_path, final_path)
            .map_err(io_err("publish", &self.part_path))?;
        let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all(format!("{}  {name}\n", checksum.digest()).as_bytes())
            .map_err(io_err("write", &tmp))?;
        publish(f, &tmp, &sidecar).map_err(io_err("publish", &tmp))?;
        let _ = std::fs::remove_file(&self.journal_path);
        Ok(())
    }

    /// Cuts the part file at `len` bytes (blobs already copied out of its end, by
    /// `fetch --dir`).
    pub fn truncate(&self, len: u64) -> Result<(), FetchError> {
        self.file
            .set_len(len)
            .map_err(io_err("truncate", &self.part_path))
    }

    /// Removes the part file and its journal (after the archive was streamed elsewhere).
    pub fn discard(self) {
        drop(self.file);
        let _ = std::fs::remove_file(&self.part_path);
        let _ = std::fs::remove_file(&self.journal_path);
    }
}

/// `path` with `suffix` appended to its file name.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Positional writes, so parallel downloads share one file handle without seeking.
mod positional {
    use std::fs::File;
    use std::io;

    #[cfg(unix)]
    pub fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        file.write_all_at(buf, offset)
    }

    #[cfg(unix)]
    pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, offset)
    }

    #[cfg(windows)]
    pub fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        use std::os::windows::fs::FileExt;
        while !buf.is_empty() {
            match file.seek_read(buf, offset) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    #[cfg(windows)]
    pub fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        use std::os::windows::fs::FileExt;
        while !buf.is_empty() {
            match file.seek_write(buf, offset) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

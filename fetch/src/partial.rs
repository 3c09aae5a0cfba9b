//! The archive while it is being written: `FILE.part` beside the output (or, for an archive
//! split into parts, `FILE.000.part`, `FILE.001.part`, …), and a journal `FILE.part.json`
//! recording which blobs are in it.
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

/// One file of the archive being written: the whole archive, or one part of a split one.
struct Segment {
    part_path: PathBuf,
    file: File,
    /// Where its bytes start in the archive.
    start: u64,
    len: u64,
}

/// An archive being written.
pub struct PartFile {
    segments: Vec<Segment>,
    /// Written as parts (`FILE.000`, …), even when one part holds it all.
    split: bool,
    journal_path: PathBuf,
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
    /// otherwise starts it afresh at the archive's full size. With `split`, the archive is
    /// written as parts of at most that many bytes, `part_path` naming the journal only.
    pub fn open(
        part_path: PathBuf,
        plan: &ArchivePlan,
        chunk_size: u64,
        split: Option<u64>,
    ) -> Result<Self, FetchError> {
        let journal_path = with_suffix(&part_path, ".json");
        let fingerprint = match split {
            Some(size) => format!("{} chunk={chunk_size} split={size}", plan.fingerprint()),
            None => format!("{} chunk={chunk_size}", plan.fingerprint()),
        };
        let previous = std::fs::read(&journal_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Journal>(&b).ok())
            .filter(|j| j.fingerprint == fingerprint);
        let layout = segment_layout(&part_path, plan.total_len(), split);
        let resuming = previous.is_some() && layout.iter().all(|(p, _, _)| p.exists());
        let mut segments = Vec::new();
        for (path, start, len) in layout {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_err("create", &path))?;
            // Two fetches into the same file would interleave their writes: the second one
            // waits for nothing and says why. The lock goes away with the process, however it
            // ends.
            if let Err(e) = file.try_lock() {
                return Err(match e {
                    std::fs::TryLockError::WouldBlock => FetchError::Busy { path },
                    std::fs::TryLockError::Error(source) => FetchError::Io {
                        action: "lock",
                        path,
                        source,
                    },
                });
            }
            let stale = file.metadata().map(|m| m.len() > 0).unwrap_or(true);
            if !resuming && stale {
                // Only now, holding the lock: a stale part file from another plan starts over.
                // Never on a fresh file: ext4 flushes a file truncated to zero when it is
                // closed (`auto_da_alloc`), which would cost a synchronous write of the whole
                // archive.
                file.set_len(0).map_err(io_err("truncate", &path))?;
            }
            file.set_len(len).map_err(io_err("allocate", &path))?;
            segments.push(Segment {
                part_path: path,
                file,
                start,
                len,
            });
        }
        if split.is_some() {
            // Parts of an earlier, differently split run of the same archive.
            remove_parts_from(&part_path, segments.len(), ".part");
        }
        let journal = match previous {
            Some(j) if resuming => j,
            _ => Journal {
                fingerprint,
                ..Default::default()
            },
        };
        let part = PartFile {
            segments,
            split: split.is_some(),
            journal_path,
            journal: Mutex::new((journal, Instant::now())),
        };
        part.flush_journal()?;
        Ok(part)
    }

    /// Where each part ends in the archive (one entry for a whole archive).
    pub fn part_ends(&self) -> Vec<u64> {
        self.segments.iter().map(|s| s.start + s.len).collect()
    }

    /// The segments holding `offset..offset + len`, with the offset and length within each.
    fn spans(&self, offset: u64, len: u64) -> impl Iterator<Item = (&Segment, u64, usize, usize)> {
        let end = offset + len;
        self.segments.iter().filter_map(move |s| {
            let a = offset.max(s.start);
            let b = end.min(s.start + s.len);
            (a < b).then(|| (s, a - s.start, (a - offset) as usize, (b - a) as usize))
        })
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
        for (s, at, from, n) in self.spans(offset, bytes.len() as u64) {
            positional::write_all_at(&s.file, &bytes[from..from + n], at)
                .map_err(io_err("write", &s.part_path))?;
        }
        Ok(())
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
        for (s, at, from, n) in self.spans(offset, buf.len() as u64) {
            positional::read_exact_at(&s.file, &mut buf[from..from + n], at)
                .map_err(io_err("read", &s.part_path))?;
        }
        Ok(())
    }

    /// Feeds the bytes at `offset..offset + len` to `hasher`, reading through `buf`.
    pub fn hash_range(
        &self,
        offset: u64,
        len: u64,
        hasher: &mut PartHasher,
        buf: &mut [u8],
    ) -> Result<(), FetchError> {
        let mut done = 0;
        while done < len {
            let n = buf.len().min((len - done) as usize);
            self.read_at(offset + done, &mut buf[..n])?;
            hasher.update(&buf[..n]);
            done += n as u64;
        }
        Ok(())
    }

    /// Copies the whole archive to `out` (for `-o -`; never split).
    pub fn copy_to(&self, out: &mut dyn Write) -> Result<(), FetchError> {
        let s = &self.segments[0];
        let mut f = &s.file;
        f.seek(SeekFrom::Start(0))
            .map_err(io_err("read", &s.part_path))?;
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

    /// Publishes the finished archive: the data of each file reaches the disk and it is
    /// renamed to its final name (`FINAL`, or `FINAL.000`, … when split; see [`publish`]), then
    /// `FINAL.sha256` (sha256sum format: one line, or one per part) is written beside them the
    /// same way, and the journal removed. The archive appears under its final name complete or
    /// not at all, and its checksums only once it is there.
    pub fn commit(self, final_path: &Path, checksums: &[Digest]) -> Result<(), FetchError> {
        let sidecar = with_suffix(final_path, ".sha256");
        let tmp = with_suffix(&sidecar, ".part");
        let split = self.split;
        let finals: Vec<PathBuf> = match split {
            false => vec![final_path.to_path_buf()],
            true => (0..self.segments.len())
                .map(|i| part_name(final_path, i))
                .collect(),
        };
        let mut lines = String::new();
        for (path, sum) in finals.iter().zip(checksums) {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            lines.push_str(&format!("{}  {name}\n", sum.digest()));
        }
        if split {
            // Parts of an earlier, longer archive under the same name would look like more of
            // this one.
            remove_parts_from(final_path, finals.len(), "");
        }
        for (s, to) in self.segments.into_iter().zip(&finals) {
            publish(s.file, &s.part_path, to).map_err(io_err("publish", &s.part_path))?;
        }
        let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all(lines.as_bytes())
            .map_err(io_err("write", &tmp))?;
        publish(f, &tmp, &sidecar).map_err(io_err("publish", &tmp))?;
        let _ = std::fs::remove_file(&self.journal_path);
        Ok(())
    }

    /// Cuts the archive at `len` bytes (blobs already copied out of its end, by `fetch
    /// --dir`; never split).
    pub fn truncate(&self, len: u64) -> Result<(), FetchError> {
        let s = &self.segments[0];
        s.file
            .set_len(len)
            .map_err(io_err("truncate", &s.part_path))
    }

    /// Removes the part files and their journal (after the archive was streamed elsewhere).
    pub fn discard(self) {
        for s in self.segments {
            drop(s.file);
            let _ = std::fs::remove_file(&s.part_path);
        }
        let _ = std::fs::remove_file(&self.journal_path);
    }
}

/// The files of an archive of `total` bytes written at `part_path` (`FILE.part`): that one
/// file, or with `split`, `FILE.000.part`, `FILE.001.part`, … of at most `split` bytes each.
fn segment_layout(part_path: &Path, total: u64, split: Option<u64>) -> Vec<(PathBuf, u64, u64)> {
    let Some(size) = split.filter(|s| *s > 0) else {
        return vec![(part_path.to_path_buf(), 0, total)];
    };
    let base = strip_part(part_path);
    let count = total.div_ceil(size).max(1);
    (0..count)
        .map(|i| {
            let start = i * size;
            (
                with_suffix(&part_name(&base, i as usize), ".part"),
                start,
                size.min(total - start),
            )
        })
        .collect()
}

/// `FILE.part` → `FILE`.
fn strip_part(part_path: &Path) -> PathBuf {
    let s = part_path.as_os_str().to_string_lossy();
    PathBuf::from(s.strip_suffix(".part").unwrap_or(&s).to_string())
}

/// `FILE.007`: the name of part 7 of the archive `FILE` (as `ferry load` looks for them).
pub fn part_name(base: &Path, index: usize) -> PathBuf {
    with_suffix(base, &format!(".{index:03}"))
}

/// Removes `FILE.NNN{suffix}` for parts `from` on, as long as they exist.
fn remove_parts_from(part_or_final: &Path, from: usize, suffix: &str) {
    let base = strip_part(part_or_final);
    let mut i = from;
    loop {
        let p = with_suffix(&part_name(&base, i), suffix);
        if std::fs::remove_file(&p).is_err() {
            break;
        }
        i += 1;
    }
}

/// Hashes an archive front to back, one digest per part: a part's digest is finished as the
/// bytes pass its end.
pub struct PartHasher {
    ends: Vec<u64>,
    /// Parts of this many bytes each, when the archive's size is not known yet.
    every: Option<u64>,
    pos: u64,
    current: Hasher,
    done: Vec<Digest>,
}

impl PartHasher {
    /// A hasher for an archive whose parts end at `ends` (the last is the archive's size).
    pub fn new(ends: Vec<u64>) -> Self {
        PartHasher {
            ends,
            every: None,
            pos: 0,
            current: Hasher::sha256(),
            done: Vec::new(),
        }
    }

    /// A hasher for parts of `size` bytes each, the last one shorter.
    pub fn every(size: u64) -> Self {
        PartHasher {
            every: Some(size),
            ..PartHasher::new(Vec::new())
        }
    }

    /// Hashes the next bytes of the archive.
    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let next = self.done.len();
            let end = match self.every {
                Some(size) => (next as u64 + 1).saturating_mul(size),
                None => self.ends.get(next).copied().unwrap_or(u64::MAX),
            };
            let n = ((end - self.pos) as usize).min(bytes.len());
            self.current.update(&bytes[..n]);
            self.pos += n as u64;
            bytes = &bytes[n..];
            if self.pos == end {
                let h = std::mem::replace(&mut self.current, Hasher::sha256());
                self.done.push(h.finish());
            }
        }
    }

    /// The digest of each part.
    pub fn finish(mut self) -> Vec<Digest> {
        let open = match self.every {
            Some(size) => self.pos > self.done.len() as u64 * size || self.done.is_empty(),
            None => self.done.len() < self.ends.len(),
        };
        if open {
            self.done.push(self.current.finish());
        }
        self.done
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

/// The largest file FAT32 holds: 4 GiB − 1 byte.
pub const FAT32_MAX: u64 = (4 << 30) - 1;

/// Parses a part size for `--split`: bytes, with `K`, `M`, `G` or `T` (powers of 1024, `B` or
/// `iB` optional), or `fat32` (4 GiB − 1 byte, the largest file FAT32 holds).
pub fn parse_split_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    if t == "fat32" {
        return Ok(FAT32_MAX);
    }
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(&t);
    let (num, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        Some('t') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = num.trim().parse().map_err(|_| {
        format!("invalid size `{s}`: expected a whole number with K, M, G or T, or `fat32`")
    })?;
    let size = n
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("size `{s}` is too large"))?;
    // A part holds at least a header block and some data; smaller parts only multiply files.
    if size < 1024 {
        return Err(format!("part size `{s}` is below the minimum of 1K"));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_sizes() {
        assert_eq!(parse_split_size("fat32"), Ok(4 * 1024 * 1024 * 1024 - 1));
        assert_eq!(parse_split_size("700M"), Ok(700 << 20));
        assert_eq!(parse_split_size("4g"), Ok(4 << 30));
        assert_eq!(parse_split_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_split_size("5000"), Ok(5000));
        assert!(parse_split_size("1.5G").is_err());
        assert!(parse_split_size("10").is_err());
        assert!(parse_split_size("lots").is_err());
    }

    #[test]
    fn part_hashes_cut_at_part_ends() {
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut h = PartHasher::new(vec![300, 600, 1000]);
        h.update(&data[..250]);
        h.update(&data[250..700]);
        h.update(&data[700..]);
        let sums = h.finish();
        let want: Vec<Digest> = [&data[..300], &data[300..600], &data[600..]]
            .iter()
            .map(|p| ferry_oci::digest::sha256(p))
            .collect();
        assert_eq!(sums, want);
    }
}

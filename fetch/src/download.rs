//! Moving layer bytes into the archive, and checking them.
//!
//! Layers are cut into chunks that a pool of workers fetches with `Range` requests, lowest
//! archive offset first, so the written part of the archive grows from the front like one fast
//! stream. Behind that front two followers read the bytes back (from the page cache): the
//! verifier hashes each blob and compares it with its digest, and the checksummer hashes the
//! whole archive for `FILE.sha256`, but only up to the last verified blob. Workers only move
//! bytes; nothing counts until the verifier has passed over it. Hashing overlaps the download
//! instead of following it, which on a fast link halves the wall time.
//!
//! A connection that drops mid-chunk is resumed with `Range` from the last byte written; a
//! registry that ignores `Range` (answers 200) gets the blob downloaded whole by one worker.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use ferry_oci::DigestError;
use ferry_oci::archive::BlobRef;
use ferry_oci::digest::{Digest, Hasher};

use crate::error::FetchError;
use crate::http::retry::RetryPolicy;
use crate::partial::PartFile;
use crate::registry::{Registry, header};
use crate::reporter::Reporter;
use crate::reuse::BlobIndex;

/// Bytes per ranged request: large enough that request overhead vanishes, small enough that
/// several workers share one big layer and an interrupted run loses little.
pub const CHUNK: u64 = 16 << 20;

/// Bytes the verifier reads at a time and hands to the checksummer.
const PIECE: u64 = 1 << 20;
/// Pieces between verifier and checksummer: bounds memory, lets each run ahead a little.
const PIECES_IN_FLIGHT: usize = 8;

/// Layer bytes on their way from the verifier to the checksummer.
enum Piece {
    /// Bytes at an archive offset; offsets only grow.
    Bytes { offset: u64, data: Vec<u8> },
    /// A layer is being fetched again: what was handed over so far cannot be trusted.
    Invalidate,
}

/// A layer to bring into the archive.
pub struct Layer {
    /// Where its bytes start in the archive.
    pub offset: u64,
    /// The blob.
    pub blob: BlobRef,
    /// The registry that has it.
    pub registry: Arc<Registry>,
    /// The repository that has it.
    pub repo: String,
}

impl Layer {
    fn chunks(&self) -> u32 {
        self.blob.size.div_ceil(CHUNK) as u32
    }

    fn chunk_range(&self, index: u32) -> (u64, u64) {
        let start = u64::from(index) * CHUNK;
        (start, (start + CHUNK).min(self.blob.size))
    }
}

/// What [`transfer`] did.
pub struct Transferred {
    /// sha256 of the whole archive.
    pub checksum: Digest,
    /// Layer bytes received over the network in this run.
    pub downloaded: u64,
    /// Layer bytes copied from earlier archives instead.
    pub reused: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Pending,
    InFlight,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Fetched in ranged chunks.
    Ranged,
    /// The registry ignores `Range`: the worker that found out fetches the blob whole.
    Whole,
}

struct State {
    chunks: Vec<Vec<Chunk>>,
    /// Bytes on disk from the start of each chunk (where a pending chunk resumes).
    written: Vec<Vec<u64>>,
    modes: Vec<Mode>,
    /// Reporter ids, assigned when a layer's first chunk starts.
    ids: Vec<Option<usize>>,
    /// Whether a layer's bytes came (partly) from disk: an earlier run, or an earlier archive.
    resumed: Vec<bool>,
    /// Layers verified so far, in archive order.
    verified: usize,
    /// Everything verified, or stopped.
    finished: bool,
}

struct Task {
    layer: usize,
    index: u32,
}

struct Transfer<'a> {
    layers: &'a [Layer],
    part: &'a PartFile,
    retry: &'a RetryPolicy,
    reporter: &'a dyn Reporter,
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
    error: Mutex<Option<FetchError>>,
    downloaded: AtomicU64,
    started: Instant,
}

/// Downloads and verifies `layers` (sorted by offset) into `part`, on `concurrency` workers,
/// and returns the checksum of the archive of `total_len` bytes.
pub fn transfer(
    layers: &[Layer],
    part: &PartFile,
    reuse: Option<&BlobIndex>,
    total_len: u64,
    concurrency: usize,
    retry: &RetryPolicy,
    reporter: &dyn Reporter,
) -> Result<Transferred, FetchError> {
    debug_assert!(layers.windows(2).all(|w| w[0].offset < w[1].offset));
    let mut present = 0;
    let mut reused = 0;
    let mut chunks = Vec::new();
    let mut written = Vec::new();
    let mut resumed = Vec::new();
    for layer in layers {
        let lens: Vec<u64> = (0..layer.chunks())
            .map(|i| {
                let (a, b) = layer.chunk_range(i);
                b - a
            })
            .collect();
        let mut progress = part.chunk_progress(&layer.blob.digest, &lens);
        if progress.iter().all(|p| *p == 0)
            && let Some(found) = reuse.and_then(|index| index.find(&layer.blob))
            && reuse_blob(part, layer, &found, &lens)
        {
            reused += layer.blob.size;
            progress = lens.clone();
        }
        present += progress.iter().sum::<u64>();
        resumed.push(progress.iter().any(|p| *p > 0));
        chunks.push(
            progress
                .iter()
                .zip(&lens)
                .map(|(p, len)| {
                    if p == len {
                        Chunk::Done
                    } else {
                        Chunk::Pending
                    }
                })
                .collect(),
        );
        written.push(progress);
    }
    reporter.on_download_start(
        layers.iter().map(|l| l.blob.size).sum(),
        present,
        layers.len(),
    );
    let t = Transfer {
        layers,
        part,
        retry,
        reporter,
        state: Mutex::new(State {
            chunks,
            written,
            modes: vec![Mode::Ranged; layers.len()],
            ids: vec![None; layers.len()],
            resumed,
            verified: 0,
            finished: layers.is_empty(),
        }),
        changed: Condvar::new(),
        stop: AtomicBool::new(false),
        error: Mutex::new(None),
        downloaded: AtomicU64::new(0),
        started: Instant::now(),
    };
    let checksum = std::thread::scope(|s| {
        for _ in 0..concurrency.max(1) {
            s.spawn(|| t.worker());
        }
        let (pieces, received) = sync_channel(PIECES_IN_FLIGHT);
        let (spare, recycled) = sync_channel(PIECES_IN_FLIGHT);
        let t = &t;
        s.spawn(move || t.guard(|| t.verifier(pieces, recycled)));
        s.spawn(move || t.guard(|| t.checksummer(received, spare, total_len)))
            .join()
    })
    .expect("checksum thread does not panic");
    if let Some(e) = t.error.into_inner().expect("error slot") {
        return Err(e);
    }
    Ok(Transferred {
        checksum: checksum.expect("no error means a checksum"),
        downloaded: t.downloaded.into_inner(),
        reused,
    })
}

/// Copies a blob from an earlier archive into place and journals it; the verifier checks it
/// like any other bytes. Returns whether it was copied.
fn reuse_blob(
    part: &PartFile,
    layer: &Layer,
    (archive, offset): &(std::path::PathBuf, u64),
    lens: &[u64],
) -> bool {
    let copied = crate::reuse::copy_range(archive, *offset, layer.blob.size, |at, bytes| {
        part.write_at(layer.offset + at, bytes)
            .map_err(std::io::Error::other)
    });
    if let Err(e) = copied {
        tracing::debug!(digest = %layer.blob.digest, archive = %archive.display(), error = %e, "cannot reuse blob");
        return false;
    }
    tracing::debug!(digest = %layer.blob.digest, archive = %archive.display(), "reusing blob from an earlier archive");
    lens.iter().enumerate().all(|(i, len)| {
        part.record_chunk(&layer.blob.digest, i as u32, *len, i + 1 == lens.len())
            .is_ok()
    })
}

impl Transfer<'_> {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("transfer state")
    }

    /// Runs `f`, turning its error into a stop of the whole transfer.
    fn guard<T>(&self, f: impl FnOnce() -> Result<T, FetchError>) -> Option<T> {
        match f() {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    fn fail(&self, e: FetchError) {
        self.error.lock().expect("error slot").get_or_insert(e);
        self.stop.store(true, Ordering::SeqCst);
        self.lock().finished = true;
        self.changed.notify_all();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn worker(&self) {
        loop {
            let task = {
                let mut st = self.lock();
                loop {
                    if st.finished || self.stopped() {
                        return;
                    }
                    if let Some(task) = self.next_task(&mut st) {
                        break task;
                    }
                    st = self.changed.wait(st).expect("transfer state");
                }
            };
            if let Err(e) = self.fetch_chunk(task.layer, task.index) {
                self.fail(e);
                return;
            }
        }
    }

    /// The lowest pending piece of work, marked as taken.
    fn next_task(&self, st: &mut State) -> Option<Task> {
        for l in st.verified..self.layers.len() {
            if st.modes[l] == Mode::Whole {
                continue;
            }
            if let Some(i) = st.chunks[l].iter().position(|c| *c == Chunk::Pending) {
                st.chunks[l][i] = Chunk::InFlight;
                self.start_report(st, l);
                return Some(Task {
                    layer: l,
                    index: i as u32,
                });
            }
        }
        None
    }

    fn start_report(&self, st: &mut State, l: usize) {
        if st.ids[l].is_none() {
            let done = st.written[l].iter().sum();
            st.ids[l] = Some(self.reporter.on_blob_start(&self.layers[l].blob, done));
        }
    }

    fn id(&self, l: usize) -> usize {
        self.lock().ids[l].unwrap_or(0)
    }

    fn what(&self, l: usize) -> String {
        format!("blob {}", self.layers[l].blob.digest)
    }

    /// Fetches chunk `index` of layer `l`, resuming after drops.
    fn fetch_chunk(&self, l: usize, index: u32) -> Result<(), FetchError> {
        let layer = &self.layers[l];
        let (start, end) = layer.chunk_range(index);
        if start == 0 && end == layer.blob.size {
            // A blob of one chunk is asked for without `Range`, which every registry serves.
            return self.fetch_whole(l, None);
        }
        let mut pos = start + self.lock().written[l][index as usize];
        let mut failures = 0;
        while pos < end {
            let range = format!("bytes={pos}-{}", end - 1);
            let resp = self.request(l, &[("Range", &range)])?;
            let status = resp.status().as_u16();
            if status == 206 {
                if header(&resp, "content-range").and_then(|v| range_start(&v)) != Some(pos) {
                    // A 206 for another range than asked: never trust it.
                    failures += 1;
                    self.backoff(
                        l,
                        &mut failures,
                        "registry answered a different range".into(),
                    )?;
                    continue;
                }
            } else {
                // The registry ignores Range: fall back to one stream for the whole blob,
                // continuing with the response already open.
                tracing::debug!(digest = %layer.blob.digest, "registry ignores Range, fetching the blob whole");
                {
                    let mut st = self.lock();
                    st.modes[l] = Mode::Whole;
                    for c in st.chunks[l].iter_mut() {
                        if *c == Chunk::InFlight {
                            *c = Chunk::Pending;
                        }
                    }
                }
                return self.fetch_whole(l, Some(resp));
            }
            let mut body = resp.into_body().into_reader();
            match self.copy_body(l, &mut body, &mut pos, end) {
                Ok(()) if pos == end => {
                    // Read to the end of the body, so the connection goes back to the pool
                    // for the next chunk instead of a new one (a TLS handshake each).
                    let _ = body.read(&mut [0u8; 1]);
                }
                Ok(()) => {
                    failures += 1;
                    self.backoff(
                        l,
                        &mut failures,
                        format!("connection closed at byte {pos} of {}", layer.blob.size),
                    )?;
                }
                Err(e) => {
                    failures += 1;
                    self.backoff(l, &mut failures, e.to_string())?;
                }
            }
            if self.stopped() {
                return Ok(());
            }
        }
        self.chunk_done(l, index)
    }

    /// Fetches a blob as one stream from byte 0 (small blobs, and registries that ignore
    /// `Range`). More bytes than the descriptor announced are refused: the blob would not be
    /// the one named, whatever its prefix hashes to.
    fn fetch_whole(
        &self,
        l: usize,
        open: Option<ureq::http::Response<ureq::Body>>,
    ) -> Result<(), FetchError> {
        let layer = &self.layers[l];
        let size = layer.blob.size;
        let mut open = open;
        let mut failures = 0;
        loop {
            let resp = match open.take() {
                Some(r) => r,
                None => self.request(l, &[])?,
            };
            let mut pos = 0;
            let mut body = resp.into_body().into_reader();
            let result = self.copy_body(l, &mut (&mut body).take(size), &mut pos, size);
            if self.stopped() {
                return Ok(());
            }
            match result {
                Ok(()) if pos == size => {
                    let mut extra = [0u8; 1];
                    if matches!(body.read(&mut extra), Ok(1)) {
                        return Err(FetchError::Verify {
                            what: self.what(l),
                            host: layer.registry.host().to_string(),
                            source: Box::new(DigestError::Size {
                                expected: size,
                                actual: size + 1,
                            }),
                        });
                    }
                    for i in 0..layer.chunks() {
                        self.chunk_done(l, i)?;
                    }
                    return Ok(());
                }
                Ok(()) => {
                    failures += 1;
                    self.reporter.on_blob_restart(self.id(l), pos);
                    self.backoff(
                        l,
                        &mut failures,
                        format!("connection closed at byte {pos} of {size}"),
                    )?;
                }
                Err(e) => {
                    failures += 1;
                    self.reporter.on_blob_restart(self.id(l), pos);
                    self.backoff(l, &mut failures, e.to_string())?;
                }
            }
        }
    }

    fn request(
        &self,
        l: usize,
        headers: &[(&str, &str)],
    ) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
        let layer = &self.layers[l];
        let path = format!("/v2/{}/blobs/{}", layer.repo, layer.blob.digest);
        layer
            .registry
            .get(&self.what(l), &layer.repo, &path, headers)
    }

    /// Copies a response body to the archive at the layer's offset + `pos`, up to `end`,
    /// marking whole chunks done as they pass (for whole-blob streams).
    fn copy_body(
        &self,
        l: usize,
        body: &mut dyn Read,
        pos: &mut u64,
        end: u64,
    ) -> std::io::Result<()> {
        let layer = &self.layers[l];
        let id = self.id(l);
        let mut buf = vec![0u8; 1 << 20];
        while *pos < end {
            if self.stopped() {
                return Ok(());
            }
            let want = buf.len().min((end - *pos) as usize);
            let n = match body.read(&mut buf[..want]) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.part
                .write_at(layer.offset + *pos, &buf[..n])
                .map_err(std::io::Error::other)?;
            *pos += n as u64;
            self.downloaded.fetch_add(n as u64, Ordering::Relaxed);
            self.reporter.on_blob_progress(id, n as u64);
            self.chunk_progress(l, *pos)
                .map_err(std::io::Error::other)?;
        }
        Ok(())
    }

    /// Waits before another try, or fails once the policy's tries are used up.
    fn backoff(&self, l: usize, failures: &mut u32, reason: String) -> Result<(), FetchError> {
        let layer = &self.layers[l];
        if *failures >= self.retry.attempts {
            return Err(FetchError::Transfer {
                what: self.what(l),
                host: layer.registry.host().to_string(),
                attempts: *failures,
                source: reason.into(),
            });
        }
        let delay = self.retry.delay(*failures, None);
        self.reporter
            .on_retry(&self.what(l), *failures, delay, &reason);
        tracing::debug!(digest = %layer.blob.digest, failures, ?delay, reason, "resuming after a dropped transfer");
        std::thread::sleep(delay);
        Ok(())
    }

    fn chunk_done(&self, l: usize, index: u32) -> Result<(), FetchError> {
        let (a, b) = self.layers[l].chunk_range(index);
        {
            let mut st = self.lock();
            st.chunks[l][index as usize] = Chunk::Done;
            st.written[l][index as usize] = b - a;
        }
        self.changed.notify_all();
        self.part
            .record_chunk(&self.layers[l].blob.digest, index, b - a, false)
    }

    /// Records that layer `l`'s bytes up to `pos` are on disk, for the chunk holding `pos - 1`
    /// (a rerun resumes such a chunk where it stopped instead of at its start).
    fn chunk_progress(&self, l: usize, pos: u64) -> Result<(), FetchError> {
        let layer = &self.layers[l];
        let index = ((pos - 1) / CHUNK) as u32;
        let (a, _) = layer.chunk_range(index);
        self.lock().written[l][index as usize] = pos - a;
        self.part
            .record_chunk(&layer.blob.digest, index, pos - a, false)
    }

    /// The end of the run of done chunks that starts at byte `pos` of layer `l`.
    fn contiguous_end(&self, st: &State, l: usize, pos: u64) -> u64 {
        let layer = &self.layers[l];
        let mut end = pos;
        let mut i = (pos / CHUNK) as usize;
        while i < st.chunks[l].len() && st.chunks[l][i] == Chunk::Done {
            end = layer.chunk_range(i as u32).1;
            i += 1;
        }
        end
    }

    /// Hashes every layer in archive order as its bytes arrive, and checks its digest. Each
    /// piece it reads is handed on to the checksummer, so the archive is read back only once.
    fn verifier(
        &self,
        pieces: SyncSender<Piece>,
        spare: Receiver<Vec<u8>>,
    ) -> Result<(), FetchError> {
        for (l, layer) in self.layers.iter().enumerate() {
            let mut refetched = false;
            loop {
                let mut hasher = Hasher::for_digest(&layer.blob.digest).map_err(|source| {
                    FetchError::Verify {
                        what: self.what(l),
                        host: layer.registry.host().to_string(),
                        source: Box::new(source),
                    }
                })?;
                let mut pos = 0;
                while pos < layer.blob.size {
                    let end = {
                        let mut st = self.lock();
                        loop {
                            if self.stopped() {
                                return Ok(());
                            }
                            let end = self.contiguous_end(&st, l, pos);
                            if end > pos {
                                break end;
                            }
                            st = self.changed.wait(st).expect("transfer state");
                        }
                    };
                    while pos < end {
                        let n = PIECE.min(end - pos) as usize;
                        let mut buf = spare.try_recv().unwrap_or_default();
                        buf.resize(n, 0);
                        self.part.read_at(layer.offset + pos, &mut buf)?;
                        hasher.update(&buf);
                        let piece = Piece::Bytes {
                            offset: layer.offset + pos,
                            data: buf,
                        };
                        if pieces.send(piece).is_err() {
                            return Ok(());
                        }
                        pos += n as u64;
                    }
                }
                match hasher.verify(&layer.blob.digest, Some(layer.blob.size)) {
                    Ok(()) => break,
                    Err(_) if self.lock().resumed[l] && !refetched => {
                        // Bytes from an earlier run did not survive (a crash before they
                        // reached the disk), or an earlier archive changed: fetch this blob
                        // from the registry once more before giving up.
                        tracing::debug!(digest = %layer.blob.digest, "resumed blob did not verify, fetching it again");
                        refetched = true;
                        let _ = pieces.send(Piece::Invalidate);
                        self.part.forget(&layer.blob.digest)?;
                        let mut st = self.lock();
                        st.chunks[l].iter_mut().for_each(|c| *c = Chunk::Pending);
                        st.written[l].iter_mut().for_each(|w| *w = 0);
                        st.modes[l] = Mode::Ranged;
                        st.resumed[l] = false;
                        if let Some(id) = st.ids[l] {
                            self.reporter.on_blob_restart(id, layer.blob.size);
                        }
                        drop(st);
                        self.changed.notify_all();
                    }
                    Err(source) => {
                        return Err(FetchError::Verify {
                            what: self.what(l),
                            host: layer.registry.host().to_string(),
                            source: Box::new(source),
                        });
                    }
                }
            }
            self.part.mark_complete(&layer.blob.digest)?;
            let mut st = self.lock();
            if let Some(id) = st.ids[l] {
                self.reporter.on_blob_done(id);
            }
            st.verified = l + 1;
            if st.verified == self.layers.len() {
                st.finished = true;
                tracing::debug!(
                    elapsed_ms = self.started.elapsed().as_millis(),
                    "every layer verified"
                );
            }
            drop(st);
            self.changed.notify_all();
        }
        Ok(())
    }

    /// Hashes the archive front to back: layer bytes as the verifier hands them over, the
    /// rest (headers, metadata, padding) read from the file. Bytes of a layer that fails
    /// verification and is fetched again were hashed in vain: the archive is then hashed anew
    /// from the file at the end (a rare path: only resumed or reused blobs are refetched).
    fn checksummer(
        &self,
        pieces: Receiver<Piece>,
        spare: SyncSender<Vec<u8>>,
        total_len: u64,
    ) -> Result<Digest, FetchError> {
        let mut hasher = Hasher::sha256();
        let mut buf = vec![0u8; PIECE as usize];
        let mut pos = 0;
        let mut invalid = false;
        for piece in pieces {
            match piece {
                Piece::Invalidate => invalid = true,
                Piece::Bytes { offset, data } => {
                    if !invalid {
                        self.part
                            .hash_range(pos, offset - pos, &mut hasher, &mut buf)?;
                        hasher.update(&data);
                        pos = offset + data.len() as u64;
                    }
                    let _ = spare.try_send(data);
                }
            }
        }
        if self.stopped() {
            return Err(FetchError::Interrupted);
        }
        if invalid {
            hasher = Hasher::sha256();
            pos = 0;
        }
        self.part
            .hash_range(pos, total_len - pos, &mut hasher, &mut buf)?;
        tracing::debug!(
            elapsed_ms = self.started.elapsed().as_millis(),
            "archive checksummed"
        );
        Ok(hasher.finish())
    }
}

/// The first byte position of a `Content-Range: bytes START-END/TOTAL` header.
fn range_start(value: &str) -> Option<u64> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    rest.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_start() {
        assert_eq!(range_start("bytes 100-199/200"), Some(100));
        assert_eq!(range_start("bytes 0-0/1"), Some(0));
        assert_eq!(range_start("bytes */200"), None);
        assert_eq!(range_start("items 1-2/3"), None);
    }
}

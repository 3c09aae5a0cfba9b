//! Scheduling: which chunk of which layer a worker takes next, and the bookkeeping of what is
//! on disk, kept in one [`BlobState`] per layer.
//!
//! Work is handed out lowest archive offset first, so the written part of the archive grows
//! from the front and the verifier behind it never waits long. A chunk's progress is recorded
//! as its bytes land (in memory and in the part file's journal), so a dropped connection, or a
//! rerun after a kill, continues where the bytes stopped.

use std::sync::MutexGuard;

use super::{CHUNK, Layer, Transfer};
use crate::error::FetchError;

/// Where a chunk stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    Pending,
    InFlight,
    Done,
}

/// One chunk of a layer.
#[derive(Debug, Clone, Copy)]
pub(super) struct ChunkState {
    pub status: Chunk,
    /// Bytes on disk from the chunk's start (where a pending chunk resumes).
    pub written: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Fetched in ranged chunks.
    Ranged,
    /// The registry ignores `Range`: the worker that found out fetches the blob whole.
    Whole,
}

/// Everything the transfer knows about one layer.
#[derive(Debug)]
pub(super) struct BlobState {
    pub chunks: Vec<ChunkState>,
    pub mode: Mode,
    /// Reporter id, assigned when the layer's first chunk starts.
    pub id: Option<usize>,
    /// Whether its bytes came (partly) from disk: an earlier run, or an earlier archive.
    pub resumed: bool,
}

impl BlobState {
    /// A layer of which `progress[i]` bytes of chunk `i` (of `lens[i]`) are already on disk.
    pub fn new(progress: &[u64], lens: &[u64]) -> Self {
        BlobState {
            chunks: progress
                .iter()
                .zip(lens)
                .map(|(p, len)| ChunkState {
                    status: if p == len {
                        Chunk::Done
                    } else {
                        Chunk::Pending
                    },
                    written: *p,
                })
                .collect(),
            mode: Mode::Ranged,
            id: None,
            resumed: progress.iter().any(|p| *p > 0),
        }
    }

    /// Bytes on disk in all.
    pub fn written(&self) -> u64 {
        self.chunks.iter().map(|c| c.written).sum()
    }

    /// Forgets everything on disk: the blob is fetched again from byte 0.
    pub fn reset(&mut self) {
        for c in &mut self.chunks {
            *c = ChunkState {
                status: Chunk::Pending,
                written: 0,
            };
        }
        self.mode = Mode::Ranged;
        self.resumed = false;
    }
}

/// The state every thread of a transfer shares, behind one lock.
pub(super) struct State {
    pub blobs: Vec<BlobState>,
    /// Layers verified so far, in archive order.
    pub verified: usize,
    /// Everything verified, or stopped.
    pub finished: bool,
}

/// A piece of work: one chunk of one layer.
pub(super) struct Task {
    pub layer: usize,
    pub index: u32,
}

impl Layer {
    pub(super) fn chunks(&self) -> u32 {
        self.blob.size.div_ceil(CHUNK) as u32
    }

    pub(super) fn chunk_range(&self, index: u32) -> (u64, u64) {
        let start = u64::from(index) * CHUNK;
        (start, (start + CHUNK).min(self.blob.size))
    }

    /// The length of each chunk.
    pub(super) fn chunk_lens(&self) -> Vec<u64> {
        (0..self.chunks())
            .map(|i| {
                let (a, b) = self.chunk_range(i);
                b - a
            })
            .collect()
    }
}

impl Transfer<'_> {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("transfer state")
    }

    /// Takes tasks until everything is done or the transfer stopped.
    pub(super) fn worker(&self) {
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
            let blob = &mut st.blobs[l];
            if blob.mode == Mode::Whole {
                continue;
            }
            if let Some(i) = blob.chunks.iter().position(|c| c.status == Chunk::Pending) {
                blob.chunks[i].status = Chunk::InFlight;
                self.start_report(blob, l);
                return Some(Task {
                    layer: l,
                    index: i as u32,
                });
            }
        }
        None
    }

    fn start_report(&self, blob: &mut BlobState, l: usize) {
        if blob.id.is_none() {
            blob.id = Some(
                self.reporter
                    .on_blob_start(&self.layers[l].blob, blob.written()),
            );
        }
    }

    /// The reporter id of layer `l`.
    pub(super) fn id(&self, l: usize) -> usize {
        self.lock().blobs[l].id.unwrap_or(0)
    }

    /// Where chunk `index` of layer `l` resumes, counted from the layer's start.
    pub(super) fn resume_at(&self, l: usize, index: u32) -> u64 {
        let (start, _) = self.layers[l].chunk_range(index);
        start + self.lock().blobs[l].chunks[index as usize].written
    }

    /// The registry ignores `Range`: layer `l` is fetched whole by the worker that found out,
    /// and its chunks in flight go back to pending (the whole stream marks them done).
    pub(super) fn switch_to_whole(&self, l: usize) {
        let mut st = self.lock();
        let blob = &mut st.blobs[l];
        blob.mode = Mode::Whole;
        for c in blob.chunks.iter_mut() {
            if c.status == Chunk::InFlight {
                c.status = Chunk::Pending;
            }
        }
    }

    pub(super) fn chunk_done(&self, l: usize, index: u32) -> Result<(), FetchError> {
        let (a, b) = self.layers[l].chunk_range(index);
        {
            let mut st = self.lock();
            st.blobs[l].chunks[index as usize] = ChunkState {
                status: Chunk::Done,
                written: b - a,
            };
        }
        self.changed.notify_all();
        self.part
            .record_chunk(&self.layers[l].blob.digest, index, b - a, false)
    }

    /// Records that layer `l`'s bytes up to `pos` are on disk, for the chunk holding `pos - 1`
    /// (a rerun resumes such a chunk where it stopped instead of at its start).
    pub(super) fn chunk_progress(&self, l: usize, pos: u64) -> Result<(), FetchError> {
        let layer = &self.layers[l];
        let index = ((pos - 1) / CHUNK) as u32;
        let (a, _) = layer.chunk_range(index);
        self.lock().blobs[l].chunks[index as usize].written = pos - a;
        self.part
            .record_chunk(&layer.blob.digest, index, pos - a, false)
    }

    /// The end of the run of done chunks that starts at byte `pos` of layer `l`.
    pub(super) fn contiguous_end(&self, st: &State, l: usize, pos: u64) -> u64 {
        let layer = &self.layers[l];
        let chunks = &st.blobs[l].chunks;
        let mut end = pos;
        let mut i = (pos / CHUNK) as usize;
        while i < chunks.len() && chunks[i].status == Chunk::Done {
            end = layer.chunk_range(i as u32).1;
            i += 1;
        }
        end
    }
}

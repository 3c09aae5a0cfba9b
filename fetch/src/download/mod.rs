//! Moving layer bytes into the archive, and checking them.
//!
//! Three jobs run side by side on threads that share one [`Transfer`]:
//!
//! - scheduling ([`schedule`]): layers are cut into chunks, handed to a pool of workers
//!   lowest archive offset first, so the written part of the archive grows from the front like
//!   one fast stream; one [`schedule::BlobState`] per layer records what is on disk;
//! - transfer ([`transfer`]): each worker fetches its chunk with `Range`, writes the bytes
//!   straight to their offset and resumes after a dropped connection;
//! - verification ([`verify`]): behind the front, the verifier hashes each layer against its
//!   digest and the checksummer hashes the whole archive for `FILE.sha256`.
//!
//! Workers only move bytes; nothing counts until the verifier has passed over it.

mod schedule;
mod transfer;
mod verify;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use ferry_oci::archive::BlobRef;
use ferry_oci::digest::Digest;

use self::schedule::{BlobState, State};
use self::verify::PIECES_IN_FLIGHT;
use crate::error::FetchError;
use crate::http::retry::RetryPolicy;
use crate::partial::PartFile;
use crate::registry::Registry;
use crate::reporter::Reporter;
use crate::reuse::BlobIndex;

/// Bytes per ranged request: large enough that request overhead vanishes, small enough that
/// several workers share one big layer and an interrupted run loses little.
pub const CHUNK: u64 = 16 << 20;

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

/// What [`transfer`] did.
pub struct Transferred {
    /// sha256 of the whole archive, or of each of its parts.
    pub checksums: Vec<Digest>,
    /// Layer bytes received over the network in this run.
    pub downloaded: u64,
    /// Layer bytes copied from earlier archives instead.
    pub reused: u64,
}

/// What the threads of one transfer share.
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
    let mut blobs = Vec::with_capacity(layers.len());
    for layer in layers {
        let lens = layer.chunk_lens();
        let mut progress = part.chunk_progress(&layer.blob.digest, &lens);
        if progress.iter().all(|p| *p == 0)
            && let Some(found) = reuse.and_then(|index| index.find(&layer.blob))
            && reuse_blob(part, layer, &found, &lens)
        {
            reused += layer.blob.size;
            progress = lens.clone();
        }
        present += progress.iter().sum::<u64>();
        blobs.push(BlobState::new(&progress, &lens));
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
            blobs,
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
        checksums: checksum.expect("no error means a checksum"),
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

    fn what(&self, l: usize) -> String {
        format!("blob {}", self.layers[l].blob.digest)
    }
}

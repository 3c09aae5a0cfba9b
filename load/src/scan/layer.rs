//! Unpacking one layer-looking entry of an archive: decompressed, hashed (its diff_id) and fed
//! entry by entry to a sink, in one pass.
//!
//! `ferry verify` does it on the scanning thread, from the archive stream itself. A load does
//! it on worker threads, several layers at once: the scanner stages each layer's raw bytes
//! (see [`super::spool`]) and goes on with the archive while a worker reads them behind it.
//! Before a worker writes anything it looks at the first bytes of the decompressed layer: when
//! the store may already have that layer, it only hashes the layer to the end and, if the
//! store does have it, writes nothing at all.

use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use ferry_oci::{Digest, Hasher, VerifyingReader};

use super::spool::{SpoolReader, State};
use super::{COPY_BUF, LayerOutcome, LayerSink, LayerStats, Unpacker};
use crate::compression::{self, Format};
use crate::error::LayerError;
use crate::tar::{TarError, TarReader};

/// How much of the decompressed stream identifies a layer before its diff_id is known.
pub const HEAD_LEN: u64 = 64 * 1024;
/// Layers unpacked at once (each holds a decompressor and a tar reader; their files are made
/// by the store's pool of writers).
const WORKERS: usize = 3;

/// A layer's decompressed stream, hashed as it is read unless its diff_id is its raw digest
/// (a plain tar), which the scanner computes anyway.
pub enum Decoded<'a> {
    /// Hashing: the diff_id comes from here.
    Hashing(Box<VerifyingReader<Box<dyn Read + 'a>>>),
    /// A plain tar whose raw sha256 is the diff_id.
    Plain(Box<dyn Read + 'a>),
}

impl Read for Decoded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoded::Hashing(r) => r.read(buf),
            Decoded::Plain(r) => r.read(buf),
        }
    }
}

impl<'a> Decoded<'a> {
    /// Decompresses `raw`.
    pub fn open(
        raw: impl Read + 'a,
        format: Format,
        diff_is_raw: bool,
    ) -> Result<Decoded<'a>, LayerError> {
        let buffered = BufReader::with_capacity(COPY_BUF, raw);
        let decoder = compression::decoder(format, buffered)
            .map_err(|e| LayerError::Decompress(format.name(), e))?;
        Ok(if diff_is_raw && format == Format::Tar {
            Decoded::Plain(decoder)
        } else {
            Decoded::Hashing(Box::new(VerifyingReader::hashing(
                decoder,
                Hasher::sha256(),
            )))
        })
    }

    /// The diff_id, when this stream hashed it (call at its end).
    pub fn diff_id(self) -> Option<Digest> {
        match self {
            Decoded::Hashing(r) => Some(r.into_digest().0),
            Decoded::Plain(_) => None,
        }
    }
}

/// Feeds the layer tar `stream` to `sink` (or only checks it is a tar, without one), then
/// reads it to its end: the diff_id covers the whole decompressed stream, padding included.
pub fn apply_entries(
    stream: &mut dyn Read,
    format: Format,
    mut sink: Option<&mut dyn LayerSink>,
) -> Result<LayerStats, LayerError> {
    let mut layer = TarReader::new(&mut *stream);
    loop {
        match layer.next_entry() {
            Ok(Some(h)) => {
                if let Some(s) = sink.as_deref_mut() {
                    s.entry(&h, &mut layer.data())?;
                }
            }
            Ok(None) => break,
            Err(TarError::Io(io)) => return Err(LayerError::Decompress(format.name(), io)),
            Err(other) => return Err(LayerError::Tar(other)),
        }
    }
    drop(layer);
    io::copy(stream, &mut io::sink()).map_err(|e| LayerError::Decompress(format.name(), e))?;
    match sink {
        Some(s) => s.finish(),
        None => Ok(LayerStats::default()),
    }
}

/// Where a worker reads a layer's raw bytes.
pub enum Source {
    /// Staged by the scanner as it reads them.
    Spool {
        /// The reading end (taken by the first read).
        reader: Option<SpoolReader>,
        /// The scanner's progress (and the raw digest at the end).
        state: Arc<State>,
        /// The staged file, to read again from the start.
        path: PathBuf,
    },
    /// A blob the store already has (the archive's copy is only hashed by the scanner).
    Stored {
        /// The stored blob.
        path: PathBuf,
        /// Its digest (the name the archive gave it, which the scanner checks).
        digest: Digest,
    },
}

impl Source {
    fn reader(&mut self) -> io::Result<Box<dyn Read + Send>> {
        match self {
            Source::Spool { reader, path, .. } => match reader.take() {
                Some(r) => Ok(Box::new(r)),
                None => Ok(Box::new(std::fs::File::open(path)?)),
            },
            Source::Stored { path, .. } => Ok(Box::new(std::fs::File::open(path)?)),
        }
    }

    /// The whole blob from its start, once it is complete.
    fn reopen(&self) -> io::Result<Box<dyn Read + Send>> {
        let path = match self {
            Source::Spool { path, .. } | Source::Stored { path, .. } => path,
        };
        Ok(Box::new(std::fs::File::open(path)?))
    }

    /// The raw digest (waits for the scanner to finish the blob).
    fn raw_digest(&self) -> Option<Digest> {
        match self {
            Source::Spool { state, .. } => state.digest(),
            Source::Stored { digest, .. } => Some(digest.clone()),
        }
    }
}

/// Unpacks one layer from `source` for the store behind `unpacker` (see the module comment).
pub fn work(
    mut source: Source,
    id: usize,
    format: Format,
    diff_is_raw: bool,
    unpacker: &dyn Unpacker,
) -> LayerOutcome {
    let done = |diff_id, unpacked, result, head| LayerOutcome {
        format,
        diff_id,
        unpacked,
        result,
        head,
    };
    let plain = diff_is_raw && format == Format::Tar;
    // A stored plain tar: its name is its diff_id, nothing needs reading to know it.
    if let Source::Stored { digest, .. } = &source
        && plain
        && unpacker.has_layer(digest)
    {
        return done(None, false, Ok(LayerStats::default()), None);
    }
    let reader = match source.reader() {
        Ok(r) => r,
        Err(e) => return done(None, false, Err(read_failed(format, e)), None),
    };
    let mut decoded = match Decoded::open(reader, format, diff_is_raw) {
        Ok(d) => d,
        Err(e) => return done(None, false, Err(e), None),
    };
    let mut head = match read_head(&mut decoded, format) {
        Ok(h) => h,
        Err(e) => return done(None, false, Err(e), None),
    };
    let head_digest = ferry_oci::digest::sha256(&head);
    if unpacker.may_have(&head_digest) {
        if let Err(e) = io::copy(&mut decoded, &mut io::sink()) {
            return done(None, false, Err(read_failed(format, e)), None);
        }
        let diff_id = if plain {
            source.raw_digest()
        } else {
            decoded.diff_id()
        };
        if let Some(d) = diff_id.as_ref().filter(|d| unpacker.has_layer(d)) {
            // Known: verified against its diff_id (by the caller), nothing written.
            let diff_id = (!plain).then(|| d.clone());
            return done(diff_id, false, Ok(LayerStats::default()), Some(head_digest));
        }
        // Not stored after all: unpacked from the start of the staged copy.
        decoded = match source
            .reopen()
            .map_err(|e| read_failed(format, e))
            .and_then(|r| Decoded::open(r, format, diff_is_raw))
        {
            Ok(d) => d,
            Err(e) => return done(None, false, Err(e), None),
        };
        head = match read_head(&mut decoded, format) {
            Ok(h) => h,
            Err(e) => return done(None, false, Err(e), None),
        };
    }
    let mut sink = match unpacker.sink(id) {
        Ok(s) => s,
        Err(e) => return done(None, false, Err(e), None),
    };
    let result = {
        let mut stream = io::Cursor::new(head).chain(&mut decoded);
        apply_entries(&mut stream, format, Some(&mut *sink))
    };
    let diff_id = if result.is_ok() {
        decoded.diff_id()
    } else {
        None
    };
    done(diff_id, true, result, Some(head_digest))
}

/// Unpacks a whole layer blob into `sink` (a stored blob unpacked again for another chain):
/// its diff_id, the digest of its head (see [`HEAD_LEN`]) and what was unpacked. Only the
/// store (Unix) does that.
#[cfg(unix)]
pub fn unpack_blob(
    path: &std::path::Path,
    sink: &mut dyn LayerSink,
) -> Result<(Digest, Digest, LayerStats), LayerError> {
    let file = std::fs::File::open(path).map_err(|e| LayerError::Io {
        action: "open the blob",
        entry: path.display().to_string(),
        source: e,
    })?;
    let mut raw = BufReader::with_capacity(COPY_BUF, file);
    let head = compression::read_head(&mut raw).map_err(|e| LayerError::Decompress("blob", e))?;
    let format = compression::sniff(&head);
    if !format.is_tar_stream() {
        return Err(LayerError::NotALayer);
    }
    let mut decoded = Decoded::open(io::Cursor::new(head).chain(raw), format, false)?;
    let layer_head = read_head(&mut decoded, format)?;
    let head_digest = ferry_oci::digest::sha256(&layer_head);
    let stats = {
        let mut stream = io::Cursor::new(layer_head).chain(&mut decoded);
        apply_entries(&mut stream, format, Some(sink))?
    };
    let diff_id = decoded
        .diff_id()
        .expect("a blob unpacked again is always hashed");
    Ok((diff_id, head_digest, stats))
}

fn read_head(decoded: &mut Decoded<'_>, format: Format) -> Result<Vec<u8>, LayerError> {
    let mut head = Vec::with_capacity(HEAD_LEN as usize);
    decoded
        .take(HEAD_LEN)
        .read_to_end(&mut head)
        .map_err(|e| read_failed(format, e))?;
    Ok(head)
}

fn read_failed(format: Format, e: io::Error) -> LayerError {
    LayerError::Decompress(format.name(), e)
}

/// The layers being unpacked, at most [`WORKERS`] at once.
#[derive(Default)]
pub struct Workers {
    slots: Arc<(Mutex<usize>, Condvar)>,
    running: Vec<(usize, JoinHandle<LayerOutcome>)>,
}

impl Workers {
    /// Starts unpacking entry `id` from `source` on a worker of its own.
    pub fn spawn(
        &mut self,
        id: usize,
        source: Source,
        format: Format,
        diff_is_raw: bool,
        unpacker: Arc<dyn Unpacker>,
    ) -> io::Result<()> {
        let slots = self.slots.clone();
        let handle = std::thread::Builder::new()
            .name(format!("ferry-layer-{id}"))
            .spawn(move || {
                {
                    let mut busy = slots.0.lock().expect("slots lock");
                    while *busy >= WORKERS {
                        busy = slots.1.wait(busy).expect("slots lock");
                    }
                    *busy += 1;
                }
                let outcome = work(source, id, format, diff_is_raw, &*unpacker);
                *slots.0.lock().expect("slots lock") -= 1;
                slots.1.notify_all();
                outcome
            })?;
        self.running.push((id, handle));
        Ok(())
    }

    /// Waits for every layer; their outcomes by entry id.
    pub fn join(self) -> Vec<(usize, LayerOutcome)> {
        self.running
            .into_iter()
            .map(|(id, h)| {
                let outcome = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                (id, outcome)
            })
            .collect()
    }
}

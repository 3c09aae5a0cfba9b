//! One pass over an archive: every entry is classified, hashed and, when it is a layer,
//! unpacked while it streams past. Nothing is extracted to a temporary directory and the
//! archive is never copied.
//!
//! ## Metadata that comes after the blobs
//!
//! `docker save` (Docker ≤ 24 and ≥ 25), skopeo's docker-archive and oci-archive, and most
//! other writers put `manifest.json` / `index.json` at the end (they tar a directory in
//! lexical order), so when a layer streams past nobody has said yet what it is. ferry does
//! not buffer the archive to find out. Instead every entry is judged by its first bytes:
//!
//! - a tar, gzip, zstd, xz or bzip2 stream is treated as a layer *speculatively*: its raw bytes
//!   go to a staged blob, its decompressed bytes are hashed (the diff_id) and unpacked into a
//!   staged snapshot, all in the same pass;
//! - anything else that is small (JSON: manifests, configs, indexes, `repositories`) is kept in
//!   memory, within a budget;
//! - larger unknown entries are hashed and dropped.
//!
//! When the stream ends, the metadata decides ([`crate::resolve`]): staged blobs and snapshots
//! that belong to the chosen images are verified against the config's diff_ids and committed,
//! the rest is thrown away. An entry that failed to unpack (not really a tar, an unsafe path)
//! only fails the load if the metadata says it is a layer.
//!
//! When the metadata comes first (ferry's own archives), the plan is known before the first
//! layer arrives, and blobs no chosen image needs (other platforms) are skipped unread. Blobs
//! named `blobs/<alg>/<hex>` that the store already has are only hashed, not unpacked again.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, BufReader, Read, Write};

use ferry_oci::{Digest, DigestError, Hasher, Platform};

use crate::compression::{self, Format};
use crate::error::{LayerError, LoadError};
use crate::path;
use crate::reporter::Reporter;
use crate::tar::{Header, Kind, TarError, TarReader};

/// Entries up to this size that are not layers are kept in memory (configs, manifests).
const SMALL_LIMIT: u64 = 16 * 1024 * 1024;
/// The total kept in memory; past it, further metadata is refused rather than eating RAM.
const SMALL_BUDGET: u64 = 64 * 1024 * 1024;
/// Copy buffer for blob data.
const COPY_BUF: usize = 256 * 1024;

/// Receives one layer's unpacked entries.
pub trait LayerSink {
    /// One entry of the layer tar; `data` yields its content (regular files).
    fn entry(&mut self, header: &Header, data: &mut dyn Read) -> Result<(), LayerError>;
    /// The layer ended cleanly.
    fn finish(&mut self) -> Result<LayerStats, LayerError>;
}

/// What unpacking a layer produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Bytes of regular-file content.
    pub bytes: u64,
    /// Entries applied.
    pub entries: u64,
    /// Device nodes skipped because ferry does not run as root.
    pub devices_skipped: u64,
}

/// Where a scan puts what it keeps. The load implements it with staging files in the store;
/// `verify` with checks only.
pub trait Stage {
    /// Whether the store already holds this blob, so the archive's copy is only hashed.
    fn has_blob(&self, _digest: &Digest) -> bool {
        false
    }
    /// Where the raw bytes of entry `id` go, if they are kept.
    fn blob_writer(&mut self, id: usize) -> Result<Option<Box<dyn Write>>, LoadError>;
    /// Where the unpacked entries of entry `id` go, if it is unpacked.
    fn layer_sink(&mut self, id: usize) -> Result<Option<Box<dyn LayerSink>>, LoadError>;
    /// Entry `id` passed completely; `digest` is what its raw bytes hash to.
    fn blob_done(&mut self, _id: usize, _digest: &Digest) -> Result<(), LoadError> {
        Ok(())
    }
}

/// What happened to a layer-looking entry.
#[derive(Debug)]
pub struct LayerOutcome {
    /// What its first bytes said.
    pub format: Format,
    /// sha256 of the decompressed stream, when it was decompressed to the end.
    pub diff_id: Option<Digest>,
    /// Whether a sink received its entries.
    pub unpacked: bool,
    /// How unpacking went (`Ok` with zero stats when it was not unpacked).
    pub result: Result<LayerStats, LayerError>,
}

/// A regular file of the archive.
#[derive(Debug)]
pub struct FileEntry {
    /// Position in the archive (0-based, counting regular files).
    pub id: usize,
    /// Size in bytes.
    pub size: u64,
    /// Digest of the raw bytes (sha256, or the algorithm its `blobs/<alg>/` path names);
    /// `None` when the entry was skipped unread.
    pub digest: Option<Digest>,
    /// The bytes, for small non-layer entries.
    pub data: Option<Vec<u8>>,
    /// Set for entries that look like layers.
    pub layer: Option<LayerOutcome>,
}

/// Everything the pass learnt about the archive.
#[derive(Debug, Default)]
pub struct Contents {
    /// Regular files by clean path.
    pub files: BTreeMap<String, FileEntry>,
    /// Symbolic and hard links: clean path → clean target path.
    pub links: BTreeMap<String, String>,
    /// The outer compression.
    pub outer: Option<Format>,
}

impl Contents {
    /// The file at `path`, following links inside the archive.
    pub fn file(&self, path: &str) -> Option<(&str, &FileEntry)> {
        let mut p = path;
        for _ in 0..16 {
            if let Some((k, f)) = self.files.get_key_value(p) {
                return Some((k.as_str(), f));
            }
            p = self.links.get(p)?;
        }
        None
    }

    /// The entry holding `digest` in OCI-layout form (`blobs/<alg>/<hex>`).
    pub fn blob(&self, digest: &Digest) -> Option<(&str, &FileEntry)> {
        self.file(&ferry_oci::digest::blob_path(digest))
    }
}

/// Decides, once the metadata is known, which paths are needed (see the module comment).
pub type Planner<'a> = dyn FnMut(&Contents) -> Option<HashSet<String>> + 'a;

/// Reads the whole archive from `input` (any outer compression), feeding `stage`.
pub fn scan(
    input: &mut dyn Read,
    stage: &mut dyn Stage,
    planner: &mut Planner<'_>,
    reporter: &dyn Reporter,
) -> Result<Contents, LoadError> {
    let counted = Counting {
        inner: input,
        count: 0,
        reported: 0,
        reporter,
    };
    let (format, stream) = compression::open_stream(counted).map_err(LoadError::Read)?;
    if format == Format::Other {
        return Err(LoadError::NotAnArchive(
            "it is neither a tar archive nor gzip, zstd, xz or bzip2".into(),
        ));
    }
    let mut tar = TarReader::new(BufReader::with_capacity(COPY_BUF, stream));
    let mut contents = Contents {
        outer: Some(format),
        ..Contents::default()
    };
    let mut kept: u64 = 0;
    let mut plan: Option<HashSet<String>> = None;
    let mut next_id = 0;
    let mut buf = vec![0u8; COPY_BUF];
    while let Some(h) = tar.next_entry().map_err(outer_tar_error)? {
        let raw = String::from_utf8(h.path.clone()).map_err(|_| LoadError::Unsafe {
            entry: h.display_path(),
            reason: "the path is not UTF-8".into(),
        })?;
        let clean = match path::archive_path("", &raw) {
            Ok(p) => p,
            Err(path::PathError::Empty) => continue,
            Err(e) => {
                return Err(LoadError::Unsafe {
                    entry: raw,
                    reason: format!("{e}: archive entries must stay inside the archive"),
                });
            }
        };
        match h.kind {
            Kind::Dir => continue,
            Kind::Symlink | Kind::Hardlink => {
                let link = String::from_utf8_lossy(&h.link).into_owned();
                // A symlink's target is relative to its directory, a hardlink's to the root.
                let base = if h.kind == Kind::Symlink {
                    path::parent(&clean)
                } else {
                    ""
                };
                let target = path::archive_path(base, &link).map_err(|e| LoadError::Unsafe {
                    entry: clean.clone(),
                    reason: format!("links to `{link}` ({e}): links must stay inside the archive"),
                })?;
                contents.links.insert(clean, target);
                continue;
            }
            Kind::File => {}
            other => {
                return Err(LoadError::Unsafe {
                    entry: clean,
                    reason: format!(
                        "is a {}; image archives hold only files, directories and links",
                        kind_name(other)
                    ),
                });
            }
        }
        let id = next_id;
        next_id += 1;
        if plan.as_ref().is_some_and(|needed| !needed.contains(&clean)) {
            contents.files.insert(
                clean,
                FileEntry {
                    id,
                    size: h.size,
                    digest: None,
                    data: None,
                    layer: None,
                },
            );
            continue;
        }
        let named = named_digest(&clean);
        let mut hasher = match &named {
            Some(d) => Hasher::for_digest(d).map_err(|e| LoadError::Corrupt {
                what: format!("entry `{clean}`"),
                source: e,
            })?,
            None => Hasher::sha256(),
        };
        let mut data = tar.data();
        let head = compression::read_head(&mut data).map_err(|e| read_error(e, &clean))?;
        let format = compression::sniff(&head);
        let mut entry = FileEntry {
            id,
            size: h.size,
            digest: None,
            data: None,
            layer: None,
        };
        if format.is_tar_stream() {
            if named.as_ref().is_some_and(|d| stage.has_blob(d)) {
                hasher.update(&head);
                copy_hashing(&mut data, &mut hasher, None, &mut buf)
                    .map_err(|e| read_error(e, &clean))?;
                entry.layer = Some(LayerOutcome {
                    format,
                    diff_id: None,
                    unpacked: false,
                    result: Ok(LayerStats::default()),
                });
            } else {
                let writer = stage.blob_writer(id)?;
                let sink = stage.layer_sink(id)?;
                let outcome =
                    unpack_layer(head, &mut data, format, &mut hasher, writer, sink, &clean)?;
                entry.layer = Some(outcome);
            }
        } else if h.size <= SMALL_LIMIT && kept + h.size <= SMALL_BUDGET {
            let mut bytes = head;
            data.read_to_end(&mut bytes)
                .map_err(|e| read_error(e, &clean))?;
            hasher.update(&bytes);
            kept += bytes.len() as u64;
            entry.data = Some(bytes);
        } else {
            hasher.update(&head);
            copy_hashing(&mut data, &mut hasher, None, &mut buf)
                .map_err(|e| read_error(e, &clean))?;
        }
        let digest = hasher.finish();
        if let Some(named) = &named
            && named != &digest
        {
            return Err(LoadError::Corrupt {
                what: format!("blob `{clean}`"),
                source: DigestError::Mismatch {
                    expected: named.clone(),
                    actual: digest,
                },
            });
        }
        if let Some(layer) = &mut entry.layer
            && layer.format == Format::Tar
            && layer.diff_id.is_none()
            && layer.result.is_ok()
            && digest.algorithm() == &ferry_oci::spec::DigestAlgorithm::Sha256
        {
            layer.diff_id = Some(digest.clone());
        }
        stage.blob_done(id, &digest)?;
        entry.digest = Some(digest);
        if let Some(previous) = contents.files.get(&clean) {
            if previous.digest != entry.digest {
                return Err(LoadError::Unsafe {
                    entry: clean,
                    reason: "appears twice in the archive with different content".into(),
                });
            }
            continue;
        }
        let is_metadata = entry.data.is_some();
        contents.files.insert(clean, entry);
        if is_metadata && plan.is_none() {
            plan = planner(&contents);
        }
    }
    // Whatever follows the end-of-archive blocks (record padding) is not read.
    Ok(contents)
}

/// The digest an OCI-layout path names (`blobs/sha256/<hex>`), if it is one.
pub fn named_digest(path: &str) -> Option<Digest> {
    let rest = path.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    if hex.contains('/') {
        return None;
    }
    ferry_oci::digest::parse(&format!("{alg}:{hex}")).ok()
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Char => "character device",
        Kind::Block => "block device",
        Kind::Fifo => "named pipe",
        _ => "special entry",
    }
}

fn outer_tar_error(e: TarError) -> LoadError {
    match e {
        TarError::Io(io) => LoadError::Read(io),
        other => LoadError::BadArchive(other),
    }
}

fn read_error(e: io::Error, entry: &str) -> LoadError {
    match e.get_ref().and_then(|i| i.downcast_ref::<TarError>()) {
        Some(TarError::Truncated(_)) => {
            LoadError::BadArchive(TarError::Truncated(format!("entry `{entry}`")))
        }
        _ => LoadError::Read(e),
    }
}

fn copy_hashing(
    r: &mut dyn Read,
    hasher: &mut Hasher,
    mut w: Option<&mut dyn Write>,
    buf: &mut [u8],
) -> io::Result<u64> {
    let mut total = 0;
    loop {
        let n = match r.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        if let Some(w) = w.as_deref_mut() {
            w.write_all(&buf[..n])?;
        }
        total += n as u64;
    }
}

/// The raw side of a layer: hashes and stores what the decompressor pulls through it, and
/// remembers a failure of the archive itself (as opposed to the layer's content).
struct Tee<'a> {
    head: io::Cursor<Vec<u8>>,
    inner: &'a mut dyn Read,
    hasher: &'a mut Hasher,
    writer: Option<Box<dyn Write>>,
    failed: Option<io::Error>,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.head.read(buf)? {
            0 => match self.inner.read(buf) {
                Ok(n) => n,
                Err(e) => return Err(self.fail(e)),
            },
            n => n,
        };
        self.hasher.update(&buf[..n]);
        if let Some(w) = &mut self.writer
            && let Err(e) = w.write_all(&buf[..n])
        {
            return Err(self.fail(e));
        }
        Ok(n)
    }
}

impl Tee<'_> {
    fn fail(&mut self, e: io::Error) -> io::Error {
        let copy = io::Error::new(e.kind(), e.to_string());
        self.failed = Some(e);
        copy
    }
}

/// Hashes whatever is read through it.
struct HashReader<R> {
    inner: R,
    hasher: Option<Hasher>,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Streams one layer-looking entry: raw bytes hashed and stored, decompressed bytes hashed
/// and unpacked. Failures of the layer's content are returned in the outcome; failures of the
/// archive or the staging area are errors.
fn unpack_layer(
    head: Vec<u8>,
    data: &mut dyn Read,
    format: Format,
    hasher: &mut Hasher,
    writer: Option<Box<dyn Write>>,
    mut sink: Option<Box<dyn LayerSink>>,
    entry: &str,
) -> Result<LayerOutcome, LoadError> {
    let raw_is_sha256 = hasher.algorithm() == "sha256";
    let mut tee = Tee {
        head: io::Cursor::new(head),
        inner: data,
        hasher,
        writer,
        failed: None,
    };
    let unpacked = sink.is_some();
    let mut result = Ok(LayerStats::default());
    let mut diff_id = None;
    {
        let decoded =
            match compression::decoder(format, BufReader::with_capacity(COPY_BUF, &mut tee)) {
                Ok(d) => Some(d),
                Err(e) => {
                    result = Err(LayerError::Decompress(format.name(), e));
                    None
                }
            };
        if let Some(decoded) = decoded {
            // An uncompressed layer's diff_id is its sha256 blob digest: hash it only once.
            let own_hash = format != Format::Tar || !raw_is_sha256;
            let mut hashed = HashReader {
                inner: decoded,
                hasher: own_hash.then(Hasher::sha256),
            };
            let mut layer = TarReader::new(&mut hashed);
            loop {
                match layer.next_entry() {
                    Ok(Some(h)) => {
                        if let Some(s) = sink.as_mut()
                            && let Err(e) = s.entry(&h, &mut layer.data())
                        {
                            result = Err(e);
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        result = Err(match e {
                            TarError::Io(io) => LayerError::Decompress(format.name(), io),
                            other => LayerError::Tar(other),
                        });
                        break;
                    }
                }
            }
            if result.is_ok() {
                // The diff_id covers the whole decompressed stream, padding included.
                match io::copy(&mut hashed, &mut io::sink()) {
                    Ok(_) => diff_id = hashed.hasher.take().map(Hasher::finish),
                    Err(e) => result = Err(LayerError::Decompress(format.name(), e)),
                }
                if result.is_ok()
                    && let Some(s) = sink.as_mut()
                {
                    result = s.finish();
                }
            }
        }
    }
    if let Some(e) = tee.failed.take() {
        return Err(read_error(e, entry));
    }
    // Whatever the decompressor left (after an error, or trailing bytes) still belongs to
    // the blob and to its digest.
    io::copy(&mut tee, &mut io::sink()).map_err(|e| match tee.failed.take() {
        Some(orig) => read_error(orig, entry),
        None => read_error(e, entry),
    })?;
    if let Some(w) = tee.writer.as_mut() {
        w.flush().map_err(LoadError::Stage)?;
    }
    Ok(LayerOutcome {
        format,
        // An uncompressed layer's diff_id is its blob digest, which is only known once the
        // entry ended; the caller fills it in.
        diff_id,
        unpacked,
        result,
    })
}

/// Counts the archive's bytes as they are read, for progress.
struct Counting<'a> {
    inner: &'a mut dyn Read,
    count: u64,
    reported: u64,
    reporter: &'a dyn Reporter,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if n == 0 || self.count - self.reported >= 4 * 1024 * 1024 {
            self.reported = self.count;
            self.reporter.on_progress(self.count);
        }
        Ok(n)
    }
}

/// The platform to choose from multi-platform archives when none is given: this machine's.
pub fn host_platform() -> Platform {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    };
    format!("linux/{arch}").parse().unwrap_or_default()
}

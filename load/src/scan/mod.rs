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
//! named `blobs/<alg>/<hex>` that the store already has are only hashed, not staged again.
//!
//! A load unpacks layers off the scanning thread (see its `layer` module): the scanner stages a layer's
//! raw bytes and goes on reading the archive while workers decompress and apply layers, several
//! at once, and skip those whose snapshot the store already has.

pub(crate) mod layer;
mod spool;

use std::collections::{BTreeMap, HashSet};
use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use ferry_oci::{Digest, DigestError, Hasher, Platform, VerifyingReader};

use self::layer::{Decoded, Source, Workers, apply_entries};
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

/// Where a scan puts what it keeps. `verify` checks layers on the scanning thread
/// ([`Stage::layer_sink`]); a load stages them for workers ([`Stage::unpacker`]).
pub trait Stage {
    /// Where the unpacked entries of entry `id` go, checked on the scanning thread.
    fn layer_sink(&mut self, _id: usize) -> Result<Option<Box<dyn LayerSink>>, LoadError> {
        Ok(None)
    }
    /// Who unpacks layers off the scanning thread, if anyone.
    fn unpacker(&self) -> Option<Arc<dyn Unpacker>> {
        None
    }
}

/// A store that layers are unpacked into by workers (see the `layer` module).
pub trait Unpacker: Send + Sync {
    /// Where the raw bytes of entry `id` are staged.
    fn spool_path(&self, id: usize) -> PathBuf;
    /// The stored copy of a blob the store already has: the archive's copy is only hashed.
    fn stored_blob(&self, digest: &Digest) -> Option<PathBuf>;
    /// Whether a layer whose decompressed stream starts with bytes hashing to `head` may be
    /// stored already (then it is hashed to its end before anything is written).
    fn may_have(&self, head: &Digest) -> bool;
    /// Whether the store has a snapshot of a layer with this diff_id.
    fn has_layer(&self, diff_id: &Digest) -> bool;
    /// Where the entries of layer `id` go.
    fn sink(&self, id: usize) -> Result<Box<dyn LayerSink + Send>, LayerError>;
    /// The whole archive was read and staged; workers may still be unpacking.
    fn archive_read(&self) {}
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
    /// sha256 of the first bytes of the decompressed stream (a load's workers only): how the
    /// store recognises a layer it has before its diff_id is known.
    pub head: Option<Digest>,
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
    let mut scanner = Scanner {
        unpacker: stage.unpacker(),
        stage,
        planner,
        contents: Contents {
            outer: Some(format),
            ..Contents::default()
        },
        kept: 0,
        plan: None,
        next_id: 0,
        buf: vec![0u8; COPY_BUF],
        workers: Workers::default(),
    };
    let read = scanner.read_all(&mut tar);
    if read.is_ok()
        && let Some(u) = &scanner.unpacker
    {
        u.archive_read();
    }
    // Workers read what the scanner staged: they end (with an error) once it gave up.
    let outcomes = std::mem::take(&mut scanner.workers).join();
    read?;
    let mut contents = scanner.contents;
    for (id, outcome) in outcomes {
        if let Some(f) = contents.files.values_mut().find(|f| f.id == id) {
            f.layer = Some(outcome);
            fill_plain_diff_id(f);
        }
    }
    // Whatever follows the end-of-archive blocks (record padding) is not read.
    Ok(contents)
}

/// An uncompressed layer's diff_id is its sha256 blob digest, known only once the entry ended.
fn fill_plain_diff_id(f: &mut FileEntry) {
    if let (Some(layer), Some(digest)) = (&mut f.layer, &f.digest)
        && layer.format == Format::Tar
        && layer.diff_id.is_none()
        && layer.result.is_ok()
        && digest.algorithm() == &ferry_oci::spec::DigestAlgorithm::Sha256
    {
        layer.diff_id = Some(digest.clone());
    }
}

/// The state of one pass over an archive.
struct Scanner<'s, 'p, 'q> {
    stage: &'s mut dyn Stage,
    unpacker: Option<Arc<dyn Unpacker>>,
    planner: &'p mut Planner<'q>,
    contents: Contents,
    /// Bytes of metadata kept in memory.
    kept: u64,
    /// The paths needed, once the metadata said so.
    plan: Option<HashSet<String>>,
    next_id: usize,
    buf: Vec<u8>,
    workers: Workers,
}

impl Scanner<'_, '_, '_> {
    fn read_all<R: Read>(&mut self, tar: &mut TarReader<R>) -> Result<(), LoadError> {
        while let Some(h) = tar.next_entry().map_err(outer_tar_error)? {
            let Some(clean) = clean_path(&h)? else {
                continue;
            };
            match h.kind {
                Kind::Dir => {}
                Kind::Symlink | Kind::Hardlink => self.link(&h, clean)?,
                Kind::File => self.file(&mut tar.data(), clean, h.size)?,
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
        }
        Ok(())
    }

    fn link(&mut self, h: &Header, clean: String) -> Result<(), LoadError> {
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
        self.contents.links.insert(clean, target);
        Ok(())
    }

    /// A regular file of the archive: hashed, and kept, staged or unpacked by what it is.
    fn file(&mut self, data: &mut dyn Read, clean: String, size: u64) -> Result<(), LoadError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut entry = FileEntry {
            id,
            size,
            digest: None,
            data: None,
            layer: None,
        };
        if self
            .plan
            .as_ref()
            .is_some_and(|needed| !needed.contains(&clean))
        {
            self.contents.files.insert(clean, entry);
            return Ok(());
        }
        let named = named_digest(&clean);
        let hasher = match &named {
            Some(d) => Hasher::for_digest(d).map_err(|e| LoadError::Corrupt {
                what: format!("entry `{clean}`"),
                source: e,
            })?,
            None => Hasher::sha256(),
        };
        let head = compression::read_head(data).map_err(|e| read_error(e, &clean))?;
        let format = compression::sniff(&head);
        let digest = if format.is_tar_stream() {
            let (digest, outcome) = self.layer(id, head, data, format, hasher, &named, &clean)?;
            entry.layer = Some(outcome);
            digest
        } else if size <= SMALL_LIMIT && self.kept + size <= SMALL_BUDGET {
            let mut bytes = head;
            data.read_to_end(&mut bytes)
                .map_err(|e| read_error(e, &clean))?;
            self.kept += bytes.len() as u64;
            let mut hasher = hasher;
            hasher.update(&bytes);
            entry.data = Some(bytes);
            hasher.finish()
        } else {
            self.hash_rest(head, data, hasher, None, &clean)?
        };
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
        entry.digest = Some(digest);
        fill_plain_diff_id(&mut entry);
        if let Some(previous) = self.contents.files.get(&clean) {
            if previous.digest != entry.digest {
                return Err(LoadError::Unsafe {
                    entry: clean,
                    reason: "appears twice in the archive with different content".into(),
                });
            }
            return Ok(());
        }
        let is_metadata = entry.data.is_some();
        self.contents.files.insert(clean, entry);
        if is_metadata && self.plan.is_none() {
            self.plan = (self.planner)(&self.contents);
        }
        Ok(())
    }

    /// A layer-looking entry: unpacked here ([`Stage::layer_sink`]), or staged for a worker.
    /// Returns its raw digest and what happened to it (a worker's outcome replaces it later).
    #[allow(clippy::too_many_arguments)]
    fn layer(
        &mut self,
        id: usize,
        head: Vec<u8>,
        data: &mut dyn Read,
        format: Format,
        hasher: Hasher,
        named: &Option<Digest>,
        clean: &str,
    ) -> Result<(Digest, LayerOutcome), LoadError> {
        let diff_is_raw = hasher.algorithm() == "sha256";
        let waiting = LayerOutcome {
            format,
            diff_id: None,
            unpacked: false,
            result: Ok(LayerStats::default()),
            head: None,
        };
        let Some(unpacker) = self.unpacker.clone() else {
            let sink = self.stage.layer_sink(id)?;
            return unpack_here(head, data, format, hasher, sink, clean);
        };
        if let Some(stored) = named.as_ref().and_then(|d| unpacker.stored_blob(d)) {
            let digest = named.clone().expect("named");
            let source = Source::Stored {
                path: stored,
                digest,
            };
            self.workers
                .spawn(id, source, format, diff_is_raw, unpacker)
                .map_err(LoadError::Stage)?;
            let digest = self.hash_rest(head, data, hasher, None, clean)?;
            return Ok((digest, waiting));
        }
        let path = unpacker.spool_path(id);
        let (mut spool, reader, state) = spool::create(&path).map_err(LoadError::Stage)?;
        let source = Source::Spool {
            reader: Some(reader),
            state,
            path,
        };
        self.workers
            .spawn(id, source, format, diff_is_raw, unpacker)
            .map_err(LoadError::Stage)?;
        let digest = self.hash_rest(head, data, hasher, Some(&mut spool), clean)?;
        spool.complete(digest.clone());
        Ok((digest, waiting))
    }

    /// Hashes `head` and the rest of `data`, staging it in `spool` when given.
    fn hash_rest(
        &mut self,
        head: Vec<u8>,
        data: &mut dyn Read,
        mut hasher: Hasher,
        mut spool: Option<&mut spool::Spool>,
        clean: &str,
    ) -> Result<Digest, LoadError> {
        hasher.update(&head);
        if let Some(s) = spool.as_deref_mut() {
            s.write_all(&head).map_err(LoadError::Stage)?;
        }
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => return Ok(hasher.finish()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e, clean)),
            };
            hasher.update(&self.buf[..n]);
            if let Some(s) = spool.as_deref_mut() {
                s.write_all(&self.buf[..n]).map_err(LoadError::Stage)?;
            }
        }
    }
}

/// The clean path of an archive entry; `None` for the archive's root.
fn clean_path(h: &Header) -> Result<Option<String>, LoadError> {
    let raw = String::from_utf8(h.path.clone()).map_err(|_| LoadError::Unsafe {
        entry: h.display_path(),
        reason: "the path is not UTF-8".into(),
    })?;
    match path::archive_path("", &raw) {
        Ok(p) => Ok(Some(p)),
        Err(path::PathError::Empty) => Ok(None),
        Err(e) => Err(LoadError::Unsafe {
            entry: raw,
            reason: format!("{e}: archive entries must stay inside the archive"),
        }),
    }
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

/// The raw side of a layer unpacked on the scanning thread: the sniffed head, then the rest of
/// the entry; remembers a failure of the archive itself (as opposed to the layer's content).
struct Tee<'a> {
    head: io::Cursor<Vec<u8>>,
    inner: &'a mut dyn Read,
    failed: Option<io::Error>,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.head.read(buf)? {
            0 => self.inner.read(buf).map_err(|e| {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.failed = Some(e);
                copy
            }),
            n => Ok(n),
        }
    }
}

/// Unpacks a layer-looking entry on the scanning thread (`ferry verify`): raw bytes hashed,
/// decompressed bytes hashed and fed to `sink`. Failures of the layer's content are in the
/// outcome; failures of the archive are errors.
fn unpack_here(
    head: Vec<u8>,
    data: &mut dyn Read,
    format: Format,
    hasher: Hasher,
    mut sink: Option<Box<dyn LayerSink>>,
    entry: &str,
) -> Result<(Digest, LayerOutcome), LoadError> {
    // An uncompressed layer's diff_id is its sha256 blob digest: hash it only once.
    let diff_is_raw = hasher.algorithm() == "sha256";
    let mut raw = VerifyingReader::hashing(
        Tee {
            head: io::Cursor::new(head),
            inner: data,
            failed: None,
        },
        hasher,
    );
    let unpacked = sink.is_some();
    let (diff_id, result) = match Decoded::open(&mut raw, format, diff_is_raw) {
        Ok(mut decoded) => {
            let sink = sink.as_mut().map(|s| &mut **s as &mut dyn LayerSink);
            let result = apply_entries(&mut decoded, format, sink);
            let diff_id = if result.is_ok() {
                decoded.diff_id()
            } else {
                None
            };
            (diff_id, result)
        }
        Err(e) => (None, Err(e)),
    };
    if let Some(e) = raw.get_mut().failed.take() {
        return Err(read_error(e, entry));
    }
    // Whatever the decompressor left (after an error, or trailing bytes) still belongs to
    // the blob and to its digest.
    io::copy(&mut raw, &mut io::sink()).map_err(|e| match raw.get_mut().failed.take() {
        Some(orig) => read_error(orig, entry),
        None => read_error(e, entry),
    })?;
    let outcome = LayerOutcome {
        format,
        diff_id,
        unpacked,
        result,
        head: None,
    };
    Ok((raw.into_digest().0, outcome))
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

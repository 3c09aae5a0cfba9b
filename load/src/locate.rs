//! Where each entry of a plain (uncompressed) tar archive lies, found by reading its headers
//! and seeking past its data: what `ferry push` needs to send blobs straight out of an archive
//! (whole or split) without streaming or unpacking it. Entry paths are confined by the same
//! rules as a load's (see [`crate::path`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use crate::compression::{self, Format};
use crate::error::LoadError;
use crate::path;
use crate::split::Parts;
use crate::tar::{Kind, TarError, TarReader};

/// Entries larger than this are not read into memory by [`Located::read_small`].
const SMALL_LIMIT: u64 = 16 * 1024 * 1024;

/// One regular file of the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Offset of its first data byte in the archive.
    pub offset: u64,
    /// Its size.
    pub size: u64,
}

/// The entries of an archive and where their data is.
#[derive(Debug)]
pub struct Located {
    /// The file or parts the archive is in.
    pub parts: Parts,
    /// Regular files: clean path → where its data is.
    pub files: BTreeMap<String, Span>,
    /// Symbolic and hard links: clean path → clean target path.
    pub links: BTreeMap<String, String>,
}

impl Located {
    /// Indexes the archive in `parts`. A compressed archive cannot be read by offset: the
    /// error says which compression it has (decompress it first).
    pub fn read(parts: Parts) -> Result<Located, LoadError> {
        let mut cursor = Cursor::new(&parts).map_err(LoadError::Read)?;
        let head = compression::read_head(&mut cursor).map_err(LoadError::Read)?;
        match compression::sniff(&head) {
            Format::Tar => {}
            Format::Other => {
                return Err(LoadError::NotAnArchive(
                    "it is neither a tar archive nor gzip, zstd, xz or bzip2".into(),
                ));
            }
            compressed => {
                return Err(LoadError::NotAnArchive(format!(
                    "it is {}-compressed; only a plain tar can be read in place",
                    compressed.name()
                )));
            }
        }
        cursor.seek_to(0).map_err(LoadError::Read)?;
        let mut files = BTreeMap::new();
        let mut links = BTreeMap::new();
        loop {
            // A fresh reader per entry: each starts at a header, and the data in between is
            // skipped by seeking, never read.
            let mut tar = TarReader::new(&mut cursor);
            let Some(h) = tar.next_entry().map_err(|e| match e {
                TarError::Io(io) => LoadError::Read(io),
                other => LoadError::BadArchive(other),
            })?
            else {
                break;
            };
            let size = tar.remaining();
            let raw = String::from_utf8(h.path.clone()).map_err(|_| LoadError::Unsafe {
                entry: h.display_path(),
                reason: "the path is not UTF-8".into(),
            })?;
            let at = cursor.pos;
            cursor
                .seek_to(at + size.div_ceil(512) * 512)
                .map_err(LoadError::Read)?;
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
                Kind::File => {
                    files.insert(clean, Span { offset: at, size });
                }
                Kind::Symlink | Kind::Hardlink => {
                    let link = String::from_utf8_lossy(&h.link).into_owned();
                    let base = match h.kind {
                        Kind::Symlink => path::parent(&clean),
                        _ => "",
                    };
                    let target =
                        path::archive_path(base, &link).map_err(|e| LoadError::Unsafe {
                            entry: clean.clone(),
                            reason: format!(
                                "links to `{link}` ({e}): links must stay inside the archive"
                            ),
                        })?;
                    links.insert(clean, target);
                }
                _ => {}
            }
        }
        Ok(Located {
            parts,
            files,
            links,
        })
    }

    /// The file at `path`, following links inside the archive.
    pub fn file(&self, path: &str) -> Option<(&str, Span)> {
        let mut p = path;
        for _ in 0..16 {
            if let Some((k, s)) = self.files.get_key_value(p) {
                return Some((k.as_str(), *s));
            }
            p = self.links.get(p)?;
        }
        None
    }

    /// Reads a file of at most 16 MiB (metadata, manifests, configs) whole.
    pub fn read_small(&self, path: &str) -> Result<Option<Vec<u8>>, LoadError> {
        let Some((_, span)) = self.file(path) else {
            return Ok(None);
        };
        if span.size > SMALL_LIMIT {
            return Err(LoadError::Invalid {
                what: format!("`{path}`"),
                source: format!("{} bytes is too large for metadata", span.size).into(),
            });
        }
        self.read_span(span).map(Some)
    }

    /// Reads `span` whole.
    pub fn read_span(&self, span: Span) -> Result<Vec<u8>, LoadError> {
        let mut out = Vec::with_capacity(span.size as usize);
        self.parts
            .open_at(span.offset)
            .and_then(|r| r.take(span.size).read_to_end(&mut out))
            .map_err(LoadError::Read)?;
        if out.len() as u64 != span.size {
            return Err(LoadError::BadArchive(TarError::Truncated(format!(
                "data at offset {}",
                span.offset
            ))));
        }
        Ok(out)
    }
}

/// Reads the parts from a position that seeking moves without reading.
struct Cursor<'a> {
    parts: &'a Parts,
    pos: u64,
    file: Option<(usize, File)>,
}

impl<'a> Cursor<'a> {
    fn new(parts: &'a Parts) -> io::Result<Self> {
        Ok(Cursor {
            parts,
            pos: 0,
            file: None,
        })
    }

    fn seek_to(&mut self, pos: u64) -> io::Result<()> {
        self.pos = pos;
        self.file = None;
        Ok(())
    }
}

impl Read for Cursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.file.is_none() {
                let mut start = 0;
                let found = self
                    .parts
                    .files()
                    .iter()
                    .enumerate()
                    .find_map(|(i, (p, len))| {
                        let hit = self.pos < start + len;
                        let at = self.pos - start.min(self.pos);
                        start += len;
                        hit.then_some((i, p, at))
                    });
                let Some((i, path, at)) = found else {
                    return Ok(0);
                };
                let mut f = File::open(path)?;
                f.seek(SeekFrom::Start(at))?;
                self.file = Some((i, f));
            }
            let (i, f) = self.file.as_mut().expect("opened above");
            let n = f.read(buf)?;
            if n == 0 && !buf.is_empty() {
                // The end of this part: on to the next one, if there is one.
                if *i + 1 >= self.parts.files().len() {
                    return Ok(0);
                }
                self.file = None;
                continue;
            }
            self.pos += n as u64;
            return Ok(n);
        }
    }
}

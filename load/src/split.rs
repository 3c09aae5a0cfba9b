//! Archives split into parts for media with a file size limit: `FILE.tar.000`, `FILE.tar.001`,
//! … (written by `ferry fetch --split` and `ferry save --split`), plain byte slices of one tar,
//! so `cat FILE.tar.0* | docker load` reads them, with one `FILE.tar.sha256` listing every
//! part in `sha256sum` format.
//!
//! [`Parts::find`] takes the first part (or the archive's name without a suffix), finds the
//! others beside it and names any that is missing; [`Parts::reader`] reads them as one stream
//! and checks each part against `FILE.tar.sha256` as it ends, naming the part that does not
//! match; [`Parts::open_at`] reads from any offset (for `ferry push`). A whole archive is the
//! case of one part.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use ferry_oci::Hasher;

/// What is wrong with the parts of a split archive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    /// A part the others say exists is not there.
    #[error("part `{}` of the split archive is missing", path.display())]
    Missing {
        /// The part.
        path: PathBuf,
    },
    /// A part does not hash to what the checksum file says.
    #[error("part `{}` is corrupt: {} lists sha256 {expected}, the part hashes to {actual}", path.display(), sums.display())]
    Corrupt {
        /// The part.
        path: PathBuf,
        /// The checksum file.
        sums: PathBuf,
        /// What the checksum file lists.
        expected: String,
        /// What the part hashes to.
        actual: String,
    },
    /// A part other than the first was named.
    #[error("`{}` is part {} of a split archive; name the first part, `{}`", path.display(), index + 1, first.display())]
    NotFirst {
        /// The part named.
        path: PathBuf,
        /// Its position, from 0.
        index: usize,
        /// The first part.
        first: PathBuf,
    },
    /// A part cannot be opened or read.
    #[error("cannot read `{}`", path.display())]
    Io {
        /// The part.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The files an archive is stored in, in order, with their sizes.
#[derive(Debug, Clone)]
pub struct Parts {
    files: Vec<(PathBuf, u64)>,
    /// `FILE.tar.sha256` of a split archive, and the sha256 it lists for each part.
    sums: Option<(PathBuf, Vec<Option<String>>)>,
}

/// The name of part `index` of the archive `base` (`FILE.tar` → `FILE.tar.000`).
pub fn part_name(base: &Path, index: usize) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(format!(".{index:03}"));
    PathBuf::from(s)
}

/// The checksum file of a split archive `base` (`FILE.tar` → `FILE.tar.sha256`).
pub fn sums_name(base: &Path) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

/// `FILE.tar.007` → (`FILE.tar`, 7); anything else → `None`.
fn split_name(path: &Path) -> Option<(PathBuf, usize)> {
    let name = path.file_name()?.to_str()?;
    let (stem, suffix) = name.rsplit_once('.')?;
    if suffix.len() < 3 || !suffix.bytes().all(|b| b.is_ascii_digit()) || stem.is_empty() {
        return None;
    }
    Some((path.with_file_name(stem), suffix.parse().ok()?))
}

fn len_of(path: &Path) -> Result<u64, SplitError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| SplitError::Io {
            path: path.to_path_buf(),
            source,
        })
}

impl Parts {
    /// One whole file.
    pub fn single(path: &Path) -> Result<Parts, SplitError> {
        Ok(Parts {
            files: vec![(path.to_path_buf(), len_of(path)?)],
            sums: None,
        })
    }

    /// The archive at `path`: a whole file; the first part (`FILE.tar.000`) of a split one,
    /// whose other parts are found beside it; or `FILE.tar` when only its parts exist.
    pub fn find(path: &Path) -> Result<Parts, SplitError> {
        let (base, index) = match split_name(path) {
            Some(found) => found,
            None if !path.exists() && part_name(path, 0).exists() => (path.to_path_buf(), 0),
            None => return Parts::single(path),
        };
        let first = part_name(&base, 0);
        if index != 0 {
            return Err(SplitError::NotFirst {
                path: path.to_path_buf(),
                index,
                first,
            });
        }
        if !first.exists() {
            // `x.2024` that is not a part at all.
            return Parts::single(path);
        }
        let sums_path = sums_name(&base);
        let listed = std::fs::read_to_string(&sums_path)
            .ok()
            .map(|text| listed_parts(&text, &base));
        let mut files = Vec::new();
        loop {
            let p = part_name(&base, files.len());
            if !p.exists() {
                break;
            }
            files.push((p.clone(), len_of(&p)?));
        }
        // A gap: a later part exists, or the checksum file lists more parts.
        let next = files.len();
        let later = (next + 1..next + 4).any(|i| part_name(&base, i).exists());
        let more_listed = listed.as_ref().is_some_and(|l| l.len() > next);
        if later || more_listed {
            return Err(SplitError::Missing {
                path: part_name(&base, next),
            });
        }
        let sums = listed.map(|l| {
            let mut hashes: Vec<Option<String>> = l;
            hashes.resize(files.len(), None);
            (sums_path, hashes)
        });
        Ok(Parts { files, sums })
    }

    /// The parts, in order, with their sizes.
    pub fn files(&self) -> &[(PathBuf, u64)] {
        &self.files
    }

    /// Whether the archive is split.
    pub fn is_split(&self) -> bool {
        self.sums.is_some() || self.files.len() > 1 || split_name(&self.files[0].0).is_some()
    }

    /// Size of the whole archive.
    pub fn len(&self) -> u64 {
        self.files.iter().map(|(_, l)| l).sum()
    }

    /// Whether the archive is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The checksum file the parts were checked against, if any.
    pub fn sums_file(&self) -> Option<&Path> {
        self.sums.as_ref().map(|(p, _)| p.as_path())
    }

    /// Reads the parts one after the other as one stream, checking each against the
    /// checksum file (when there is one) as it ends.
    pub fn reader(&self) -> PartsReader {
        PartsReader {
            hasher: self.sums.as_ref().map(|_| Hasher::sha256()),
            parts: self.clone(),
            index: 0,
            current: None,
        }
    }

    /// Reads the archive from byte `offset` on.
    pub fn open_at(&self, offset: u64) -> io::Result<Box<dyn Read + Send>> {
        let mut start = 0;
        let mut readers: Vec<Box<dyn Read + Send>> = Vec::new();
        for (path, len) in &self.files {
            if offset < start + len {
                let mut f = File::open(path).map_err(|e| named(e, path))?;
                f.seek(SeekFrom::Start(offset.saturating_sub(start)))?;
                readers.push(Box::new(f));
            }
            start += len;
        }
        Ok(Box::new(Chain { readers, index: 0 }))
    }
}

/// The part → sha256 lines of a checksum file, in part order.
fn listed_parts(text: &str, base: &Path) -> Vec<Option<String>> {
    let mut out: Vec<Option<String>> = Vec::new();
    for line in text.lines() {
        let Some((hash, name)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let name = name.trim_start().trim_start_matches('*');
        let Some((_, index)) = split_name(&base.with_file_name(name)) else {
            continue;
        };
        if index >= out.len() {
            out.resize(index + 1, None);
        }
        out[index] = Some(hash.to_ascii_lowercase());
    }
    out
}

fn named(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The parts as one stream; see [`Parts::reader`].
pub struct PartsReader {
    parts: Parts,
    index: usize,
    current: Option<File>,
    /// Hashes the current part, when there is a checksum file to compare it with.
    hasher: Option<Hasher>,
}

impl PartsReader {
    /// Reads what is left, so every part gets checked; the first part that does not match the
    /// checksum file is the error. Used after a failure, to name the part that caused it.
    pub fn check_rest(&mut self) -> Result<(), SplitError> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match self.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => {
                    return match e.into_inner().map(|i| i.downcast::<SplitError>()) {
                        Some(Ok(split)) => Err(*split),
                        Some(Err(other)) => Err(SplitError::Io {
                            path: self.parts.files[self.index.min(self.parts.files.len() - 1)]
                                .0
                                .clone(),
                            source: io::Error::other(other),
                        }),
                        None => Ok(()),
                    };
                }
            }
        }
    }

    fn end_of_part(&mut self) -> io::Result<()> {
        let Some(hasher) = self.hasher.replace(Hasher::sha256()) else {
            return Ok(());
        };
        let actual = hasher.finish();
        if let Some((sums, hashes)) = &self.parts.sums
            && let Some(Some(expected)) = hashes.get(self.index)
            && expected != actual.digest()
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                SplitError::Corrupt {
                    path: self.parts.files[self.index].0.clone(),
                    sums: sums.clone(),
                    expected: expected.clone(),
                    actual: actual.digest().to_string(),
                },
            ));
        }
        Ok(())
    }
}

impl Read for PartsReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.index < self.parts.files.len() {
            let path = &self.parts.files[self.index].0;
            if self.current.is_none() {
                self.current = Some(File::open(path).map_err(|e| named(e, path))?);
            }
            let n = self
                .current
                .as_mut()
                .expect("opened above")
                .read(buf)
                .map_err(|e| named(e, path))?;
            if n > 0 {
                if let Some(h) = &mut self.hasher {
                    h.update(&buf[..n]);
                }
                return Ok(n);
            }
            if buf.is_empty() {
                return Ok(0);
            }
            self.current = None;
            self.end_of_part()?;
            self.index += 1;
        }
        Ok(0)
    }
}

/// Readers one after the other.
struct Chain {
    readers: Vec<Box<dyn Read + Send>>,
    index: usize,
}

impl Read for Chain {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(r) = self.readers.get_mut(self.index) {
            let n = r.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            self.index += 1;
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_parts(dir: &Path, data: &[u8], size: usize) -> PathBuf {
        let base = dir.join("a.tar");
        let mut sums = String::new();
        for (i, chunk) in data.chunks(size).enumerate() {
            let p = part_name(&base, i);
            std::fs::write(&p, chunk).unwrap();
            sums.push_str(&format!(
                "{}  a.tar.{i:03}\n",
                ferry_oci::digest::sha256(chunk).digest()
            ));
        }
        std::fs::write(sums_name(&base), sums).unwrap();
        base
    }

    #[test]
    fn parts_read_back_as_one_stream_and_from_any_offset() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let base = write_parts(dir.path(), &data, 3000);
        let parts = Parts::find(&part_name(&base, 0)).unwrap();
        assert_eq!(parts.files().len(), 4);
        assert_eq!(parts.len(), 10_000);
        let mut all = Vec::new();
        parts.reader().read_to_end(&mut all).unwrap();
        assert_eq!(all, data);
        let mut tail = Vec::new();
        parts.open_at(2999).unwrap().read_to_end(&mut tail).unwrap();
        assert_eq!(tail, &data[2999..]);
        // The name without a suffix finds the parts too.
        assert_eq!(Parts::find(&base).unwrap().files().len(), 4);
    }

    #[test]
    fn a_missing_part_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let base = write_parts(dir.path(), &[7u8; 10_000], 3000);
        std::fs::remove_file(part_name(&base, 1)).unwrap();
        let err = Parts::find(&part_name(&base, 0)).unwrap_err();
        assert!(err.to_string().contains("a.tar.001"), "{err}");
        // The last part, found missing through the checksum file.
        let base = write_parts(dir.path(), &[7u8; 10_000], 3000);
        std::fs::remove_file(part_name(&base, 3)).unwrap();
        let err = Parts::find(&part_name(&base, 0)).unwrap_err();
        assert!(err.to_string().contains("a.tar.003"), "{err}");
    }

    #[test]
    fn a_corrupt_part_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let base = write_parts(dir.path(), &[7u8; 10_000], 3000);
        std::fs::write(part_name(&base, 2), [8u8; 3000]).unwrap();
        let parts = Parts::find(&part_name(&base, 0)).unwrap();
        let err = parts.reader().check_rest().unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("a.tar.002") && text.contains("corrupt"),
            "{text}"
        );
    }

    #[test]
    fn only_the_first_part_may_be_named() {
        let dir = tempfile::tempdir().unwrap();
        let base = write_parts(dir.path(), &[7u8; 10_000], 3000);
        let err = Parts::find(&part_name(&base, 1)).unwrap_err();
        assert!(err.to_string().contains("a.tar.000"), "{err}");
    }
}

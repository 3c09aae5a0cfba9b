//! Content digests: parsed once, and checked while bytes stream past.
//!
//! Every blob ferry moves is named by its digest. The bytes are hashed as they are read or
//! written, so a blob is verified without a second pass and an unverified byte is never
//! trusted: callers only commit what [`VerifyingReader::finish`] or [`Hasher::verify`] accepted.

use std::io::{self, Read};

use oci_spec::image::DigestAlgorithm;
use sha2::Digest as _;

/// A content digest such as `sha256:9f86d0…`, as parsed by `oci-spec`.
pub use oci_spec::image::Digest;

/// Why a digest was refused or did not match.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    /// The text is not a digest at all.
    #[error("`{0}` is not a valid digest (expected `sha256:` followed by 64 hex digits)")]
    Invalid(String),
    /// The algorithm is well-formed but ferry cannot compute it.
    #[error("unsupported digest algorithm `{0}` (ferry verifies sha256, sha384 and sha512)")]
    Unsupported(String),
    /// The content hashed to something else.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    Mismatch {
        /// The digest the content was announced with.
        expected: Digest,
        /// The digest of the bytes actually seen.
        actual: Digest,
    },
    /// The content had a different length than announced.
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    Size {
        /// The announced size.
        expected: u64,
        /// The number of bytes seen (may stop at the first byte past `expected`).
        actual: u64,
    },
}

impl From<DigestError> for io::Error {
    fn from(e: DigestError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Parses a digest, refusing algorithms ferry cannot verify.
///
/// Only the SHA-2 family is accepted: a digest ferry cannot recompute would have to be trusted,
/// and an unknown algorithm's encoded part is not guaranteed to be safe as a file name.
pub fn parse(text: &str) -> Result<Digest, DigestError> {
    let digest: Digest = text
        .parse()
        .map_err(|_| DigestError::Invalid(text.to_string()))?;
    check_supported(&digest)?;
    Ok(digest)
}

/// Fails unless ferry can recompute this digest (see [`parse`]).
pub fn check_supported(digest: &Digest) -> Result<(), DigestError> {
    match digest.algorithm() {
        DigestAlgorithm::Sha256 | DigestAlgorithm::Sha384 | DigestAlgorithm::Sha512 => Ok(()),
        other => Err(DigestError::Unsupported(other.to_string())),
    }
}

/// The sha256 digest of a byte slice (manifests, configs, small metadata).
pub fn sha256(bytes: &[u8]) -> Digest {
    let mut h = Hasher::sha256();
    h.update(bytes);
    h.finish()
}

/// The path of a blob inside an OCI image layout: `blobs/<algorithm>/<hex>`, always with `/`.
pub fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.digest())
}

/// An incremental hash of one of the supported algorithms, with a byte count.
#[derive(Clone)]
pub struct Hasher {
    state: State,
    len: u64,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hasher({}, {} bytes)", self.algorithm(), self.len)
    }
}

#[derive(Clone)]
enum State {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A sha256 hasher, the algorithm of every digest ferry computes itself.
    pub fn sha256() -> Self {
        Hasher {
            state: State::Sha256(sha2::Sha256::new()),
            len: 0,
        }
    }

    /// A hasher for the algorithm `digest` uses, so the result can be compared with it.
    pub fn for_digest(digest: &Digest) -> Result<Self, DigestError> {
        let state = match digest.algorithm() {
            DigestAlgorithm::Sha256 => State::Sha256(sha2::Sha256::new()),
            DigestAlgorithm::Sha384 => State::Sha384(sha2::Sha384::new()),
            DigestAlgorithm::Sha512 => State::Sha512(sha2::Sha512::new()),
            other => return Err(DigestError::Unsupported(other.to_string())),
        };
        Ok(Hasher { state, len: 0 })
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        match &mut self.state {
            State::Sha256(h) => h.update(bytes),
            State::Sha384(h) => h.update(bytes),
            State::Sha512(h) => h.update(bytes),
        }
    }

    /// The algorithm's name as digests spell it: `sha256`, `sha384` or `sha512`.
    pub fn algorithm(&self) -> &'static str {
        match self.state {
            State::Sha256(_) => "sha256",
            State::Sha384(_) => "sha384",
            State::Sha512(_) => "sha512",
        }
    }

    /// How many bytes were fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self.state {
            State::Sha256(h) => ("sha256", hex::encode(h.finalize())),
            State::Sha384(h) => ("sha384", hex::encode(h.finalize())),
            State::Sha512(h) => ("sha512", hex::encode(h.finalize())),
        };
        format!("{algorithm}:{hex}")
            .parse()
            .expect("a hex-encoded SHA-2 value is a valid digest")
    }

    /// Checks everything fed against an expected digest and, when given, size.
    pub fn verify(self, expected: &Digest, size: Option<u64>) -> Result<(), DigestError> {
        if let Some(size) = size
            && self.len != size
        {
            return Err(DigestError::Size {
                expected: size,
                actual: self.len,
            });
        }
        let actual = self.finish();
        if &actual != expected {
            return Err(DigestError::Mismatch {
                expected: expected.clone(),
                actual,
            });
        }
        Ok(())
    }
}

/// A reader that hashes what passes through and refuses to read past the announced size.
///
/// The size limit matters as much as the hash: a server that keeps sending must not be able to
/// fill the disk before the mismatch is noticed at the end.
///
/// Where the digest to compare with is only known later (a layer's diff_id before its config
/// is read, an archive checked against its `.sha256` afterwards), [`VerifyingReader::hashing`]
/// hashes without one and [`VerifyingReader::into_digest`] gives the result.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Hasher,
    expected: Option<Digest>,
    size: Option<u64>,
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`, which should yield exactly the blob named `expected` of `size` bytes.
    pub fn new(inner: R, expected: Digest, size: Option<u64>) -> Result<Self, DigestError> {
        let hasher = Hasher::for_digest(&expected)?;
        Ok(VerifyingReader {
            inner,
            hasher,
            expected: Some(expected),
            size,
        })
    }

    /// Wraps `inner`, hashing it with `hasher` with nothing to compare against yet.
    pub fn hashing(inner: R, hasher: Hasher) -> Self {
        VerifyingReader {
            inner,
            hasher,
            expected: None,
            size: None,
        }
    }

    /// Checks digest and size once everything was read; returns the inner reader.
    pub fn finish(self) -> Result<R, DigestError> {
        if let Some(expected) = &self.expected {
            self.hasher.verify(expected, self.size)?;
        }
        Ok(self.inner)
    }

    /// The digest of everything read, and the inner reader.
    pub fn into_digest(self) -> (Digest, R) {
        (self.hasher.finish(), self.inner)
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.hasher.len()
    }

    /// The inner reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for one byte more than the remaining size, so an overlong stream is noticed
        // without reading (and storing) the excess.
        let want = match self.size {
            Some(size) => {
                let left = (size + 1).saturating_sub(self.hasher.len());
                buf.len().min(usize::try_from(left).unwrap_or(usize::MAX))
            }
            None => buf.len(),
        };
        let n = self.inner.read(&mut buf[..want])?;
        self.hasher.update(&buf[..n]);
        if let Some(size) = self.size
            && self.hasher.len() > size
        {
            return Err(DigestError::Size {
                expected: size,
                actual: self.hasher.len(),
            }
            .into());
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn sha256_of_known_bytes() {
        assert_eq!(sha256(b"hello").to_string(), HELLO);
    }

    #[test]
    fn parse_refuses_garbage_and_unknown_algorithms() {
        assert!(matches!(parse("sha256:xyz"), Err(DigestError::Invalid(_))));
        assert!(matches!(parse("nope"), Err(DigestError::Invalid(_))));
        assert!(matches!(
            parse("md5:d41d8cd98f00b204e9800998ecf8427e"),
            Err(DigestError::Unsupported(_))
        ));
        assert_eq!(parse(HELLO).unwrap().digest().len(), 64);
    }

    #[test]
    fn verifying_reader_accepts_exact_content() {
        let mut r = VerifyingReader::new(&b"hello"[..], parse(HELLO).unwrap(), Some(5)).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        r.finish().unwrap();
        assert_eq!(out, b"hello");
    }

    #[test]
    fn verifying_reader_names_both_digests_on_mismatch() {
        let mut r = VerifyingReader::new(&b"hellO"[..], parse(HELLO).unwrap(), Some(5)).unwrap();
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        let err = r.finish().unwrap_err().to_string();
        assert!(err.contains(HELLO), "{err}");
        assert!(err.contains("got sha256:"), "{err}");
    }

    #[test]
    fn verifying_reader_stops_an_overlong_stream() {
        let long = vec![b'x'; 10_000];
        let mut r = VerifyingReader::new(&long[..], parse(HELLO).unwrap(), Some(5)).unwrap();
        let err = std::io::copy(&mut r, &mut std::io::sink()).unwrap_err();
        assert!(err.to_string().contains("expected 5 bytes"), "{err}");
        assert!(r.bytes_read() <= 6);
    }

    #[test]
    fn short_stream_is_a_size_error() {
        let mut r = VerifyingReader::new(&b"hell"[..], parse(HELLO).unwrap(), Some(5)).unwrap();
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        assert_eq!(
            r.finish().unwrap_err(),
            DigestError::Size {
                expected: 5,
                actual: 4
            }
        );
    }

    #[test]
    fn a_hashing_reader_gives_the_digest_at_the_end() {
        let mut r = VerifyingReader::hashing(&b"hello"[..], Hasher::sha256());
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        assert_eq!(r.bytes_read(), 5);
        assert_eq!(r.into_digest().0.to_string(), HELLO);
    }

    #[test]
    fn blob_path_uses_forward_slashes() {
        assert_eq!(
            blob_path(&parse(HELLO).unwrap()),
            format!("blobs/sha256/{}", &HELLO[7..])
        );
    }
}

//! Recognising compressed streams by their magic bytes and decompressing them.
//!
//! Neither file names nor media types are trusted for this: `docker save` names every layer
//! `layer.tar` whatever it holds, crane writes `.tar.gz`, and a media type may lie. The first
//! bytes decide, as they do for `docker load` (moby's `DecompressStream`).

use std::io::{self, BufRead, BufReader, Read};

/// What the first bytes of a stream say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// gzip (`1F 8B 08`).
    Gzip,
    /// zstd (`28 B5 2F FD`).
    Zstd,
    /// xz (`FD 37 7A 58 5A 00`).
    Xz,
    /// bzip2 (`42 5A 68`).
    Bzip2,
    /// An uncompressed tar: a header whose checksum holds, or the two zero blocks of an
    /// empty one.
    Tar,
    /// Anything else (JSON, text, unknown binary).
    Other,
}

impl Format {
    /// Whether a layer (or an outer archive) in this format can be read.
    pub fn is_tar_stream(self) -> bool {
        self != Format::Other
    }

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Gzip => "gzip",
            Format::Zstd => "zstd",
            Format::Xz => "xz",
            Format::Bzip2 => "bzip2",
            Format::Tar => "tar",
            Format::Other => "unknown",
        }
    }
}

/// How many leading bytes [`sniff`] wants to see.
pub const SNIFF_LEN: usize = 512;

/// Classifies a stream by its first bytes (up to [`SNIFF_LEN`]; fewer at the end of input).
pub fn sniff(head: &[u8]) -> Format {
    if head.starts_with(&[0x1f, 0x8b, 0x08]) {
        Format::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Format::Zstd
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Format::Xz
    } else if head.starts_with(b"BZh") {
        Format::Bzip2
    } else if looks_like_tar(head) {
        Format::Tar
    } else {
        Format::Other
    }
}

fn looks_like_tar(head: &[u8]) -> bool {
    if head.len() < SNIFF_LEN {
        return false;
    }
    if head.iter().all(|&b| b == 0) {
        return true;
    }
    let stored = head[148..156]
        .iter()
        .skip_while(|&&c| c == b' ' || c == 0)
        .take_while(|&&c| (b'0'..=b'7').contains(&c))
        .fold(0u64, |v, &c| v * 8 + u64::from(c - b'0'));
    let sum: u64 = head[..SNIFF_LEN]
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(c)
            }
        })
        .sum();
    stored == sum
}

/// Reads up to [`SNIFF_LEN`] bytes (fewer only at the end of input).
pub fn read_head(r: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(SNIFF_LEN);
    r.take(SNIFF_LEN as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// zstd frames may ask for a window of up to 2 GiB; 128 MiB (zstd's own default limit) is
/// what `zstd -19 --long` uses, and refusing more bounds ferry's memory.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// xz's memory limit for decoding (`xz -9` needs 65 MiB).
const XZ_MEMLIMIT: u64 = 256 * 1024 * 1024;

/// Wraps `inner` in the decoder for `format`; `Tar` and `Other` pass through unchanged.
/// Concatenated members (pigz, `cat a.gz b.gz`) are read as one stream.
pub fn decoder<'a, R: BufRead + 'a>(format: Format, inner: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match format {
        Format::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(inner)),
        Format::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(inner)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(d)
        }
        Format::Xz => {
            let stream =
                xz2::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, xz2::stream::CONCATENATED)
                    .map_err(io::Error::other)?;
            Box::new(xz2::bufread::XzDecoder::new_stream(inner, stream))
        }
        Format::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(inner)),
        Format::Tar | Format::Other => Box::new(inner),
    })
}

/// Sniffs `inner` and returns the format and a reader of the decompressed stream, with the
/// sniffed bytes put back in front.
pub fn open_stream<'a, R: Read + 'a>(mut inner: R) -> io::Result<(Format, Box<dyn Read + 'a>)> {
    let head = read_head(&mut inner)?;
    let format = sniff(&head);
    let joined = BufReader::with_capacity(256 * 1024, io::Cursor::new(head).chain(inner));
    Ok((format, decoder(format, joined)?))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn magic_bytes_decide() {
        assert_eq!(sniff(&[0x1f, 0x8b, 0x08, 0]), Format::Gzip);
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd, 1]), Format::Zstd);
        assert_eq!(sniff(b"\xfd7zXZ\x00rest"), Format::Xz);
        assert_eq!(sniff(b"BZh91AY"), Format::Bzip2);
        assert_eq!(sniff(&[0u8; 512]), Format::Tar);
        assert_eq!(sniff(b"{\"schemaVersion\":2}"), Format::Other);
    }

    #[test]
    fn a_real_tar_header_is_recognised_and_garbage_is_not() {
        let t = crate::tar::tests::build(&[("a", ::tar::EntryType::Regular, b"x", "")]);
        assert_eq!(sniff(&t[..512]), Format::Tar);
        assert_eq!(sniff(&[b'x'; 512]), Format::Other);
    }

    #[test]
    fn every_outer_compression_round_trips() {
        let plain = crate::tar::tests::build(&[("a", ::tar::EntryType::Regular, b"x", "")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&plain[..], 3).unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&plain).unwrap();
        let xz = xz.finish().unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&plain).unwrap();
        let bz = bz.finish().unwrap();
        for (bytes, want) in [
            (plain.clone(), Format::Tar),
            (gz, Format::Gzip),
            (zst, Format::Zstd),
            (xz, Format::Xz),
            (bz, Format::Bzip2),
        ] {
            let (format, mut r) = open_stream(&bytes[..]).unwrap();
            assert_eq!(format, want);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, plain, "{want:?}");
        }
    }
}

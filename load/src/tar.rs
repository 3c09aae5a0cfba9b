//! A streaming tar reader for untrusted input, with hard limits.
//!
//! The `tar` crate reads GNU long names and PAX extension records into memory whatever size
//! their header announces, so a few KiB of xz or zstd can make it allocate gigabytes. This
//! reader bounds every piece of metadata it buffers, never allocates from a header's size
//! field, verifies header checksums, and hands entry data out as a plain `Read` so callers
//! stream it wherever it goes. It understands ustar, GNU (long names, base-256 numbers) and
//! PAX (path, linkpath, size, ids, times, `SCHILY.xattr.*`), which covers what Docker, Go's
//! `archive/tar`, containers/image, BuildKit and GNU tar write. Sparse files are refused.

use std::io::{self, Read};

const BLOCK: usize = 512;
/// GNU long names and link targets longer than this are refused (PATH_MAX is 4096).
const MAX_LONG_NAME: u64 = 64 * 1024;
/// PAX extension records larger than this are refused; real ones are a few hundred bytes
/// (a few KiB with SELinux or capability xattrs).
const MAX_PAX: u64 = 1024 * 1024;
/// No single entry may claim more than this (1 TiB): a header asking for more is hostile or
/// corrupt, and saying so beats reading until the input runs out.
pub const MAX_ENTRY_SIZE: u64 = 1 << 40;

/// What an entry is, from its type flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file (`0`, `\0` or `7`).
    File,
    /// A hard link to an earlier entry (`1`).
    Hardlink,
    /// A symbolic link (`2`).
    Symlink,
    /// A character device (`3`).
    Char,
    /// A block device (`4`).
    Block,
    /// A directory (`5`).
    Dir,
    /// A named pipe (`6`).
    Fifo,
    /// Anything else, with its type flag.
    Other(u8),
}

/// One entry's header, with PAX and GNU extensions applied.
#[derive(Debug, Clone)]
pub struct Header {
    /// The path as raw bytes, exactly as written (not normalised).
    pub path: Vec<u8>,
    /// The link target (hard and symbolic links), raw bytes.
    pub link: Vec<u8>,
    /// The entry type.
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Sub-second part of the modification time (PAX only).
    pub mtime_nsec: u32,
    /// Access time, if a PAX record gave one.
    pub atime: Option<(i64, u32)>,
    /// Size of the entry's data.
    pub size: u64,
    /// Device numbers for device nodes.
    pub dev_major: u32,
    /// Device numbers for device nodes.
    pub dev_minor: u32,
    /// Extended attributes from `SCHILY.xattr.NAME` PAX records.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Header {
    /// The path for messages: lossy UTF-8.
    pub fn display_path(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// Why a tar stream was refused.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// Reading the underlying stream failed.
    #[error("cannot read the tar stream")]
    Io(#[source] io::Error),
    /// The stream ended in the middle of an entry or header.
    #[error("the tar stream ends inside {0}")]
    Truncated(String),
    /// A header failed its checksum or has unparsable fields.
    #[error("invalid tar header{}: {reason}", after.as_ref().map(|a| format!(" after entry `{a}`")).unwrap_or_default())]
    BadHeader {
        /// The last good entry, to locate the damage.
        after: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// An entry uses a feature ferry refuses, or breaks a limit.
    #[error("tar entry `{entry}`: {reason}")]
    Refused {
        /// The entry.
        entry: String,
        /// Why.
        reason: String,
    },
}

/// Reads a tar stream entry by entry; call [`TarReader::next_entry`], then read the entry's
/// data through [`TarReader::data`] (unread data is skipped by the next call).
pub struct TarReader<R> {
    inner: R,
    /// Data bytes of the current entry not yet read.
    remaining: u64,
    /// Padding after the current entry's data.
    padding: u64,
    /// The current entry's path, for messages.
    current: Option<String>,
    done: bool,
}

impl<R: Read> TarReader<R> {
    /// A reader over `inner`, positioned at the first header.
    pub fn new(inner: R) -> Self {
        TarReader {
            inner,
            remaining: 0,
            padding: 0,
            current: None,
            done: false,
        }
    }

    /// The underlying reader (positioned after whatever was consumed).
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The underlying reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The next entry's header, or `None` at the end of the archive.
    pub fn next_entry(&mut self) -> Result<Option<Header>, TarError> {
        if self.done {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Option<Pax> = None;
        loop {
            let mut block = [0u8; BLOCK];
            if !self.read_block(&mut block)? {
                // A stream that stops right after an entry, without the two zero blocks,
                // is accepted (some writers omit them), unless an extension was pending.
                if long_name.is_some() || long_link.is_some() || pax.is_some() {
                    return Err(TarError::Truncated(self.where_()));
                }
                self.done = true;
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                self.done = true;
                return Ok(None);
            }
            let raw = RawHeader::parse(&block).map_err(|reason| TarError::BadHeader {
                after: self.current.clone(),
                reason,
            })?;
            match raw.typeflag {
                b'L' | b'K' => {
                    let data = self.read_ext(&raw, MAX_LONG_NAME, "GNU long name")?;
                    let value = trim_nul(&data).to_vec();
                    if raw.typeflag == b'L' {
                        long_name = Some(value);
                    } else {
                        long_link = Some(value);
                    }
                }
                b'x' => {
                    let data = self.read_ext(&raw, MAX_PAX, "PAX header")?;
                    pax = Some(Pax::parse(&data).map_err(|reason| TarError::BadHeader {
                        after: self.current.clone(),
                        reason,
                    })?);
                }
                b'g' => {
                    // Global PAX headers (git archive writes a comment there) apply to every
                    // later entry in theory; nothing ferry reads from them matters, so they are
                    // read within the limit and dropped.
                    self.read_ext(&raw, MAX_PAX, "PAX global header")?;
                }
                _ => {
                    let header = raw.into_header(long_name, long_link, pax);
                    let name = header.display_path();
                    if matches!(header.kind, Kind::Other(b'S')) {
                        return Err(TarError::Refused {
                            entry: name,
                            reason: "GNU sparse files are not supported".into(),
                        });
                    }
                    if header.size > MAX_ENTRY_SIZE {
                        return Err(TarError::Refused {
                            entry: name,
                            reason: format!(
                                "header claims {} bytes, more than any entry may have",
                                header.size
                            ),
                        });
                    }
                    // Only regular files (and the odd types some writers give a size to)
                    // carry data; links and directories never do, whatever the size says.
                    let data = match header.kind {
                        Kind::File | Kind::Other(_) => header.size,
                        _ => 0,
                    };
                    self.remaining = data;
                    self.padding = pad(data);
                    self.current = Some(name);
                    return Ok(Some(header));
                }
            }
        }
    }

    /// The current entry's data as a reader.
    pub fn data(&mut self) -> EntryData<'_, R> {
        EntryData { tar: self }
    }

    /// Data bytes of the current entry not yet read.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    fn where_(&self) -> String {
        match &self.current {
            Some(c) => format!("entry `{c}`"),
            None => "the first header".into(),
        }
    }

    fn skip_rest(&mut self) -> Result<(), TarError> {
        let n = self.remaining + self.padding;
        if n > 0 {
            let copied =
                io::copy(&mut (&mut self.inner).take(n), &mut io::sink()).map_err(TarError::Io)?;
            if copied != n {
                return Err(TarError::Truncated(self.where_()));
            }
        }
        self.remaining = 0;
        self.padding = 0;
        Ok(())
    }

    /// Reads one block; `false` at a clean end of input.
    fn read_block(&mut self, block: &mut [u8; BLOCK]) -> Result<bool, TarError> {
        let mut filled = 0;
        while filled < BLOCK {
            match self.inner.read(&mut block[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => {
                    return Err(TarError::Truncated(format!(
                        "a header after {}",
                        self.where_()
                    )));
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TarError::Io(e)),
            }
        }
        Ok(true)
    }

    /// Reads an extension entry's data (long name or PAX), refusing more than `limit` bytes.
    fn read_ext(&mut self, raw: &RawHeader, limit: u64, what: &str) -> Result<Vec<u8>, TarError> {
        if raw.size > limit {
            return Err(TarError::Refused {
                entry: String::from_utf8_lossy(trim_nul(&raw.name)).into_owned(),
                reason: format!("{what} of {} bytes (limit {limit})", raw.size),
            });
        }
        let mut data = Vec::with_capacity(raw.size as usize);
        let n = (&mut self.inner)
            .take(raw.size)
            .read_to_end(&mut data)
            .map_err(TarError::Io)?;
        if n as u64 != raw.size {
            return Err(TarError::Truncated(format!("a {what}")));
        }
        self.padding = pad(raw.size);
        self.remaining = 0;
        self.skip_rest()?;
        Ok(data)
    }
}

/// The data of the current entry; reads stop at its end.
pub struct EntryData<'a, R> {
    tar: &'a mut TarReader<R>,
}

impl<R: Read> Read for EntryData<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tar.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.tar.remaining).unwrap_or(usize::MAX));
        let n = self.tar.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                TarError::Truncated(self.tar.where_()),
            ));
        }
        self.tar.remaining -= n as u64;
        Ok(n)
    }
}

fn pad(n: u64) -> u64 {
    (BLOCK as u64 - n % BLOCK as u64) % BLOCK as u64
}

fn trim_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// The fields of one 512-byte header, before extensions are applied.
struct RawHeader {
    name: Vec<u8>,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: i64,
    typeflag: u8,
    link: Vec<u8>,
    dev_major: u32,
    dev_minor: u32,
}

impl RawHeader {
    fn parse(b: &[u8; BLOCK]) -> Result<RawHeader, String> {
        let stored = number(&b[148..156]).map_err(|e| format!("checksum field: {e}"))?;
        let mut unsigned: u64 = 0;
        let mut signed: i64 = 0;
        for (i, &c) in b.iter().enumerate() {
            let c = if (148..156).contains(&i) { b' ' } else { c };
            unsigned += u64::from(c);
            signed += i64::from(c as i8);
        }
        if stored != unsigned && stored as i64 != signed {
            return Err("checksum mismatch (not a tar stream, or corrupt)".into());
        }
        let magic = &b[257..265];
        let ustar = &magic[..6] == b"ustar\0";
        let gnu = magic == b"ustar  \0";
        let mut name = trim_nul(&b[0..100]).to_vec();
        if ustar {
            let prefix = trim_nul(&b[345..500]);
            if !prefix.is_empty() {
                let mut full = prefix.to_vec();
                full.push(b'/');
                full.extend_from_slice(&name);
                name = full;
            }
        }
        let field = |range: std::ops::Range<usize>, what: &str| -> Result<u64, String> {
            number(&b[range])
                .map_err(|e| format!("{what} field of `{}`: {e}", String::from_utf8_lossy(&name)))
        };
        let (dev_major, dev_minor) = if ustar || gnu {
            (
                field(329..337, "devmajor")? as u32,
                field(337..345, "devminor")? as u32,
            )
        } else {
            (0, 0)
        };
        Ok(RawHeader {
            mode: (field(100..108, "mode")? & 0o7777) as u32,
            uid: field(108..116, "uid")?,
            gid: field(116..124, "gid")?,
            size: field(124..136, "size")?,
            mtime: field(136..148, "mtime")? as i64,
            typeflag: b[156],
            link: trim_nul(&b[157..257]).to_vec(),
            dev_major,
            dev_minor,
            name,
        })
    }

    fn into_header(
        self,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
        pax: Option<Pax>,
    ) -> Header {
        let kind = match self.typeflag {
            b'0' | 0 | b'7' => Kind::File,
            b'1' => Kind::Hardlink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' => Kind::Dir,
            b'6' => Kind::Fifo,
            other => Kind::Other(other),
        };
        // Old tars mark directories only by a trailing slash on a regular-file type.
        let kind = if kind == Kind::File && self.typeflag == 0 && self.name.ends_with(b"/") {
            Kind::Dir
        } else {
            kind
        };
        let mut h = Header {
            path: long_name.unwrap_or(self.name),
            link: long_link.unwrap_or(self.link),
            kind,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            mtime: self.mtime,
            mtime_nsec: 0,
            atime: None,
            size: self.size,
            dev_major: self.dev_major,
            dev_minor: self.dev_minor,
            xattrs: Vec::new(),
        };
        if let Some(p) = pax {
            p.apply(&mut h);
        }
        h
    }
}

/// Parses a numeric header field: octal (space/NUL padded) or GNU base-256.
fn number(field: &[u8]) -> Result<u64, String> {
    if let Some(&first) = field.first()
        && first & 0x80 != 0
    {
        if first == 0xff {
            return Err("negative base-256 number".into());
        }
        let mut v: u64 = u64::from(first & 0x7f);
        for &c in &field[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(c)))
                .ok_or("base-256 number overflows")?;
        }
        return Ok(v);
    }
    let text = field
        .iter()
        .skip_while(|&&c| c == b' ' || c == 0)
        .take_while(|&&c| c != b' ' && c != 0)
        .copied()
        .collect::<Vec<u8>>();
    if text.is_empty() {
        return Ok(0);
    }
    let mut v: u64 = 0;
    for c in text {
        if !(b'0'..=b'7').contains(&c) {
            return Err(format!(
                "`{}` is not octal",
                String::from_utf8_lossy(field).trim_end_matches('\0')
            ));
        }
        v = v
            .checked_mul(8)
            .and_then(|v| v.checked_add(u64::from(c - b'0')))
            .ok_or("octal number overflows")?;
    }
    Ok(v)
}

/// The records of a PAX extended header that ferry uses.
#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<(i64, u32)>,
    atime: Option<(i64, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    sparse: bool,
}

impl Pax {
    fn parse(mut data: &[u8]) -> Result<Pax, String> {
        let mut pax = Pax::default();
        while !data.is_empty() {
            if data.iter().all(|&c| c == 0) {
                break;
            }
            let space = data
                .iter()
                .position(|&c| c == b' ')
                .ok_or("PAX record without a length")?;
            let len: usize = std::str::from_utf8(&data[..space])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("PAX record with a bad length")?;
            if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
                return Err("PAX record with a bad length".into());
            }
            let record = &data[space + 1..len - 1];
            data = &data[len..];
            let eq = record
                .iter()
                .position(|&c| c == b'=')
                .ok_or("PAX record without `=`")?;
            let (key, value) = (&record[..eq], &record[eq + 1..]);
            let num = |v: &[u8]| -> Result<u64, String> {
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| {
                        format!(
                            "PAX record {} is not a number",
                            String::from_utf8_lossy(key)
                        )
                    })
            };
            match key {
                b"path" => pax.path = Some(value.to_vec()),
                b"linkpath" => pax.link = Some(value.to_vec()),
                b"size" => pax.size = Some(num(value)?),
                b"uid" => pax.uid = Some(num(value)?),
                b"gid" => pax.gid = Some(num(value)?),
                b"mtime" => pax.mtime = time(value),
                b"atime" => pax.atime = time(value),
                k if k.starts_with(b"SCHILY.xattr.") => {
                    pax.xattrs
                        .push((k[b"SCHILY.xattr.".len()..].to_vec(), value.to_vec()));
                }
                k if k.starts_with(b"GNU.sparse.") => pax.sparse = true,
                _ => {}
            }
        }
        Ok(pax)
    }

    fn apply(self, h: &mut Header) {
        if let Some(p) = self.path {
            h.path = p;
        }
        if let Some(l) = self.link {
            h.link = l;
        }
        if let Some(s) = self.size {
            h.size = s;
        }
        if let Some(u) = self.uid {
            h.uid = u;
        }
        if let Some(g) = self.gid {
            h.gid = g;
        }
        if let Some((s, ns)) = self.mtime {
            h.mtime = s;
            h.mtime_nsec = ns;
        }
        h.atime = self.atime;
        h.xattrs = self.xattrs;
        if self.sparse {
            h.kind = Kind::Other(b'S');
        }
    }
}

/// A PAX time: `seconds[.fraction]`, possibly negative.
fn time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: u32 = 0;
    for (i, c) in frac.chars().take(9).enumerate() {
        let d = c.to_digit(10)?;
        nanos += d * 10u32.pow(8 - i as u32);
    }
    Some((secs, nanos))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a tar with the `tar` crate, for readers' tests.
    pub(crate) fn build(entries: &[(&str, ::tar::EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut b = ::tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = ::tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_mtime(1_700_000_000);
            if !link.is_empty() {
                b.append_link(&mut h, path, link).unwrap();
            } else {
                b.append_data(&mut h, path, *data).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<(Header, Vec<u8>)>, TarError> {
        let mut r = TarReader::new(bytes);
        let mut out = Vec::new();
        while let Some(h) = r.next_entry()? {
            let mut data = Vec::new();
            r.data().read_to_end(&mut data).map_err(TarError::Io)?;
            out.push((h, data));
        }
        Ok(out)
    }

    #[test]
    fn reads_files_dirs_links_and_long_names() {
        let long = format!("{}/file", "d".repeat(150));
        let bytes = build(&[
            ("dir/", ::tar::EntryType::Directory, b"", ""),
            ("dir/a", ::tar::EntryType::Regular, b"hello", ""),
            ("dir/l", ::tar::EntryType::Symlink, b"", "a"),
            (&long, ::tar::EntryType::Regular, b"x", ""),
        ]);
        let got = read_all(&bytes).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].0.kind, Kind::Dir);
        assert_eq!(got[1].1, b"hello");
        assert_eq!(got[2].0.kind, Kind::Symlink);
        assert_eq!(got[2].0.link, b"a");
        assert_eq!(got[3].0.path, long.as_bytes());
        assert_eq!(got[1].0.mtime, 1_700_000_000);
    }

    #[test]
    fn pax_records_override_the_header() {
        let mut b = ::tar::Builder::new(Vec::new());
        b.append_pax_extensions([
            ("path", &b"pax/name"[..]),
            ("SCHILY.xattr.user.k", b"v"),
            ("mtime", b"1700000000.5"),
        ])
        .unwrap();
        let mut h = ::tar::Header::new_ustar();
        h.set_size(2);
        h.set_mode(0o4755);
        b.append_data(&mut h, "short", &b"hi"[..]).unwrap();
        let got = read_all(&b.into_inner().unwrap()).unwrap();
        assert_eq!(got[0].0.path, b"pax/name");
        assert_eq!(got[0].0.xattrs, vec![(b"user.k".to_vec(), b"v".to_vec())]);
        assert_eq!(got[0].0.mtime_nsec, 500_000_000);
        assert_eq!(got[0].0.mode, 0o4755);
    }

    #[test]
    fn a_bad_checksum_is_refused() {
        let mut bytes = build(&[("a", ::tar::EntryType::Regular, b"x", "")]);
        bytes[0] = b'b';
        assert!(matches!(read_all(&bytes), Err(TarError::BadHeader { .. })));
    }

    #[test]
    fn truncated_data_is_an_error_naming_the_entry() {
        let bytes = build(&[("big", ::tar::EntryType::Regular, &[7u8; 5000], "")]);
        let err = read_all(&bytes[..2000]).unwrap_err();
        let source = std::error::Error::source(&err)
            .map(|s| s.to_string())
            .unwrap_or_default();
        assert!(source.contains("inside entry `big`"), "{err}: {source}");
    }

    #[test]
    fn an_absurd_size_is_refused_without_reading() {
        let mut h = ::tar::Header::new_gnu();
        h.set_size(1 << 50);
        h.set_path("huge").unwrap();
        h.set_cksum();
        let mut bytes = h.as_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 1024]);
        let err = read_all(&bytes).unwrap_err();
        assert!(err.to_string().contains("huge"), "{err}");
        assert!(matches!(err, TarError::Refused { .. }));
    }

    #[test]
    fn an_oversized_pax_header_is_refused_before_it_is_read() {
        let mut h = ::tar::Header::new_ustar();
        h.set_entry_type(::tar::EntryType::XHeader);
        h.set_size(1 << 33);
        h.set_path("pax").unwrap();
        h.set_cksum();
        let err = read_all(h.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("PAX header"), "{err}");
    }

    #[test]
    fn base256_numbers_parse() {
        assert_eq!(
            number(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap(),
            1 << 32
        );
        assert!(number(&[0xff; 12]).is_err());
        assert_eq!(number(b"0000644 \0").unwrap(), 0o644);
    }
}

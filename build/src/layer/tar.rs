//! A small tar writer for layers: USTAR headers, with a PAX record in front of an entry when a
//! field does not fit (long names and link targets, large ids, sizes and times) and for
//! extended attributes (`SCHILY.xattr.*`, as Docker writes them).

use std::io::{self, Read, Write};

/// The type of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Regular file.
    File,
    /// Hard link to an earlier entry (its path in `link`).
    HardLink,
    /// Symbolic link (target in `link`).
    Symlink,
    /// Character device.
    Char,
    /// Block device.
    Block,
    /// Directory.
    Dir,
    /// Named pipe.
    Fifo,
}

impl EntryKind {
    fn flag(self) -> u8 {
        match self {
            EntryKind::File => b'0',
            EntryKind::HardLink => b'1',
            EntryKind::Symlink => b'2',
            EntryKind::Char => b'3',
            EntryKind::Block => b'4',
            EntryKind::Dir => b'5',
            EntryKind::Fifo => b'6',
        }
    }
}

/// One entry's header.
#[derive(Debug, Clone)]
pub struct EntryHeader {
    /// Path inside the layer, no leading `/` (directories get their `/` added here).
    pub path: Vec<u8>,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits with set-id and sticky bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Content length (regular files only).
    pub size: u64,
    /// Link target.
    pub link: Vec<u8>,
    /// Device numbers.
    pub dev: (u32, u32),
    /// Extended attributes.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl EntryHeader {
    /// A header with everything but the path and kind zero.
    pub fn new(path: Vec<u8>, kind: EntryKind) -> EntryHeader {
        EntryHeader {
            path,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            link: Vec::new(),
            dev: (0, 0),
            xattrs: Vec::new(),
        }
    }
}

const BLOCK: usize = 512;

/// Writes tar entries to `out`.
pub struct TarWriter<W: Write> {
    out: W,
    entries: u64,
}

impl<W: Write> TarWriter<W> {
    /// A writer.
    pub fn new(out: W) -> Self {
        TarWriter { out, entries: 0 }
    }

    /// Entries written so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Writes one entry; `data` must yield exactly `h.size` bytes for a regular file.
    pub fn append(&mut self, h: &EntryHeader, data: Option<&mut dyn Read>) -> io::Result<()> {
        let mut path = h.path.clone();
        if h.kind == EntryKind::Dir && !path.ends_with(b"/") {
            path.push(b'/');
        }
        let size = if h.kind == EntryKind::File { h.size } else { 0 };
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let split = split_path(&path);
        if split.is_none() {
            pax.push((b"path".to_vec(), path.clone()));
        }
        if h.link.len() > 100 {
            pax.push((b"linkpath".to_vec(), h.link.clone()));
        }
        const MAX7: u64 = 0o7_777_777;
        const MAX11: u64 = 0o77_777_777_777;
        if h.uid > MAX7 {
            pax.push((b"uid".to_vec(), h.uid.to_string().into_bytes()));
        }
        if h.gid > MAX7 {
            pax.push((b"gid".to_vec(), h.gid.to_string().into_bytes()));
        }
        if size > MAX11 {
            pax.push((b"size".to_vec(), size.to_string().into_bytes()));
        }
        if h.mtime < 0 || h.mtime as u64 > MAX11 {
            pax.push((b"mtime".to_vec(), h.mtime.to_string().into_bytes()));
        }
        for (k, v) in &h.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            pax.push((key, v.clone()));
        }
        if !pax.is_empty() {
            let body = pax_records(&pax);
            let mut name = b"PaxHeaders/".to_vec();
            let base = path
                .rsplit(|b| *b == b'/')
                .find(|p| !p.is_empty())
                .unwrap_or(b"entry");
            name.extend_from_slice(&base[..base.len().min(80)]);
            let mut ph = header_block(&name, b"", b'x', 0o644, 0, 0, body.len() as u64, 0, (0, 0));
            checksum(&mut ph);
            self.out.write_all(&ph)?;
            self.out.write_all(&body)?;
            pad(&mut self.out, body.len() as u64)?;
        }
        let (prefix, name) = split.unwrap_or((&[][..], &path[path.len().saturating_sub(100)..]));
        let link = if h.link.len() > 100 {
            &h.link[..100]
        } else {
            &h.link[..]
        };
        let mut block = header_block(
            name,
            link,
            h.kind.flag(),
            h.mode,
            h.uid.min(MAX7),
            h.gid.min(MAX7),
            size.min(MAX11),
            h.mtime.clamp(0, MAX11 as i64) as u64,
            h.dev,
        );
        block[345..345 + prefix.len()].copy_from_slice(prefix);
        checksum(&mut block);
        self.out.write_all(&block)?;
        if size > 0 {
            let data = data.ok_or_else(|| io::Error::other("file entry without data"))?;
            let n = io::copy(&mut data.take(size), &mut self.out)?;
            if n != size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} changed while it was read ({n} of {size} bytes)",
                        String::from_utf8_lossy(&h.path)
                    ),
                ));
            }
            pad(&mut self.out, size)?;
        }
        self.entries += 1;
        Ok(())
    }

    /// Writes the end-of-archive blocks and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        Ok(self.out)
    }
}

/// `(prefix, name)` when the path fits USTAR's two fields.
fn split_path(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= 100 {
        return Some((&[], path));
    }
    if path.len() > 256 {
        return None;
    }
    // Split at a `/` so that the prefix fits 155 bytes and the rest 100 (a trailing `/` of a
    // directory may not be the split point).
    let search = &path[..path.len() - 1];
    for (i, b) in search.iter().enumerate().rev() {
        if *b == b'/' && i <= 155 && path.len() - i - 1 <= 100 {
            if i == 0 {
                return None;
            }
            return Some((&path[..i], &path[i + 1..]));
        }
    }
    None
}

#[allow(clippy::too_many_arguments)]
fn header_block(
    name: &[u8],
    link: &[u8],
    flag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    dev: (u32, u32),
) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    octal(&mut b[100..108], u64::from(mode));
    octal(&mut b[108..116], uid);
    octal(&mut b[116..124], gid);
    octal(&mut b[124..136], size);
    octal(&mut b[136..148], mtime);
    b[156] = flag;
    b[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    if matches!(flag, b'3' | b'4') {
        octal(&mut b[329..337], u64::from(dev.0));
        octal(&mut b[337..345], u64::from(dev.1));
    }
    b
}

/// Zero-padded octal with a terminating NUL.
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let s = format!("{value:0width$o}");
    let s = s.as_bytes();
    let s = &s[s.len().saturating_sub(width)..];
    field[..width].copy_from_slice(s);
    field[width] = 0;
}

fn checksum(b: &mut [u8; BLOCK]) {
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|x| u32::from(*x)).sum();
    let s = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(s.as_bytes());
}

fn pad(out: &mut impl Write, size: u64) -> io::Result<()> {
    let rem = (size % BLOCK as u64) as usize;
    if rem != 0 {
        out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
    }
    Ok(())
}

/// PAX records: `LEN key=value\n`, where LEN counts the whole record.
fn pax_records(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let rest = k.len() + v.len() + 3; // ' ', '=', '\n'
        let mut len = rest + rest.to_string().len();
        if len.to_string().len() != rest.to_string().len() {
            len = rest + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(bytes: &[u8]) -> Vec<(String, u64, Vec<u8>)> {
        let mut r = ferry_load::tar::TarReader::new(bytes);
        let mut out = Vec::new();
        while let Some(h) = r.next_entry().unwrap() {
            let mut data = Vec::new();
            r.data().read_to_end(&mut data).unwrap();
            out.push((String::from_utf8(h.path.clone()).unwrap(), h.uid, data));
        }
        out
    }

    #[test]
    fn long_names_big_ids_and_xattrs_round_trip() {
        let mut w = TarWriter::new(Vec::new());
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let longer = "x/".repeat(150) + "file";
        for (p, uid) in [
            (long.clone(), 0u64),
            (longer.clone(), 1 << 30),
            ("a".into(), 0),
        ] {
            let mut h = EntryHeader::new(p.into_bytes(), EntryKind::File);
            h.size = 3;
            h.uid = uid;
            h.mode = 0o644;
            h.xattrs = vec![(b"user.k".to_vec(), b"v".to_vec())];
            w.append(&h, Some(&mut &b"abc"[..])).unwrap();
        }
        let mut d = EntryHeader::new(b"dir".to_vec(), EntryKind::Dir);
        d.mode = 0o755;
        w.append(&d, None).unwrap();
        let bytes = w.finish().unwrap();
        let got = read_back(&bytes);
        assert_eq!(got[0].0, long);
        assert_eq!(got[1].0, longer);
        assert_eq!(got[1].1, 1 << 30);
        assert_eq!(got[2].2, b"abc");
        assert_eq!(got[3].0, "dir/");
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        let r = pax_records(&[(b"path".to_vec(), vec![b'a'; 93])]);
        assert_eq!(r.len(), 103);
        assert!(r.starts_with(b"103 path="));
    }

    #[test]
    fn a_short_file_is_an_error() {
        let mut w = TarWriter::new(Vec::new());
        let mut h = EntryHeader::new(b"f".to_vec(), EntryKind::File);
        h.size = 10;
        assert!(w.append(&h, Some(&mut &b"abc"[..])).is_err());
    }
}

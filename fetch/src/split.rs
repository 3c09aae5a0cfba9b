//! Writing an archive front to back as parts (`ferry save --split`): `FILE.000`, `FILE.001`, …
//! of at most a given size, each written as `.part` and renamed with the others only when the
//! whole archive is written, with one `FILE.sha256` listing every part (the layout `ferry fetch
//! --split` writes).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::partial::{PartHasher, part_name, with_suffix};

/// A writer that cuts what it is given into parts.
pub struct SplitWriter {
    base: PathBuf,
    size: u64,
    current: Option<(BufWriter<File>, u64)>,
    written: Vec<PathBuf>,
    hasher: PartHasher,
}

impl SplitWriter {
    /// Parts of `base` of at most `size` bytes.
    pub fn new(base: &Path, size: u64) -> SplitWriter {
        SplitWriter {
            base: base.to_path_buf(),
            size,
            current: None,
            written: Vec::new(),
            hasher: PartHasher::every(size),
        }
    }

    fn next_part(&mut self) -> io::Result<()> {
        if let Some((mut w, _)) = self.current.take() {
            w.flush()?;
            w.get_ref().sync_all()?;
        }
        let path = with_suffix(&part_name(&self.base, self.written.len()), ".part");
        let f = File::create(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        self.written.push(path);
        self.current = Some((BufWriter::with_capacity(1 << 20, f), 0));
        Ok(())
    }

    /// Finishes the last part, writes `FILE.sha256` and renames every part into place.
    /// Returns the parts.
    pub fn finish(mut self) -> io::Result<Vec<PathBuf>> {
        if self.current.is_none() {
            self.next_part()?;
        }
        if let Some((mut w, _)) = self.current.take() {
            w.flush()?;
            w.get_ref().sync_all()?;
        }
        let sums = std::mem::replace(&mut self.hasher, PartHasher::every(self.size)).finish();
        let finals: Vec<PathBuf> = (0..self.written.len())
            .map(|i| part_name(&self.base, i))
            .collect();
        let mut lines = String::new();
        for (path, sum) in finals.iter().zip(&sums) {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            lines.push_str(&format!("{}  {name}\n", sum.digest()));
        }
        let sidecar = with_suffix(&self.base, ".sha256");
        let tmp = with_suffix(&sidecar, ".part");
        let mut f = File::create(&tmp)?;
        f.write_all(lines.as_bytes())?;
        f.sync_all()?;
        for (from, to) in self.written.iter().zip(&finals) {
            std::fs::rename(from, to)?;
        }
        // Parts of an earlier, longer archive under the same name would look like more of
        // this one.
        let mut i = finals.len();
        while std::fs::remove_file(part_name(&self.base, i)).is_ok() {
            i += 1;
        }
        std::fs::rename(&tmp, &sidecar)?;
        // The renames reach the disk too: a power cut leaves the parts named, or none.
        ferry_oci::archive::sync_parent(&sidecar)?;
        Ok(finals)
    }

    /// Removes the parts written so far (after a failure).
    pub fn discard(mut self) {
        self.current = None;
        for p in &self.written {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Write for SplitWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.current.as_ref().is_none_or(|(_, n)| *n >= self.size) {
            self.next_part()?;
        }
        let (w, n) = self.current.as_mut().expect("a part is open");
        let room = (self.size - *n) as usize;
        let k = w.write(&buf[..room.min(buf.len())])?;
        *n += k as u64;
        self.hasher.update(&buf[..k]);
        Ok(k)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.current {
            Some((w, _)) => w.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_hold_the_bytes_in_order_with_their_sums() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("x.tar");
        std::fs::write(part_name(&base, 3), b"stale").unwrap();
        let data: Vec<u8> = (0..2500u32).map(|i| (i % 7) as u8).collect();
        let mut w = SplitWriter::new(&base, 1000);
        w.write_all(&data[..10]).unwrap();
        w.write_all(&data[10..]).unwrap();
        let parts = w.finish().unwrap();
        assert_eq!(parts.len(), 3);
        let mut all = Vec::new();
        for p in &parts {
            all.extend(std::fs::read(p).unwrap());
        }
        assert_eq!(all, data);
        let sums = std::fs::read_to_string(with_suffix(&base, ".sha256")).unwrap();
        assert_eq!(sums.lines().count(), 3);
        assert!(
            sums.starts_with(
                &ferry_oci::digest::sha256(&data[..1000])
                    .digest()
                    .to_string()
            )
        );
        assert!(sums.contains("  x.tar.002"));
        assert!(!part_name(&base, 3).exists());
    }
}

//! Content digests of source files, remembered between builds by what `stat` says of the
//! file (device, inode, size, modification and change times), so a rebuild whose sources did
//! not change does not read them again to find its cache keys. A file's change time moves on
//! every write and cannot be set back by its owner, so a stale entry cannot match (the same
//! rule as git's index and BuildKit's content-hash cache).

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ferry_oci::Hasher;
use serde::{Deserialize, Serialize};

/// Entries kept at most; beyond it only those used by the last build stay.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    stat: [i64; 7],
    sha256: String,
}

/// Remembered digests, loaded from and saved to one file.
#[derive(Debug, Default)]
pub struct Digests {
    file: Option<PathBuf>,
    known: HashMap<PathBuf, Entry>,
    used: HashMap<PathBuf, Entry>,
}

fn stat_key(m: &std::fs::Metadata) -> [i64; 7] {
    [
        m.dev() as i64,
        m.ino() as i64,
        m.size() as i64,
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ]
}

impl Digests {
    /// Digests remembered in `file` (none when it is missing or unreadable); `None`: nothing
    /// is remembered.
    pub fn load(file: Option<PathBuf>) -> Digests {
        let known = file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Digests {
            file,
            known,
            used: HashMap::new(),
        }
    }

    /// The sha256 of the regular file at `path` (metadata `meta`), from memory when its
    /// metadata still matches.
    pub fn file(&mut self, path: &Path, meta: &std::fs::Metadata) -> std::io::Result<String> {
        let stat = stat_key(meta);
        if let Some(e) = self.used.get(path).or_else(|| self.known.get(path))
            && e.stat == stat
        {
            let e = e.clone();
            let sha256 = e.sha256.clone();
            self.used.insert(path.to_path_buf(), e);
            return Ok(sha256);
        }
        let mut f = std::fs::File::open(path)?;
        let mut h = Hasher::sha256();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let sha256 = h.finish().to_string();
        self.used.insert(
            path.to_path_buf(),
            Entry {
                stat,
                sha256: sha256.clone(),
            },
        );
        Ok(sha256)
    }

    /// Writes what is worth remembering back (atomically; errors only cost a rehash).
    pub fn save(mut self) {
        let Some(file) = self.file.take() else {
            return;
        };
        if self.used.is_empty() {
            return;
        }
        let mut all = std::mem::take(&mut self.known);
        if all.len() + self.used.len() > MAX_ENTRIES {
            all.clear();
        }
        all.extend(self.used);
        let Ok(bytes) = serde_json::to_vec(&all) else {
            return;
        };
        if let Some(dir) = file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, &file).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_hashed_again() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        let memory = t.path().join("digests.json");
        std::fs::write(&f, "one").unwrap();
        let mut d = Digests::load(Some(memory.clone()));
        let first = d.file(&f, &f.metadata().unwrap()).unwrap();
        d.save();
        let mut d = Digests::load(Some(memory.clone()));
        assert_eq!(d.file(&f, &f.metadata().unwrap()).unwrap(), first);
        std::fs::write(&f, "two").unwrap();
        let second = d.file(&f, &f.metadata().unwrap()).unwrap();
        assert_ne!(first, second);
        assert_eq!(second, ferry_oci::digest::sha256(b"two").to_string());
    }
}

//! A blob staged while it streams past: the scanner appends the archive's bytes to a file of
//! the store's staging area (the blob it will commit anyway), and a layer worker reads the same
//! file behind it, waiting when it catches up. The archive is read once and at its own pace,
//! whatever the workers do, and the memory this takes is the page cache's.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use ferry_oci::Digest;

/// The writing end, used by the scanner.
pub struct Spool {
    file: File,
    state: Arc<State>,
    written: u64,
    completed: bool,
}

/// The reading end, used by a layer worker.
pub struct SpoolReader {
    file: File,
    state: Arc<State>,
    pos: u64,
}

/// What the scanner has written so far, shared by both ends.
#[derive(Default)]
pub struct State {
    progress: Mutex<Progress>,
    changed: Condvar,
}

#[derive(Default)]
struct Progress {
    written: u64,
    end: End,
    /// Threads waiting for more: only then does a write wake anyone (a system call).
    waiting: usize,
    /// How far the reader waits for before it wants waking.
    want: u64,
}

/// A reader that caught up waits for this much more (or the end), not for every write.
const QUANTUM: u64 = 1024 * 1024;

#[derive(Default, Clone)]
enum End {
    #[default]
    Open,
    /// Everything was written; the raw bytes hash to this.
    Complete(Digest),
    /// The scanner gave up (the archive is broken, or the load failed).
    Aborted,
}

impl State {
    /// The raw digest, once the scanner completed the blob; waits until then.
    pub fn digest(&self) -> Option<Digest> {
        let mut p = self.progress.lock().expect("spool lock");
        loop {
            match &p.end {
                End::Open => p = self.wait(p),
                End::Complete(d) => return Some(d.clone()),
                End::Aborted => return None,
            }
        }
    }

    fn wait<'a>(
        &self,
        mut p: std::sync::MutexGuard<'a, Progress>,
    ) -> std::sync::MutexGuard<'a, Progress> {
        p.waiting += 1;
        let mut p = self.changed.wait(p).expect("spool lock");
        p.waiting -= 1;
        p
    }

    fn set(&self, written: u64, end: Option<End>) {
        let mut p = self.progress.lock().expect("spool lock");
        p.written = written;
        if let Some(end) = end {
            p.end = end;
        }
        if p.waiting > 0 && (p.written >= p.want || !matches!(p.end, End::Open)) {
            self.changed.notify_all();
        }
    }
}

/// Creates the staged file at `path`, with both ends.
pub fn create(path: &Path) -> io::Result<(Spool, SpoolReader, Arc<State>)> {
    let file = File::create(path)?;
    let reader = File::open(path)?;
    let state = Arc::new(State::default());
    Ok((
        Spool {
            file,
            state: state.clone(),
            written: 0,
            completed: false,
        },
        SpoolReader {
            file: reader,
            state: state.clone(),
            pos: 0,
        },
        state,
    ))
}

impl Spool {
    /// Appends `buf` and lets the reader have it.
    pub fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        self.written += buf.len() as u64;
        self.state.set(self.written, None);
        Ok(())
    }

    /// Everything was written: the reader sees the end, and the raw digest.
    pub fn complete(mut self, digest: Digest) {
        self.completed = true;
        self.state.set(self.written, Some(End::Complete(digest)));
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if !self.completed {
            self.state.set(self.written, Some(End::Aborted));
        }
    }
}

impl Read for SpoolReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = {
            let mut p = self.state.progress.lock().expect("spool lock");
            let mut want = self.pos + 1;
            loop {
                if p.written >= want {
                    break p.written - self.pos;
                }
                match p.end {
                    End::Open => {
                        want = self.pos + QUANTUM;
                        p.want = want;
                        p = self.state.wait(p);
                    }
                    End::Complete(_) if p.written > self.pos => break p.written - self.pos,
                    End::Complete(_) => return Ok(0),
                    End::Aborted => {
                        return Err(io::Error::other("the archive ended before this blob"));
                    }
                }
            }
        };
        let want = buf
            .len()
            .min(usize::try_from(available).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want])?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_follows_the_writer_to_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, mut reader, state) = create(&dir.path().join("blob")).unwrap();
        let t = std::thread::spawn(move || {
            let mut out = Vec::new();
            reader.read_to_end(&mut out).unwrap();
            out
        });
        for i in 0..100u8 {
            spool.write_all(&[i; 1000]).unwrap();
        }
        let d = ferry_oci::digest::sha256(b"x");
        spool.complete(d.clone());
        let out = t.join().unwrap();
        assert_eq!(out.len(), 100_000);
        assert_eq!(out[99_999], 99);
        assert_eq!(state.digest(), Some(d));
    }

    #[test]
    fn an_abandoned_spool_is_an_error_for_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, mut reader, state) = create(&dir.path().join("blob")).unwrap();
        spool.write_all(b"part").unwrap();
        drop(spool);
        let mut out = Vec::new();
        assert!(reader.read_to_end(&mut out).is_err());
        assert_eq!(out, b"part");
        assert_eq!(state.digest(), None);
    }
}

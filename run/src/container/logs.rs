//! Logs of detached containers: one JSON object per chunk of output, as Docker's `json-file`
//! driver writes (`{"log":"…","stream":"stdout","time":"…"}`), so streams stay in order and
//! apart; `ferry logs [-f]` replays them.

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Container;
use crate::error::{RunError, io_err};

/// One record.
#[derive(Debug, Serialize, Deserialize)]
pub struct Record {
    /// The text, with its newline.
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When it was read (RFC 3339, UTC).
    pub time: String,
}

/// Appends records to a log file.
pub struct Writer {
    file: std::fs::File,
    partial: [Vec<u8>; 2],
}

impl Writer {
    /// Opens (creates) the log for appending.
    pub fn open(path: &Path) -> std::io::Result<Writer> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Writer {
            file,
            partial: [Vec::new(), Vec::new()],
        })
    }

    /// Records output of stream 1 (stdout) or 2 (stderr); complete lines are written at once.
    pub fn write(&mut self, stream: usize, data: &[u8]) {
        let buf = &mut self.partial[stream - 1];
        buf.extend_from_slice(data);
        if let Some(end) = buf.iter().rposition(|b| *b == b'\n') {
            let lines: Vec<u8> = buf.drain(..=end).collect();
            for line in lines.split_inclusive(|b| *b == b'\n') {
                self.record(stream, line);
            }
        }
    }

    /// Writes what is left without a newline.
    pub fn flush(&mut self) {
        for stream in 1..=2 {
            let rest = std::mem::take(&mut self.partial[stream - 1]);
            if !rest.is_empty() {
                self.record(stream, &rest);
            }
        }
    }

    fn record(&mut self, stream: usize, data: &[u8]) {
        let r = Record {
            log: String::from_utf8_lossy(data).into_owned(),
            stream: if stream == 1 { "stdout" } else { "stderr" }.into(),
            time: ferry_oci::time::rfc3339_nanos(std::time::SystemTime::now()),
        };
        if let Ok(mut line) = serde_json::to_vec(&r) {
            line.push(b'\n');
            let _ = self.file.write_all(&line);
        }
    }
}

/// A container's log records in order; with `follow`, it waits for more until the container
/// stops for good (restarts continue the same log). The caller prints them.
pub struct Records<'a> {
    container: &'a Container,
    path: std::path::PathBuf,
    reader: std::io::BufReader<std::fs::File>,
    follow: bool,
    /// Once the container stopped: what was left in the file, read in one last pass.
    rest: Option<std::vec::IntoIter<Record>>,
}

/// Opens a container's log for reading (`ferry logs [-f]`).
pub fn records(container: &Container, follow: bool) -> Result<Records<'_>, RunError> {
    records_from(container, follow, 0)
}

/// Opens a container's log for reading from byte `offset` (what a new start added).
pub fn records_from(
    container: &Container,
    follow: bool,
    offset: u64,
) -> Result<Records<'_>, RunError> {
    let path = container.log_path();
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RunError::NoLogs(container.short_id().to_string()));
        }
        Err(e) => return Err(io_err("open", &path)(e)),
    };
    let mut reader = std::io::BufReader::new(file);
    if offset > 0 {
        use std::io::Seek;
        reader
            .seek(std::io::SeekFrom::Start(offset))
            .map_err(io_err("read", &path))?;
    }
    Ok(Records {
        container,
        path,
        reader,
        follow,
        rest: None,
    })
}

/// Follows a container's output from byte `offset` of its log until it stops for good
/// (`ferry start -a`), each stream to its own. (The one place the library still prints:
/// `start` waits for the container after it.)
pub fn follow_from(container: &Container, offset: u64) -> Result<(), RunError> {
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    for r in records_from(container, true, offset)? {
        let r = r?;
        let w: &mut dyn Write = if r.stream == "stderr" {
            &mut err
        } else {
            &mut out
        };
        w.write_all(r.log.as_bytes())
            .and_then(|()| w.flush())
            .map_err(io_err("write", "standard output"))?;
    }
    Ok(())
}

impl Iterator for Records<'_> {
    type Item = Result<Record, RunError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(rest) = &mut self.rest {
            return rest.next().map(Ok);
        }
        let mut line = String::new();
        loop {
            line.clear();
            let n = match self.reader.read_line(&mut line) {
                Ok(n) => n,
                Err(e) => return Some(Err(io_err("read", &self.path)(e))),
            };
            if n > 0 && line.ends_with('\n') {
                match serde_json::from_str::<Record>(&line) {
                    Ok(r) => return Some(Ok(r)),
                    Err(_) => continue,
                }
            }
            if !self.follow {
                return None;
            }
            // A record may be half written; read it again whole next time.
            if n > 0 {
                use std::io::Seek;
                let back = self
                    .reader
                    .stream_position()
                    .and_then(|pos| self.reader.seek(std::io::SeekFrom::Start(pos - n as u64)));
                if let Err(e) = back {
                    return Some(Err(io_err("read", &self.path)(e)));
                }
            }
            // Restarts continue the same log.
            if !matches!(
                self.container.current_state().status,
                super::Status::Running | super::Status::Restarting
            ) {
                // One last pass for what was written just before it stopped.
                let mut rest = String::new();
                let _ = std::io::Read::read_to_string(&mut self.reader, &mut rest);
                let records: Vec<Record> = rest
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect();
                self.rest = Some(records.into_iter());
                return self.next();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_recorded_whole_per_stream() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut w = Writer::open(&p).unwrap();
        w.write(1, b"hel");
        w.write(2, b"oops\n");
        w.write(1, b"lo\nwor");
        w.flush();
        let recs: Vec<Record> = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let got: Vec<(&str, &str)> = recs
            .iter()
            .map(|r| (r.stream.as_str(), r.log.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("stderr", "oops\n"),
                ("stdout", "hello\n"),
                ("stdout", "wor")
            ]
        );
    }
}

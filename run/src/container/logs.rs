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
            time: rfc3339(std::time::SystemTime::now()),
        };
        if let Ok(mut line) = serde_json::to_vec(&r) {
            line.push(b'\n');
            let _ = self.file.write_all(&line);
        }
    }
}

/// Writes a container's logs to stdout/stderr; with `follow`, keeps going until it stops.
pub fn show(container: &Container, follow: bool) -> Result<(), RunError> {
    replay(container, follow, 0)
}

/// Follows a container's output from byte `offset` of its log until it stops for good
/// (`ferry start -a`).
pub fn follow_from(container: &Container, offset: u64) -> Result<(), RunError> {
    replay(container, true, offset)
}

fn replay(container: &Container, follow: bool, offset: u64) -> Result<(), RunError> {
    let path = container.log_path();
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RunError::Unsupported(format!(
                "logs of container {} (only containers started with -d keep their output)",
                container.short_id()
            )));
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
    let mut line = String::new();
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(io_err("read", &path))?;
        if n > 0 && line.ends_with('\n') {
            if let Ok(r) = serde_json::from_str::<Record>(&line) {
                let w: &mut dyn Write = if r.stream == "stderr" {
                    &mut err
                } else {
                    &mut out
                };
                w.write_all(r.log.as_bytes())
                    .map_err(io_err("write", "standard output"))?;
                w.flush().ok();
            }
            continue;
        }
        if !follow {
            return Ok(());
        }
        // A record may be half written; read it again whole next time.
        if n > 0 {
            use std::io::Seek;
            let pos = reader.stream_position().map_err(io_err("read", &path))?;
            reader
                .seek(std::io::SeekFrom::Start(pos - n as u64))
                .map_err(io_err("read", &path))?;
        }
        // Restarts continue the same log.
        if !matches!(
            container.current_state().status,
            super::Status::Running | super::Status::Restarting
        ) {
            // One last pass for what was written just before it stopped.
            let mut rest = String::new();
            let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
            for l in rest.lines() {
                if let Ok(r) = serde_json::from_str::<Record>(l) {
                    let w: &mut dyn Write = if r.stream == "stderr" {
                        &mut err
                    } else {
                        &mut out
                    };
                    let _ = w.write_all(r.log.as_bytes());
                }
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `2024-01-01T00:00:00.123456789Z`.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_rfc3339() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_704_067_200);
        assert_eq!(rfc3339(t), "2024-01-01T00:00:00.000000000Z");
    }

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

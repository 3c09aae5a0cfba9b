//! Where a command's archive goes (`save`, `export`, `cp … -`): a file written beside its
//! target as `FILE.part` and renamed once complete and on disk, so a reader never sees half
//! of one; or standard output, never a terminal.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Writes `path` through `write`; on failure nothing is left under either name.
pub fn to_file<T>(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let file = File::create(&part).with_context(|| format!("cannot create {}", part.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let result = write(&mut w).and_then(|v| Ok((v, w.into_inner().map_err(|e| e.into_error())?)));
    match result {
        Ok((v, file)) => {
            // Synced, renamed, the rename synced: a power cut never leaves half a file named.
            ferry_oci::archive::publish(file, &part, path).with_context(|| {
                format!("cannot publish {} as {}", part.display(), path.display())
            })?;
            Ok(v)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            Err(e)
        }
    }
}

/// Writes an archive to standard output through `write`; refused on a terminal.
pub fn to_stdout<T>(
    write: impl FnOnce(&mut BufWriter<std::io::StdoutLock<'static>>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    if std::io::stdout().is_terminal() {
        bail!(
            "refusing to write an archive to a terminal; redirect standard output or use -o FILE"
        );
    }
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let v = write(&mut out)?;
    out.flush()?;
    Ok(v)
}

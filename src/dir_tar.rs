//! A directory read as the tar archive it would make (`tar -cC DIR .`), streamed through a
//! pipe: `ferry load -i DIR` takes what `download-frozen-image-v2.sh`, `ferry fetch --dir` or
//! an unpacked `docker save` leaves, without a temporary archive.
//!
//! Metadata files come first (`manifest.json`, configs), then each subdirectory, names sorted,
//! so the loader learns what to expect before the layers pass. Symbolic links stay links
//! (`docker save` links repeated layers), and nothing outside the directory is read: a link
//! is never followed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// Starts writing the tar of `dir`; read it from the returned reader, then join the handle
/// for the writer's own error (a file that vanished, a read error).
pub fn stream(dir: &Path) -> std::io::Result<(impl Read + use<>, JoinHandle<std::io::Result<()>>)> {
    let (reader, writer) = std::io::pipe()?;
    let dir = dir.to_path_buf();
    let handle = std::thread::spawn(move || {
        let mut b = tar::Builder::new(writer);
        b.follow_symlinks(false);
        b.mode(tar::HeaderMode::Deterministic);
        append(&mut b, &dir, Path::new(""))?;
        b.finish()
    });
    Ok((reader, handle))
}

fn append<W: std::io::Write>(
    b: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
) -> std::io::Result<()> {
    let here = root.join(rel);
    let mut entries: Vec<(PathBuf, std::fs::FileType)> = std::fs::read_dir(&here)?
        .map(|e| e.and_then(|e| Ok((e.path(), e.file_type()?))))
        .collect::<std::io::Result<_>>()?;
    // Files before directories, each group by name.
    entries.sort_by(|(a, at), (b, bt)| at.is_dir().cmp(&bt.is_dir()).then(a.cmp(b)));
    for (path, kind) in entries {
        let name = rel.join(path.file_name().expect("read_dir names entries"));
        // Leftovers of an interrupted `fetch --dir` are not part of the image.
        if name.to_string_lossy().ends_with(".part") {
            continue;
        }
        if kind.is_dir() {
            b.append_dir(&name, &path)?;
            append(b, root, &name)?;
        } else {
            b.append_path_with_name(&path, &name)?;
        }
    }
    Ok(())
}

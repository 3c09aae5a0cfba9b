//! The copy fallback: the merged view of overlay-format layers written into one directory, for
//! kernels or file systems where overlayfs cannot be mounted (no overlayfs before 3.18, none in a
//! user namespace before 5.11, none with an upper directory on another overlayfs).

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// Applies `layers` (bottom first) onto `dest`: files replace files, a 0:0 character device
/// deletes what lower layers put at its path, and an opaque directory drops their children.
pub fn materialise(layers: &[std::path::PathBuf], dest: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dest)?;
    for layer in layers {
        apply_dir(layer, dest)?;
    }
    Ok(())
}

fn apply_dir(src: &Path, dst: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&from)?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            remove_any(&to)?;
            continue;
        }
        if ft.is_dir() {
            let existing = std::fs::symlink_metadata(&to).ok();
            match existing {
                Some(m) if m.is_dir() => {
                    if crate::spec::user::is_opaque(&from) {
                        for e in std::fs::read_dir(&to)? {
                            remove_any(&e?.path())?;
                        }
                    }
                }
                Some(_) => {
                    remove_any(&to)?;
                    std::fs::create_dir(&to)?;
                }
                None => std::fs::create_dir(&to)?,
            }
            apply_dir(&from, &to)?;
            set_owner_mode(&to, &meta)?;
            continue;
        }
        remove_any(&to)?;
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to)?;
        } else {
            // Devices, fifos, sockets: recreate the node (root only; skipped when refused).
            use rustix::fs::{CWD, FileType, Mode};
            let _ = rustix::fs::mknodat(
                CWD,
                &to,
                FileType::from_raw_mode(meta.mode()),
                Mode::from_raw_mode(meta.mode()),
                meta.rdev(),
            );
            continue;
        }
        set_owner_mode(&to, &meta)?;
    }
    Ok(())
}

fn set_owner_mode(path: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    // Ownership first: chown clears set-uid bits, chmod restores them.
    match std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid())) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
        other => other?,
    }
    if !meta.file_type().is_symlink() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    Ok(())
}

fn remove_any(p: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

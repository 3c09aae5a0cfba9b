//! Paths as users type them. On Windows, ferry is often started from a Cygwin or MobaXterm
//! shell, whose users write `/cygdrive/c/…` or `/drives/c/…`; a native program sees those as
//! paths on the current drive. They are translated to `C:\…` here, in one place.

use std::path::{Path, PathBuf};

/// The native form of a path the user gave.
pub fn native(path: &Path) -> PathBuf {
    if cfg!(windows)
        && let Some(s) = path.to_str()
        && let Some(translated) = from_posix_shell(s)
    {
        return PathBuf::from(translated);
    }
    path.to_path_buf()
}

/// `/cygdrive/c/x/y` or `/drives/c/x/y` (MobaXterm) → `C:\x\y`; anything else → `None`.
pub fn from_posix_shell(path: &str) -> Option<String> {
    let rest = path
        .strip_prefix("/cygdrive/")
        .or_else(|| path.strip_prefix("/drives/"))?;
    let mut parts = rest.splitn(2, '/');
    let drive = parts.next()?;
    if drive.len() != 1 || !drive.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let tail = parts.next().unwrap_or("").replace('/', "\\");
    Some(format!("{}:\\{tail}", drive.to_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cygwin_and_mobaxterm_drive_paths() {
        assert_eq!(
            from_posix_shell("/cygdrive/c/Users/ann/x.tar").unwrap(),
            r"C:\Users\ann\x.tar"
        );
        assert_eq!(
            from_posix_shell("/drives/d/images.tar").unwrap(),
            r"D:\images.tar"
        );
        assert_eq!(from_posix_shell("/cygdrive/z").unwrap(), r"Z:\");
    }

    #[test]
    fn other_paths_are_left_alone() {
        for p in [
            "/tmp/x.tar",
            "x.tar",
            r"C:\x.tar",
            "/cygdrive/cd/x",
            "/drives/1/x",
        ] {
            assert_eq!(from_posix_shell(p), None, "{p}");
        }
    }
}

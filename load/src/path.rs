//! Confining paths: entries of an archive and of a layer, `manifest.json` references and
//! link targets are all lexically resolved here and refused when they could leave the root.
//!
//! Nothing in an archive is ever resolved against the host filesystem: archive paths are keys
//! into what the stream contained, and layer paths are applied below a directory handle with
//! symlinks refused at every step (see the store's `fsutil`). This module is the first fence:
//! absolute paths and `..` components never get past it.

use std::fmt;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// The path starts at `/`.
    Absolute,
    /// The path has a `..` component (inside a layer), or climbs above the root (in an archive).
    Escapes,
    /// The path is empty where a file is needed.
    Empty,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::Absolute => "absolute path",
            PathError::Escapes => "path climbs out with `..`",
            PathError::Empty => "empty path",
        })
    }
}

/// A layer entry's path split into components: no `/`, `.`, `..` or empty parts. Empty for
/// the layer's root (`./`).
pub type Components = Vec<Vec<u8>>;

/// Splits a layer entry path (or hardlink target). Leading `./` is fine; `/x` and any `..`
/// are refused, even where the result would stay inside: no honest tar writer produces them.
pub fn layer_components(raw: &[u8]) -> Result<Components, PathError> {
    if raw.first() == Some(&b'/') {
        return Err(PathError::Absolute);
    }
    let mut out = Vec::new();
    for part in raw.split(|&c| c == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(PathError::Escapes),
            p => out.push(p.to_vec()),
        }
    }
    Ok(out)
}

/// Resolves a path inside an archive, relative to `base` (a directory inside the archive,
/// `""` for the root): `..` may step back but never above the root; absolute paths are
/// refused. Returns `a/b/c` with no leading or trailing slash.
pub fn archive_path(base: &str, path: &str) -> Result<String, PathError> {
    if path.starts_with('/') {
        return Err(PathError::Absolute);
    }
    let mut parts: Vec<&str> = base
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(PathError::Escapes);
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(PathError::Empty);
    }
    Ok(parts.join("/"))
}

/// The directory part of a clean archive path (`""` at the root).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

/// Lossy display of layer components for messages.
pub fn display(components: &[Vec<u8>]) -> String {
    components
        .iter()
        .map(|c| String::from_utf8_lossy(c))
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_paths_refuse_absolute_and_dotdot() {
        assert_eq!(
            layer_components(b"./etc/passwd").unwrap(),
            [b"etc".to_vec(), b"passwd".to_vec()]
        );
        assert_eq!(layer_components(b"./").unwrap(), Components::new());
        assert_eq!(layer_components(b"a//b/./c/").unwrap().len(), 3);
        assert_eq!(layer_components(b"/etc/passwd"), Err(PathError::Absolute));
        assert_eq!(
            layer_components(b"../../etc/passwd"),
            Err(PathError::Escapes)
        );
        assert_eq!(layer_components(b"a/../b"), Err(PathError::Escapes));
    }

    #[test]
    fn archive_paths_resolve_lexically_and_stay_inside() {
        assert_eq!(
            archive_path("", "./manifest.json").unwrap(),
            "manifest.json"
        );
        assert_eq!(
            archive_path("abc", "../def/layer.tar").unwrap(),
            "def/layer.tar"
        );
        assert_eq!(
            archive_path("", "../../etc/passwd"),
            Err(PathError::Escapes)
        );
        assert_eq!(archive_path("a", "../../x"), Err(PathError::Escapes));
        assert_eq!(archive_path("", "/etc/shadow"), Err(PathError::Absolute));
        assert_eq!(archive_path("", "."), Err(PathError::Empty));
    }
}

//! Joins a path inside the container's root without ever leaving it.
//!
//! Mount destinations come from the image and the user, and the image controls the rootfs: a
//! symlink `/etc -> /host/etc` or `../../..` must resolve *inside* the rootfs, or a bind mount
//! lands on the host (CVE-2015-3627/3629 in Docker; CVE-2021-30465 in runc). Symlinks are
//! resolved by hand relative to `root`; `..` stops at `root`.

use std::path::{Component, Path, PathBuf};

/// `root` + `unsafe_path`, with every symlink in existing components resolved within `root`.
pub fn secure_join(root: &Path, unsafe_path: &Path) -> PathBuf {
    let mut resolved = PathBuf::new();
    let mut pending: Vec<std::ffi::OsString> = Vec::new();
    push_components(&mut pending, unsafe_path);
    let mut links = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = root.join(&resolved).join(&c);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() && links < 255 => {
                links += 1;
                let target = std::fs::read_link(&candidate).unwrap_or_default();
                if target.is_absolute() {
                    resolved.clear();
                }
                push_components(&mut pending, &target);
            }
            _ => resolved.push(&c),
        }
    }
    root.join(resolved)
}

/// Pushes the normal and `..` components of `p` so that popping yields them in order.
fn push_components(stack: &mut Vec<std::ffi::OsString>, p: &Path) {
    let comps: Vec<std::ffi::OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    stack.extend(comps.into_iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("real/dir")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../..", root.join("real/up")).unwrap();
        std::os::unix::fs::symlink("real/dir", root.join("rel")).unwrap();
        assert_eq!(
            secure_join(root, Path::new("/abs/passwd")),
            root.join("etc/passwd")
        );
        assert_eq!(secure_join(root, Path::new("/real/up/x")), root.join("x"));
        assert_eq!(
            secure_join(root, Path::new("/rel/file")),
            root.join("real/dir/file")
        );
        assert_eq!(secure_join(root, Path::new("/../../a")), root.join("a"));
        assert_eq!(
            secure_join(root, Path::new("/new/path")),
            root.join("new/path")
        );
    }
}

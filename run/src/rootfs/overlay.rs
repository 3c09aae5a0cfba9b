//! The overlayfs mount: the image's layer snapshots as lower directories, a fresh upper and work
//! directory per container.

use std::path::{Path, PathBuf};

/// What the container's first process mounts on its rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// The `mount(2)` data string.
    pub data: String,
    /// Where to `chdir` before mounting, when the lower directories are given relative to it.
    pub chdir: Option<PathBuf>,
}

/// Mount data must fit in one page, which 40 layers with long paths do not: then the lower
/// directories are named relative to their common parent and the mount is made from there
/// (Docker's overlay2 shortens them with symlinks for the same reason).
pub const MAX_DATA: usize = 4095;

/// The overlay mount for `layers` (bottom first).
pub fn plan(layers: &[PathBuf], upper: &Path, work: &Path) -> Overlay {
    let data = |lowers: Vec<String>| {
        format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.join(":"),
            escape(&upper.to_string_lossy()),
            escape(&work.to_string_lossy())
        )
    };
    // overlayfs lists the uppermost lower directory first.
    let absolute: Vec<String> = layers
        .iter()
        .rev()
        .map(|l| escape(&l.to_string_lossy()))
        .collect();
    let full = data(absolute);
    if full.len() <= MAX_DATA {
        return Overlay {
            data: full,
            chdir: None,
        };
    }
    let base = common_parent(layers);
    let relative: Vec<String> = layers
        .iter()
        .rev()
        .map(|l| escape(&l.strip_prefix(&base).unwrap_or(l).to_string_lossy()))
        .collect();
    Overlay {
        data: data(relative),
        chdir: Some(base),
    }
}

/// overlayfs splits its options on `,` and lower directories on `:`; both can be escaped.
fn escape(p: &str) -> String {
    p.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace(':', "\\:")
}

fn common_parent(paths: &[PathBuf]) -> PathBuf {
    let mut base = paths
        .first()
        .and_then(|p| p.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    while !paths.iter().all(|p| p.starts_with(&base)) {
        if !base.pop() {
            break;
        }
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_dirs_are_listed_top_first() {
        let o = plan(
            &["/s/a".into(), "/s/b".into()],
            Path::new("/c/upper"),
            Path::new("/c/work"),
        );
        assert_eq!(
            o.data,
            "lowerdir=/s/b:/s/a,upperdir=/c/upper,workdir=/c/work"
        );
        assert_eq!(o.chdir, None);
    }

    #[test]
    fn long_lists_become_relative_to_their_common_parent() {
        let base = format!("/var/lib/ferry/{}", "x".repeat(60));
        let layers: Vec<PathBuf> = (0..60)
            .map(|i| PathBuf::from(format!("{base}/snapshots/{i:064}")))
            .collect();
        let o = plan(&layers, Path::new("/c/upper"), Path::new("/c/work"));
        assert_eq!(
            o.chdir.as_deref(),
            Some(Path::new(&format!("{base}/snapshots")))
        );
        assert!(o.data.starts_with(&format!("lowerdir={:064}:", 59)));
        assert!(o.data.len() <= MAX_DATA);
    }
}

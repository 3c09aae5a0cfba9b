//! Filling a volume from the image on first use, as Docker does: when a volume mounted at
//! `/path` is empty, it receives what the image has at `/path` (files, owners, modes, and the
//! directory's own owner and mode), so `-v data:/var/lib/app` starts with the image's data.
//!
//! The image's view of `/path` is merged from the layer snapshots directly, in either snapshot
//! format: only the layers above the topmost one that hides lower content at `/path` (a
//! whiteout or a file in place of the directory or of a parent, an opaque directory) count.

use std::fs::File;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{RunError, io_err};
use crate::image::ImageSource;

/// Fills the volume whose files are at `data` (`<volume>/_data`) with the image's content at
/// `path` when it is empty; returns whether it copied. A lock on the volume keeps two
/// containers starting at once from both filling it.
pub fn fill(
    source: &dyn ImageSource,
    layers: &[PathBuf],
    path: &str,
    data: &Path,
) -> Result<bool, RunError> {
    let lock_path = data.with_file_name(".lock");
    let lock = File::create(&lock_path).map_err(io_err("create", &lock_path))?;
    lock.lock().map_err(io_err("lock", &lock_path))?;
    let empty = std::fs::read_dir(data)
        .map_err(io_err("read", data))?
        .next()
        .is_none();
    if !empty {
        return Ok(false);
    }
    let subtrees = image_subtrees(layers, path);
    if subtrees.is_empty() {
        return Ok(false);
    }
    source
        .materialise(&subtrees, data)
        .map_err(|e| RunError::Io {
            action: "copy the image's content into volume",
            path: data.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
    Ok(true)
}

/// The directories `layer/path` whose merge is the image's `path`, bottom first.
pub fn image_subtrees(layers: &[PathBuf], path: &str) -> Vec<PathBuf> {
    let rel: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let at = |layer: &Path| rel.iter().fold(layer.to_path_buf(), |p, c| p.join(c));
    let is_dir = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    let mut base = 0;
    for (i, layer) in layers.iter().enumerate().rev() {
        if hides_lower(layer, &rel) {
            base = if is_dir(&at(layer)) { i } else { i + 1 };
            break;
        }
    }
    layers[base.min(layers.len())..]
        .iter()
        .map(|l| at(l))
        .filter(|p| is_dir(p))
        .collect()
}

/// Whether `layer` hides what lower layers have at `rel`: it deletes, replaces or makes
/// opaque `rel` or one of its parents.
fn hides_lower(layer: &Path, rel: &[&str]) -> bool {
    let mut dir = layer.to_path_buf();
    for c in rel {
        let here = dir.join(c);
        match std::fs::symlink_metadata(&here) {
            Ok(m) => {
                let ft = m.file_type();
                if ft.is_char_device() && m.rdev() == 0 {
                    return true;
                }
                if !ft.is_dir() {
                    return true;
                }
                if crate::spec::user::is_opaque(&here) || here.join(".wh..wh..opq").exists() {
                    return true;
                }
            }
            // Not in this layer: only a whiteout of the `.wh.` form can still hide it.
            Err(_) => return dir.join(format!(".wh.{c}")).exists(),
        }
        dir = here;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_layers_above_a_hiding_one_count() {
        let d = tempfile::tempdir().unwrap();
        let l = |n: &str| d.path().join(n);
        for (layer, file) in [
            ("l0", "srv/data/old"),
            ("l1", "srv/data/mid"),
            ("l3", "srv/data/new"),
        ] {
            let p = l(layer).join(file);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, layer).unwrap();
        }
        // l2 deletes /srv with a `.wh.` whiteout: l0 and l1 no longer count.
        std::fs::create_dir_all(l("l2")).unwrap();
        std::fs::write(l("l2").join(".wh.srv"), "").unwrap();
        let layers: Vec<PathBuf> = ["l0", "l1", "l2", "l3"].iter().map(|n| l(n)).collect();
        assert_eq!(
            image_subtrees(&layers, "/srv/data"),
            [l("l3").join("srv/data")]
        );
        // Without l2, every layer that has the directory counts, bottom first.
        let three = [layers[0].clone(), layers[1].clone(), layers[3].clone()];
        assert_eq!(image_subtrees(&three, "/srv/data/").len(), 3);
        // An opaque marker in l1 keeps l1 and drops l0.
        std::fs::write(l("l1").join("srv/data/.wh..wh..opq"), "").unwrap();
        assert_eq!(
            image_subtrees(&three, "/srv/data"),
            [l("l1").join("srv/data"), l("l3").join("srv/data")]
        );
        assert!(image_subtrees(&three, "/nowhere").is_empty());
    }
}

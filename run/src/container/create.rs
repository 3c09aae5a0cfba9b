//! `ferry create`: a container made from an image and flags, ready for `ferry start`, but not
//! started (Docker's `docker create`). It is what `run` makes before it starts anything:
//! `config.json`, `ferry.json` with the host config `start` reads back, the rootfs's
//! directories and volumes; its state stays `created`.

use super::Containers;
use super::run::{prepare, use_copy};
use crate::error::RunError;
use crate::image::ImageSource;
use crate::options::RunOptions;
use crate::rootfs::RootSource;

/// Makes the container; returns its full ID.
pub fn create(
    source: &dyn ImageSource,
    containers: &Containers,
    image_ref: &str,
    opts: RunOptions,
) -> Result<String, RunError> {
    let lock = source.lock().map_err(|e| RunError::Image {
        reference: image_ref.to_string(),
        source: e,
    })?;
    let image = source.image(image_ref).map_err(|e| RunError::Image {
        reference: image_ref.to_string(),
        source: e,
    })?;
    let mut opts = opts;
    opts.health.image = source.healthcheck(&image);
    let mut p = prepare(containers, &image, image_ref, opts)?;
    if !image.overlay_ready && p.source != RootSource::Directory {
        use_copy(&mut p, Some(source))?;
    }
    crate::volume::fill_new(&p, source)?;
    drop(lock);
    // `start` makes the cgroups again when it starts it; none are held meanwhile.
    p.cgroup.remove();
    Ok(p.container.id.clone())
}

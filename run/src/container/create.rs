//! `ferry create`: a container made from an image and flags, ready for `ferry start`, but not
//! started (Docker's `docker create`). It is what `run` makes before it starts anything:
//! `config.json`, `ferry.json` with the host config `start` reads back, the rootfs's
//! directories and volumes; its state stays `created`.

use super::Containers;
use super::run::prepare_from_store;
use crate::error::RunError;
use crate::image::ImageSource;
use crate::options::RunOptions;

/// Makes the container; returns its full ID.
pub fn create(
    source: &dyn ImageSource,
    containers: &Containers,
    image_ref: &str,
    opts: RunOptions,
) -> Result<String, RunError> {
    let (p, lock) = prepare_from_store(source, containers, image_ref, opts)?;
    drop(lock);
    // `start` makes the cgroups again when it starts it; none are held meanwhile.
    p.cgroup.remove();
    Ok(p.container.id.clone())
}

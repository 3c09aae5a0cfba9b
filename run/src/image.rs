//! Where images come from: the store, seen through the little the runtime needs.
//!
//! `ferry-load`'s `Store` implements [`ImageSource`] in the binary; tests and other callers can
//! hand the runtime any set of overlay-format layer directories.

use std::path::{Path, PathBuf};

use ferry_oci::Digest;
use ferry_oci::spec::ImageConfiguration;

use crate::error::RunError;

/// An image ready to run: its config and its layers as overlayfs lower directories.
#[derive(Debug, Clone)]
pub struct Image {
    /// The config digest (the image ID).
    pub id: Digest,
    /// The names it is known by (`docker.io/library/busybox:latest`).
    pub names: Vec<String>,
    /// The image config (Entrypoint, Cmd, Env, User, WorkingDir, …).
    pub config: ImageConfiguration,
    /// Layer snapshots, bottom first, in overlayfs format (whiteouts are 0:0 character devices,
    /// opaque directories carry `trusted.overlay.opaque=y`).
    pub layers: Vec<PathBuf>,
    /// Whether overlayfs can use the layers as they are; if not, the runtime copies them
    /// ([`ImageSource::materialise`]).
    pub overlay_ready: bool,
}

/// An error from an image source, kept opaque so any store can report its own.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// What [`ImageSource::lock`] hands out: held, it keeps the source's images.
pub type SourceLock = Option<Box<dyn std::any::Any>>;

/// Finds images and, where overlayfs is unavailable, merges their layers into a directory.
pub trait ImageSource {
    /// The image a user's reference names (name, ID or ID prefix).
    fn image(&self, reference: &str) -> Result<Image, SourceError>;

    /// Writes the merged view of `layers` into `dest` (an empty directory): the copy fallback.
    fn materialise(&self, layers: &[PathBuf], dest: &Path) -> Result<(), SourceError> {
        crate::rootfs::copy::materialise(layers, dest).map_err(Into::into)
    }

    /// The image's HEALTHCHECK, which the OCI image config has no field for (Docker's
    /// `config.Healthcheck`). `None` when the source cannot tell.
    fn healthcheck(&self, _image: &Image) -> Option<crate::container::health::HealthConfig> {
        None
    }

    /// Keeps the images from being removed while a container is being made (released once
    /// the container's `ferry.json` names its image). `None` when the source needs no lock.
    fn lock(&self) -> Result<SourceLock, SourceError> {
        Ok(None)
    }
}

/// Takes `source`'s lock, then reads the image `reference` names (both failures are the
/// image's): what making a container from an image starts with.
pub(crate) fn locked_image(
    source: &dyn ImageSource,
    reference: &str,
) -> Result<(SourceLock, Image), RunError> {
    let image_error = |e| RunError::Image {
        reference: reference.to_string(),
        source: e,
    };
    let lock = source.lock().map_err(image_error)?;
    let image = source.image(reference).map_err(image_error)?;
    Ok((lock, image))
}

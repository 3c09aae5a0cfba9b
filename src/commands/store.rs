//! The store as `ferry run` sees it: `ferry-load`'s `Store` behind `ferry-run`'s
//! `ImageSource`, and where containers live.

use std::path::{Path, PathBuf};

use ferry_load::Store;
use ferry_load::store::apply::SnapshotFormat;
use ferry_run::container::health::HealthConfig;
use ferry_run::{Containers, Image, ImageSource, SourceError};

use crate::cli::GlobalArgs;

/// The store, as an image source for the runtime.
pub struct StoreSource(pub Store);

impl ImageSource for StoreSource {
    fn image(&self, reference: &str) -> Result<Image, SourceError> {
        let img = self.0.image(reference)?;
        Ok(Image {
            id: img.id,
            names: img.names,
            config: img.config,
            layers: img.layers,
            // Snapshots written without root keep `.wh.` files: overlayfs cannot use them.
            overlay_ready: img.snapshot_format == SnapshotFormat::Overlay,
        })
    }

    fn materialise(&self, layers: &[PathBuf], dest: &Path) -> Result<(), SourceError> {
        ferry_load::store::materialize::materialize(layers, dest).map_err(Into::into)
    }

    fn healthcheck(&self, image: &Image) -> Option<HealthConfig> {
        // The OCI config model has no HEALTHCHECK: read Docker's key from the config blob.
        let id = image.id.to_string();
        let (_, hex) = id.split_once(':')?;
        let blob = self.0.root().join("blobs/sha256").join(hex);
        let config: serde_json::Value = serde_json::from_slice(&std::fs::read(blob).ok()?).ok()?;
        serde_json::from_value(config["config"]["Healthcheck"].clone()).ok()
    }

    fn lock(&self) -> Result<ferry_run::image::SourceLock, SourceError> {
        Ok(Some(Box::new(self.0.lock_shared()?)))
    }
}

/// Opens the store as an image source.
pub fn open(global: &GlobalArgs) -> anyhow::Result<StoreSource> {
    crate::store::open(global).map(StoreSource)
}

/// The containers directory of the store at `global`'s root (without opening the store: `ps`,
/// `stop` and the like need nothing else).
pub fn containers(global: &GlobalArgs) -> Containers {
    Containers::new(root(global).join("containers"))
}

/// The store's root directory (`--root`, `FERRY_ROOT`, else the default), without opening it.
pub fn root(global: &GlobalArgs) -> PathBuf {
    global.root.clone().unwrap_or_else(Store::default_root)
}

/// An image's labels (its config's `Labels`), by name or ID; empty when it has none or the
/// store does not have it.
pub fn labels_of(store: &Store, image: &str) -> std::collections::BTreeMap<String, String> {
    store.image(image).map(|i| labels(&i)).unwrap_or_default()
}

/// An image's labels (its config's `Labels`).
pub fn labels(img: &ferry_load::StoredImage) -> std::collections::BTreeMap<String, String> {
    img.config
        .config()
        .as_ref()
        .and_then(|c| c.labels().clone())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

//! The inventory of a store (`ferry inventory`): its images and every blob they use, what a
//! delta made on the online side may leave out.

use std::path::Path;

use ferry_oci::inventory::{Inventory, InventoryImage};
use ferry_oci::spec::ImageManifest;
use ferry_oci::{Digest, digest};

use crate::error::StoreError;
use crate::store::Store;

/// What `store` holds.
pub fn inventory(store: &Store) -> Result<Inventory, StoreError> {
    let root = store.root();
    let mut inv = Inventory::new(format!("store {}", root.display()));
    for image in store.list()? {
        let manifests: Vec<&Digest> = image
            .names
            .iter()
            .map(|(_, m)| m)
            .chain([&image.manifest])
            .collect();
        for (name, manifest) in &image.names {
            inv.images.push(InventoryImage {
                name: name.to_string(),
                digest: manifest.to_string(),
            });
        }
        if image.names.is_empty() {
            inv.images.push(InventoryImage {
                name: String::new(),
                digest: image.manifest.to_string(),
            });
        }
        for m in manifests {
            add_manifest(root, m, &mut inv)?;
        }
    }
    Ok(inv)
}

fn add_manifest(root: &Path, manifest: &Digest, inv: &mut Inventory) -> Result<(), StoreError> {
    let path = root.join(digest::blob_path(manifest));
    let bytes = std::fs::read(&path).map_err(StoreError::io("read", &path))?;
    inv.add_blob(manifest, bytes.len() as u64, None);
    let parsed: ImageManifest =
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Damaged {
            what: format!("manifest {manifest} does not parse: {e}"),
        })?;
    for d in std::iter::once(parsed.config()).chain(parsed.layers().iter()) {
        let digest = digest::parse(d.digest().as_ref()).map_err(|e| StoreError::Damaged {
            what: format!("manifest {manifest}: {e}"),
        })?;
        // Only what is really there: a delta made from this inventory must load here.
        if root.join(digest::blob_path(&digest)).is_file() {
            inv.add_blob(&digest, d.size(), None);
        }
    }
    Ok(())
}

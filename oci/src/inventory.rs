//! What the far side holds, as `ferry inventory` writes it (`have.json`) and `ferry fetch
//! --have` reads it: the images by name and digest, and every blob with its size. Carried back
//! to the online side, it lets a fetch leave out the layers the far side has (a delta archive).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::digest::{self, Digest};

/// One image the far side holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryImage {
    /// Its full name (`docker.io/library/busybox:latest`), or empty for an unnamed image.
    pub name: String,
    /// The manifest (or index) digest the name points at.
    pub digest: String,
}

/// One blob the far side holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryBlob {
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// For a registry's inventory: repositories holding it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
}

/// `have.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Format version, 1.
    #[serde(rename = "ferryInventory")]
    pub version: u32,
    /// Where it was taken: `store DIR` or `registry HOST[/PREFIX]`.
    pub source: String,
    /// The images.
    pub images: Vec<InventoryImage>,
    /// Every blob (manifests, configs, layers).
    pub blobs: Vec<InventoryBlob>,
}

impl Inventory {
    /// An empty inventory of `source`.
    pub fn new(source: impl Into<String>) -> Self {
        Inventory {
            version: 1,
            source: source.into(),
            images: Vec::new(),
            blobs: Vec::new(),
        }
    }

    /// Parses `have.json`.
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let inv: Inventory = serde_json::from_slice(bytes)?;
        Ok(inv)
    }

    /// Adds a blob (once), noting `repository` when given.
    pub fn add_blob(&mut self, digest: &Digest, size: u64, repository: Option<&str>) {
        let d = digest.to_string();
        let i = match self.blobs.iter().position(|b| b.digest == d) {
            Some(i) => i,
            None => {
                self.blobs.push(InventoryBlob {
                    digest: d,
                    size,
                    repositories: Vec::new(),
                });
                self.blobs.len() - 1
            }
        };
        if let Some(r) = repository
            && !self.blobs[i].repositories.iter().any(|x| x == r)
        {
            self.blobs[i].repositories.push(r.to_string());
        }
    }

    /// The digests of every blob held (invalid entries are ignored).
    pub fn digests(&self) -> HashSet<Digest> {
        self.blobs
            .iter()
            .filter_map(|b| digest::parse(&b.digest).ok())
            .collect()
    }

    /// Repositories holding `digest`, for a registry's inventory.
    pub fn repositories(&self, digest: &Digest) -> Vec<String> {
        let d = digest.to_string();
        self.blobs
            .iter()
            .find(|b| b.digest == d)
            .map(|b| b.repositories.clone())
            .unwrap_or_default()
    }
}

//! Delta archives: every manifest and config of their images, but only the layers the far side
//! lacks. What they leave out is listed in `ferry-delta.json`, among the metadata at the
//! start, so a reader knows before the first layer what it must find elsewhere (the store, or
//! the registry it pushes into). `docker load` cannot complete such an archive and fails; ferry
//! completes it from what the far side holds, or refuses before changing anything.

use serde::{Deserialize, Serialize};

use crate::archive::BlobRef;
use crate::digest::{self, Digest};

/// Name of the delta marker in the archive.
pub const DELTA_JSON: &str = "ferry-delta.json";

/// A blob a delta archive needs and leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeededBlob {
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// Its media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Repositories of the registry the inventory was taken from that hold it (mount sources
    /// for `ferry push`); empty for a store's inventory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
}

impl NeededBlob {
    /// The blob as a descriptor; `None` when its digest is not valid.
    pub fn blob(&self) -> Option<BlobRef> {
        Some(BlobRef {
            digest: digest::parse(&self.digest).ok()?,
            size: self.size,
            media_type: self.media_type.clone(),
        })
    }
}

/// `ferry-delta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaInfo {
    /// Format version, 1.
    #[serde(rename = "ferryDelta")]
    pub version: u32,
    /// What the far side was said to hold: an inventory's source, or an earlier archive.
    #[serde(rename = "basedOn")]
    pub based_on: String,
    /// The blobs the images need that the archive leaves out.
    pub needs: Vec<NeededBlob>,
}

impl DeltaInfo {
    /// A delta leaving out `needs`, made against `based_on`.
    pub fn new(based_on: String, needs: Vec<NeededBlob>) -> Self {
        DeltaInfo {
            version: 1,
            based_on,
            needs,
        }
    }

    /// Parses `ferry-delta.json`.
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Whether the archive leaves `digest` out.
    pub fn leaves_out(&self, digest: &Digest) -> bool {
        let d = digest.to_string();
        self.needs.iter().any(|n| n.digest == d)
    }

    /// Bytes left out in all.
    pub fn needed_bytes(&self) -> u64 {
        self.needs.iter().map(|n| n.size).sum()
    }
}

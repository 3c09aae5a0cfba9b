//! The metadata documents of an archive: `oci-layout`, `index.json`, `manifest.json` and
//! `repositories`, built deterministically from the images it holds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::digest::{Digest, blob_path};
use crate::media_type;
use crate::platform::Platform;
use crate::reference::ImageReference;

/// Name of the OCI layout marker file.
pub const OCI_LAYOUT: &str = "oci-layout";
/// Content of the OCI layout marker file.
pub const OCI_LAYOUT_CONTENT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";
/// Name of the OCI index.
pub const INDEX_JSON: &str = "index.json";
/// Name of the `docker load` manifest.
pub const MANIFEST_JSON: &str = "manifest.json";
/// Name of the legacy repositories map.
pub const REPOSITORIES: &str = "repositories";
/// containerd's annotation for the full image name (`docker.io/library/busybox:latest`).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI's annotation for the reference name; Docker 25+ writes only the tag there.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A blob an archive holds: its digest, its size and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobRef {
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// The media type it was announced with.
    pub media_type: String,
}

/// One image of an archive: a platform manifest, its config and its layers.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    /// The name it was fetched as; `None` for an image known only by its ID.
    pub reference: Option<ImageReference>,
    /// The platform manifest, exactly as served.
    pub manifest: BlobRef,
    /// The platform the manifest was chosen for, if known.
    pub platform: Option<Platform>,
    /// The image config.
    pub config: BlobRef,
    /// The layers, bottom first, as listed in the manifest.
    pub layers: Vec<BlobRef>,
    /// The image index this manifest was chosen from, when the archive keeps it (several
    /// platforms fetched): `index.json` then names the index, and of the records sharing it
    /// only the first (the default platform) goes into `manifest.json` for `docker load`.
    pub index: Option<BlobRef>,
}

impl ImageRecord {
    /// The blob `index.json` names for this image: its index, else its manifest.
    pub fn top(&self) -> &BlobRef {
        self.index.as_ref().unwrap_or(&self.manifest)
    }
}

/// The records that stand for their image in `index.json`, `manifest.json` and
/// `repositories`: every record of a single-platform image, the first of each kept index.
fn firsts(images: &[ImageRecord]) -> impl Iterator<Item = &ImageRecord> {
    images.iter().enumerate().filter_map(move |(i, img)| {
        let Some(index) = &img.index else {
            return Some(img);
        };
        let earlier = images[..i]
            .iter()
            .any(|o| o.index.as_ref() == Some(index) && o.reference == img.reference);
        (!earlier).then_some(img)
    })
}

/// One entry of `manifest.json`, the list `docker load` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerManifestEntry {
    /// Path of the config blob inside the archive.
    #[serde(rename = "Config")]
    pub config: String,
    /// `name:tag` entries; may be empty.
    #[serde(rename = "RepoTags", default, deserialize_with = "null_as_empty")]
    pub repo_tags: Vec<String>,
    /// Paths of the layer files, bottom first.
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// `index.json`: one descriptor per image name (an unnamed image gets one without names),
/// naming the kept index of a multi-platform image, else the platform manifest.
pub(crate) fn index_json(images: &[ImageRecord]) -> Vec<u8> {
    let manifests: Vec<Value> = firsts(images)
        .map(|img| {
            let top = img.top();
            let mut d = json!({
                "mediaType": top.media_type,
                "digest": top.digest.to_string(),
                "size": top.size,
            });
            if let Some(r) = &img.reference {
                let mut ann = serde_json::Map::new();
                ann.insert(ANNOTATION_IMAGE_NAME.into(), r.qualified().into());
                if let Some(tag) = r.tag() {
                    ann.insert(ANNOTATION_REF_NAME.into(), tag.into());
                }
                d["annotations"] = ann.into();
            }
            if let Some(p) = img.platform.as_ref().filter(|_| img.index.is_none()) {
                let mut pj = json!({"architecture": p.architecture, "os": p.os});
                if let Some(v) = &p.variant {
                    pj["variant"] = v.clone().into();
                }
                d["platform"] = pj;
            }
            d
        })
        .collect();
    to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": manifests,
    }))
}

/// `manifest.json`: one entry per distinct manifest, with every name it was fetched as.
pub(crate) fn docker_manifest(images: &[ImageRecord]) -> Vec<DockerManifestEntry> {
    let mut entries: Vec<(Digest, DockerManifestEntry)> = Vec::new();
    for img in firsts(images) {
        let tag = img.reference.as_ref().and_then(|r| r.familiar_tagged());
        if let Some((_, e)) = entries.iter_mut().find(|(d, _)| d == &img.manifest.digest) {
            if let Some(t) = tag
                && !e.repo_tags.contains(&t)
            {
                e.repo_tags.push(t);
            }
            continue;
        }
        entries.push((
            img.manifest.digest.clone(),
            DockerManifestEntry {
                config: blob_path(&img.config.digest),
                repo_tags: tag.into_iter().collect(),
                layers: img.layers.iter().map(|l| blob_path(&l.digest)).collect(),
            },
        ));
    }
    entries.into_iter().map(|(_, e)| e).collect()
}

/// `repositories`: familiar name → tag → image ID hex. Docker no longer reads it, but older
/// tools do, and it costs a few bytes.
pub(crate) fn repositories(images: &[ImageRecord]) -> Vec<u8> {
    let mut map: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for img in firsts(images) {
        if let Some(r) = &img.reference
            && let Some(tag) = r.tag()
        {
            map.entry(r.familiar_name())
                .or_default()
                .insert(tag.to_string(), img.config.digest.digest().to_string());
        }
    }
    to_bytes(&map)
}

/// The image name an index descriptor's annotations carry, if any.
///
/// `io.containerd.image.name` holds the full reference (containerd, Docker 25+, ferry).
/// `org.opencontainers.image.ref.name` holds whatever the writer chose: skopeo writes
/// `name:tag`, Docker 25+ only the tag. A bare word there is taken as a tag without a
/// repository (udocker turned those into random names, podman dropped them) and yields `None`.
pub fn annotated_name(
    annotations: Option<&std::collections::HashMap<String, String>>,
) -> Option<ImageReference> {
    let a = annotations?;
    if let Some(full) = a.get(ANNOTATION_IMAGE_NAME)
        && let Ok(r) = full.parse::<ImageReference>()
    {
        return Some(r);
    }
    let name = a.get(ANNOTATION_REF_NAME)?;
    if !(name.contains('/') || name.contains(':')) {
        return None;
    }
    name.parse().ok()
}

pub(crate) fn to_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("archive metadata serializes")
}

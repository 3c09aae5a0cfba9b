//! The store's `index.json`: which manifests are images, under which names.
//!
//! One descriptor per name, as in an archive (`io.containerd.image.name` holds the full
//! reference, `org.opencontainers.image.ref.name` the tag, so `skopeo` and `umoci` read the
//! store as an OCI layout). An image that lost its last name keeps one descriptor without
//! annotations, as Docker keeps a `<none>` image. The image ID is the config digest, read from
//! the manifest blob; several manifests may share one config (Docker and OCI flavours of the
//! same image) and are one image.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ferry_oci::archive::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, BlobRef, OCI_LAYOUT, OCI_LAYOUT_CONTENT,
};
use ferry_oci::spec::ImageManifest;
use ferry_oci::{Digest, ImageConfig, ImageReference, Platform, digest, media_type};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::store::fsutil::write_atomic;

pub(crate) const INDEX: &str = "index.json";

/// One descriptor of index.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Entry {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

impl Entry {
    /// A descriptor for a manifest, without a name.
    pub fn for_manifest(manifest: &BlobRef, platform: &Platform) -> Entry {
        let mut p = serde_json::json!({"architecture": platform.architecture, "os": platform.os});
        if let Some(v) = &platform.variant {
            p["variant"] = v.clone().into();
        }
        Entry {
            media_type: manifest.media_type.clone(),
            digest: manifest.digest.to_string(),
            size: manifest.size,
            annotations: None,
            platform: Some(p),
        }
    }

    /// The same descriptor under `name`.
    pub fn named(mut self, name: &ImageReference) -> Entry {
        let mut a = BTreeMap::new();
        a.insert(ANNOTATION_IMAGE_NAME.to_string(), name.qualified());
        if let Some(t) = name.tag() {
            a.insert(ANNOTATION_REF_NAME.to_string(), t.to_string());
        }
        self.annotations = Some(a);
        self
    }

    fn unnamed(mut self) -> Entry {
        self.annotations = None;
        self
    }

    /// The name this descriptor gives, if any.
    pub fn name(&self) -> Option<ImageReference> {
        self.annotations
            .as_ref()?
            .get(ANNOTATION_IMAGE_NAME)?
            .parse()
            .ok()
    }

    fn manifest_digest(&self) -> Result<Digest, StoreError> {
        digest::parse(&self.digest).map_err(|e| StoreError::Damaged {
            what: format!("index.json: {e}"),
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct IndexFile {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Entry>,
}

/// What a manifest of the store says.
#[derive(Debug)]
pub(crate) struct ManifestFacts {
    pub manifest: BlobRef,
    pub config: BlobRef,
    pub layers: Vec<BlobRef>,
    pub diff_ids: Vec<Digest>,
}

/// An image found by [`Catalog::find`].
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub id: Digest,
    pub manifest: Digest,
    /// The name it was found by, if any.
    pub name: Option<ImageReference>,
}

/// index.json with the manifests it points at, read on demand.
pub(crate) struct Catalog {
    root: PathBuf,
    /// index.json as read: written back only when it changes.
    read: Vec<u8>,
    entries: Vec<Entry>,
    manifests: RefCell<HashMap<String, Rc<ManifestFacts>>>,
}

/// Whether `oci-layout` and index.json exist.
pub(crate) fn initialized(root: &Path) -> bool {
    root.join(OCI_LAYOUT).is_file() && root.join(INDEX).is_file()
}

/// Creates `oci-layout` and an empty index.json where missing (under the exclusive lock).
pub(crate) fn init(root: &Path) -> Result<(), StoreError> {
    let layout = root.join(OCI_LAYOUT);
    if !layout.exists() {
        write_atomic(&layout, OCI_LAYOUT_CONTENT.as_bytes())
            .map_err(StoreError::io("write", &layout))?;
    }
    let index = root.join(INDEX);
    if !index.exists() {
        let empty = IndexFile {
            schema_version: 2,
            media_type: Some(media_type::OCI_INDEX.into()),
            manifests: Vec::new(),
        };
        write_atomic(&index, &serde_json::to_vec(&empty).expect("serializes"))
            .map_err(StoreError::io("write", &index))?;
    }
    Ok(())
}

impl Catalog {
    pub fn read(root: &Path) -> Result<Catalog, StoreError> {
        let path = root.join(INDEX);
        let bytes = std::fs::read(&path).map_err(StoreError::io("read", &path))?;
        let file: IndexFile = serde_json::from_slice(&bytes).map_err(|e| StoreError::Damaged {
            what: format!("index.json does not parse: {e}"),
        })?;
        Ok(Catalog {
            root: root.to_path_buf(),
            read: bytes,
            entries: file.manifests,
            manifests: RefCell::new(HashMap::new()),
        })
    }

    /// Writes index.json atomically (written aside, synced, renamed, its directory synced),
    /// when it changed.
    pub fn write(&self) -> Result<(), StoreError> {
        let file = IndexFile {
            schema_version: 2,
            media_type: Some(media_type::OCI_INDEX.into()),
            manifests: self.entries.clone(),
        };
        let bytes = serde_json::to_vec(&file).expect("serializes");
        if bytes == self.read {
            return Ok(());
        }
        let path = self.root.join(INDEX);
        write_atomic(&path, &bytes).map_err(StoreError::io("write", &path))
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    fn blob(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let p = self.root.join(digest::blob_path(d));
        std::fs::read(&p).map_err(StoreError::io("read", &p))
    }

    /// The facts of a manifest (its config, layers and the config's diff_ids).
    pub fn manifest(&self, d: &Digest) -> Result<Rc<ManifestFacts>, StoreError> {
        if let Some(f) = self.manifests.borrow().get(d.as_ref()) {
            return Ok(f.clone());
        }
        let bytes = self.blob(d)?;
        let damaged = |e: String| StoreError::Damaged {
            what: format!("manifest {d}: {e}"),
        };
        let m: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
        let blob_ref = |desc: &ferry_oci::spec::Descriptor| -> Result<BlobRef, StoreError> {
            Ok(BlobRef {
                digest: digest::parse(desc.digest().as_ref())
                    .map_err(|e| damaged(e.to_string()))?,
                size: desc.size(),
                media_type: desc.media_type().to_string(),
            })
        };
        let config = blob_ref(m.config())?;
        let layers = m
            .layers()
            .iter()
            .map(blob_ref)
            .collect::<Result<Vec<_>, _>>()?;
        let diff_ids = ImageConfig::parse(&self.blob(&config.digest)?)
            .map_err(|e| damaged(format!("config {}: {e}", config.digest)))?
            .diff_ids;
        let facts = Rc::new(ManifestFacts {
            manifest: BlobRef {
                digest: d.clone(),
                size: bytes.len() as u64,
                media_type: m
                    .media_type()
                    .as_ref()
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| media_type::OCI_MANIFEST.into()),
            },
            config,
            layers,
            diff_ids,
        });
        self.manifests
            .borrow_mut()
            .insert(d.to_string(), facts.clone());
        Ok(facts)
    }

    /// The facts of a config (its platform, when it was built).
    pub fn config(&self, config: &Digest) -> Result<ImageConfig, StoreError> {
        ImageConfig::parse(&self.blob(config)?).map_err(|e| StoreError::Damaged {
            what: format!("config {config}: {e}"),
        })
    }

    pub fn id_of(&self, e: &Entry) -> Result<Digest, StoreError> {
        Ok(self.manifest(&e.manifest_digest()?)?.config.digest.clone())
    }

    /// Every name of image `id`.
    pub fn names_of(&self, id: &Digest) -> Vec<ImageReference> {
        self.entries
            .iter()
            .filter(|e| self.id_of(e).ok().as_ref() == Some(id))
            .filter_map(Entry::name)
            .collect()
    }

    /// Every distinct image ID, in index order.
    pub fn ids(&self) -> Result<Vec<Digest>, StoreError> {
        let mut out: Vec<Digest> = Vec::new();
        for e in &self.entries {
            let id = self.id_of(e)?;
            if !out.contains(&id) {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Finds an image by name, `name@digest`, full ID or unique ID prefix (Docker's order:
    /// a name first, then an ID).
    pub fn find(&self, text: &str) -> Result<Found, StoreError> {
        if let Ok(r) = text.parse::<ImageReference>() {
            for e in &self.entries {
                let Some(n) = e.name() else { continue };
                let hit = match r.digest() {
                    Some(d) => n.name() == r.name() && e.digest == d.as_ref(),
                    None => n.qualified() == r.qualified(),
                };
                if hit {
                    return Ok(Found {
                        id: self.id_of(e)?,
                        manifest: e.manifest_digest()?,
                        name: Some(n),
                    });
                }
            }
            if let Some(d) = r.digest() {
                for e in &self.entries {
                    if e.digest == d.as_ref() {
                        return Ok(Found {
                            id: self.id_of(e)?,
                            manifest: e.manifest_digest()?,
                            name: None,
                        });
                    }
                }
            }
        }
        let hex = text.strip_prefix("sha256:").unwrap_or(text);
        if !hex.is_empty()
            && hex.len() <= 64
            && hex
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        {
            let ids: Vec<Digest> = self
                .ids()?
                .into_iter()
                .filter(|id| id.digest().starts_with(hex))
                .collect();
            match ids.len() {
                0 => {}
                1 => {
                    let id = ids[0].clone();
                    let e = self
                        .entries
                        .iter()
                        .find(|e| self.id_of(e).ok().as_ref() == Some(&id))
                        .expect("an entry has this id");
                    return Ok(Found {
                        id,
                        manifest: e.manifest_digest()?,
                        name: None,
                    });
                }
                n => {
                    return Err(StoreError::Ambiguous {
                        prefix: text.to_string(),
                        count: n,
                    });
                }
            }
        }
        Err(StoreError::NotFound(text.to_string()))
    }

    /// Points `name` at `target` (a descriptor of a manifest already in the store). An image
    /// that loses its last name this way stays, unnamed.
    pub fn tag(&mut self, name: &ImageReference, target: Entry) -> Result<(), StoreError> {
        let target_id = self.id_of(&target)?;
        let qualified = name.qualified();
        if self.entries.iter().any(|e| {
            e.digest == target.digest && e.name().is_some_and(|n| n.qualified() == qualified)
        }) {
            return Ok(());
        }
        let (moved, kept): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|e| e.name().is_some_and(|n| n.qualified() == qualified));
        self.entries = kept;
        // The image gets a name: its unnamed descriptor (if any) is no longer needed.
        let entries = std::mem::take(&mut self.entries);
        for e in entries {
            if e.name().is_none() && self.id_of(&e)? == target_id {
                continue;
            }
            self.entries.push(e);
        }
        for old in moved {
            // The same image under another manifest keeps its name through `target`.
            if self.id_of(&old)? != target_id {
                self.keep_unnamed(old)?;
            }
        }
        self.entries.push(target.named(name));
        Ok(())
    }

    /// Makes sure an image loaded without a name is listed.
    pub fn add_unnamed(&mut self, target: Entry) -> Result<(), StoreError> {
        let id = self.id_of(&target)?;
        for e in &self.entries {
            if self.id_of(e)? == id {
                return Ok(());
            }
        }
        self.entries.push(target.unnamed());
        Ok(())
    }

    /// Removes `name`; returns the image it named, and whether that image has no name left.
    pub fn untag(&mut self, name: &ImageReference) -> Result<Option<(Digest, bool)>, StoreError> {
        let qualified = name.qualified();
        let Some(pos) = self
            .entries
            .iter()
            .position(|e| e.name().is_some_and(|n| n.qualified() == qualified))
        else {
            return Ok(None);
        };
        let old = self.entries.remove(pos);
        let id = self.id_of(&old)?;
        let orphan = self.keep_unnamed(old)?;
        Ok(Some((id, orphan)))
    }

    /// Keeps `old`'s image listed without a name if no other descriptor lists it; returns
    /// whether it had to.
    fn keep_unnamed(&mut self, old: Entry) -> Result<bool, StoreError> {
        let id = self.id_of(&old)?;
        for e in &self.entries {
            if self.id_of(e)? == id {
                return Ok(false);
            }
        }
        self.entries.push(old.unnamed());
        Ok(true)
    }

    /// Drops every descriptor of image `id`.
    pub fn remove_image(&mut self, id: &Digest) -> Result<(), StoreError> {
        let entries = std::mem::take(&mut self.entries);
        for e in entries {
            if &self.id_of(&e)? != id {
                self.entries.push(e);
            }
        }
        Ok(())
    }

    /// Blobs and snapshots (chain IDs) the listed images need, plus the configs and snapshots
    /// of `extra_ids` (images containers use that are no longer listed).
    pub fn referenced(
        &self,
        extra_ids: &[Digest],
    ) -> Result<(HashSet<String>, HashSet<String>), StoreError> {
        let mut blobs = HashSet::new();
        let mut chains = HashSet::new();
        for e in &self.entries {
            let f = self.manifest(&e.manifest_digest()?)?;
            blobs.insert(f.manifest.digest.digest().to_string());
            blobs.insert(f.config.digest.digest().to_string());
            blobs.extend(f.layers.iter().map(|l| l.digest.digest().to_string()));
            chains.extend(
                crate::resolve::chain_ids(&f.diff_ids)
                    .iter()
                    .map(|c| c.digest().to_string()),
            );
        }
        for id in extra_ids {
            let Ok(diff_ids) = self
                .blob(id)
                .map_err(drop)
                .and_then(|b| ImageConfig::parse(&b).map_err(drop))
                .map(|c| c.diff_ids)
            else {
                continue;
            };
            blobs.insert(id.digest().to_string());
            chains.extend(
                crate::resolve::chain_ids(&diff_ids)
                    .iter()
                    .map(|c| c.digest().to_string()),
            );
        }
        Ok((blobs, chains))
    }
}

//! What `ferry build` needs from the store: images to build on, a private workspace, layers
//! and images committed one step at a time, and the build cache.
//!
//! ```text
//! <root>/build-cache/<key>.json   one record per cached step: the step's image (manifest and
//!                                 config digests) and the image it was built on
//! ```
//!
//! A step's image is an ordinary image of the store (manifest, config and layer blobs,
//! snapshots) that index.json does not list: only its cache record keeps it, and collection
//! treats records like names. `system prune` drops the records no named image was built
//! through (`-a`: all of them); `system df` counts them.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use ferry_oci::archive::BlobRef;
use ferry_oci::{Digest, ImageReference, Platform, digest};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::resolve::chain_ids;
use crate::store::apply::ApplyOptions;
use crate::store::index::{Catalog, Entry};
use crate::store::load::{LoadOptions, Staging};
use crate::store::snapshot::{self, FS_DIR, INFO_JSON, SnapshotInfo};
use crate::store::{Store, fsutil};

const CACHE_DIR: &str = "build-cache";

/// A layer of an image a build uses.
#[derive(Debug, Clone)]
pub struct BuildLayer {
    /// The diff_id.
    pub diff_id: Digest,
    /// The blob.
    pub blob: BlobRef,
    /// The snapshot directory.
    pub snapshot: PathBuf,
}

/// An image as a build uses it.
#[derive(Debug, Clone)]
pub struct BuildImage {
    /// The image ID.
    pub id: Digest,
    /// The config blob.
    pub config: Vec<u8>,
    /// The manifest's media type.
    pub manifest_media_type: String,
    /// Layers, bottom first.
    pub layers: Vec<BuildLayer>,
}

/// A layer a build made, to be moved into the store.
#[derive(Debug, Clone, Copy)]
pub struct NewBuildLayer<'a> {
    /// The compressed tar (a file on the store's file system).
    pub blob: &'a Path,
    /// Its digest.
    pub digest: &'a Digest,
    /// Its diff_id.
    pub diff_id: &'a Digest,
    /// A directory holding the layer's changes in the store's snapshot form, taken as the
    /// snapshot when given (else the blob is unpacked).
    pub tree: Option<&'a Path>,
    /// The bytes of `tree`'s regular files and its entries, when the caller counted them
    /// (else the store walks the tree again).
    pub tree_stats: Option<(u64, u64)>,
}

/// One build-cache record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheRecord {
    manifest: String,
    config: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    created: u64,
}

/// What `system df` says of the build cache.
#[derive(Debug, Clone, Default)]
pub struct CacheUsage {
    /// Records.
    pub records: usize,
    /// Records some named image (or container) was built through.
    pub active: usize,
    /// Bytes of blobs and snapshots only the cache keeps.
    pub bytes: u64,
    /// Of which only unused records keep (what `system prune` frees).
    pub reclaimable: u64,
}

/// A running build's directory in the store's `tmp/`, locked while the build lives (so
/// collection waits, as for a load) and removed with everything in it when dropped.
pub struct BuildSession<'s> {
    store: &'s Store,
    staging: Staging,
    seq: std::cell::Cell<u64>,
}

impl Store {
    /// Starts a build session.
    pub fn build_session(&self) -> Result<BuildSession<'_>, StoreError> {
        // A RUN step's container writes its files in `containers/ID/upper`: placed beside
        // what was just deleted there (the last step's container, a pruned cache), each new
        // inode skips every inode deleted in the last minute on ext4 without a journal (see
        // `spread_subdirectories`). Measured here after a prune: a RUN creating 2,000 files
        // 0.6–1.0 s, and 0.1 s with the flag; the 3,000 copy-ups of a chmod 0.9–1.6 s, 0.2 s.
        fsutil::spread_subdirectories(&self.root.join(super::CONTAINERS));
        Ok(BuildSession {
            store: self,
            staging: Staging::create(self)?,
            seq: std::cell::Cell::new(0),
        })
    }

    /// An image by name, ID or ID prefix, for a build; `None` when there is none.
    pub fn build_image(&self, reference: &str) -> Result<Option<BuildImage>, StoreError> {
        let _lock = self.lock_shared()?;
        let catalog = Catalog::read(&self.root)?;
        let found = match catalog.find(reference) {
            Ok(f) => f,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        self.image_of_manifest(&catalog, &found.manifest).map(Some)
    }

    /// The image a build-cache key was recorded for, if all it needs is still there.
    pub fn build_cached(&self, key: &Digest) -> Result<Option<BuildImage>, StoreError> {
        let _lock = self.lock_shared()?;
        let Some(record) = self.cache_record(key) else {
            return Ok(None);
        };
        let Ok(manifest) = digest::parse(&record.manifest) else {
            return Ok(None);
        };
        let catalog = Catalog::read(&self.root)?;
        match self.image_of_manifest(&catalog, &manifest) {
            Ok(img)
                if img
                    .layers
                    .iter()
                    .all(|l| self.blob_path(&l.blob.digest).is_file()) =>
            {
                Ok(Some(img))
            }
            // Collected meanwhile (or damaged): a miss, the step runs again.
            _ => Ok(None),
        }
    }

    fn image_of_manifest(
        &self,
        catalog: &Catalog,
        manifest: &Digest,
    ) -> Result<BuildImage, StoreError> {
        let facts = catalog.manifest(manifest)?;
        let config_path = self.blob_path(&facts.config.digest);
        let config = std::fs::read(&config_path).map_err(StoreError::io("read", &config_path))?;
        let chains = chain_ids(&facts.diff_ids);
        let mut layers = Vec::new();
        for (i, chain) in chains.iter().enumerate() {
            let dir = self.snapshot_dir(chain);
            if SnapshotInfo::read(&dir).is_none() {
                return Err(StoreError::Damaged {
                    what: format!(
                        "snapshot {chain} of image {} is missing",
                        facts.config.digest
                    ),
                });
            }
            let blob = facts
                .layers
                .get(i)
                .cloned()
                .ok_or_else(|| StoreError::Damaged {
                    what: format!("manifest {manifest} has fewer layers than its config"),
                })?;
            layers.push(BuildLayer {
                diff_id: facts.diff_ids[i].clone(),
                blob,
                snapshot: dir.join(FS_DIR),
            });
        }
        Ok(BuildImage {
            id: facts.config.digest.clone(),
            config,
            manifest_media_type: facts.manifest.media_type.clone(),
            layers,
        })
    }

    fn cache_dir(&self) -> PathBuf {
        self.root.join(CACHE_DIR)
    }

    /// Where builds keep what they learn about their sources between runs (small files;
    /// `system prune -a` removes them).
    pub fn build_memory_dir(&self) -> PathBuf {
        self.cache_dir().join("sources")
    }

    fn cache_record(&self, key: &Digest) -> Option<CacheRecord> {
        let p = self.cache_dir().join(format!("{}.json", key.digest()));
        serde_json::from_slice(&std::fs::read(p).ok()?).ok()
    }

    fn cache_records(&self) -> Vec<(PathBuf, CacheRecord)> {
        let Ok(rd) = std::fs::read_dir(self.cache_dir()) else {
            return Vec::new();
        };
        rd.flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| {
                let r = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
                Some((e.path(), r))
            })
            .collect()
    }

    /// Records some named (or container-used) image was built through: the records of those
    /// images, then of their parents, and so on.
    fn active_records(&self, catalog: &Catalog) -> Result<HashSet<PathBuf>, StoreError> {
        let records = self.cache_records();
        let mut by_image: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, (_, r)) in records.iter().enumerate() {
            by_image.entry(r.config.as_str()).or_default().push(i);
        }
        let mut roots: Vec<String> = catalog.ids()?.iter().map(|d| d.to_string()).collect();
        roots.extend(
            self.images_in_use()
                .into_iter()
                .map(|(_, id)| id.to_string()),
        );
        let mut active = HashSet::new();
        let mut seen = HashSet::new();
        while let Some(id) = roots.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            for &i in by_image.get(id.as_str()).into_iter().flatten() {
                active.insert(records[i].0.clone());
                if let Some(p) = &records[i].1.parent {
                    roots.push(p.clone());
                }
            }
        }
        Ok(active)
    }

    /// Blobs and snapshots the cache records `which` (all when `None`) keep.
    fn cache_references(
        &self,
        catalog: &Catalog,
        which: Option<&HashSet<PathBuf>>,
    ) -> (HashSet<String>, HashSet<String>) {
        let mut blobs = HashSet::new();
        let mut chains = HashSet::new();
        for (path, r) in self.cache_records() {
            if which.is_some_and(|w| !w.contains(&path)) {
                continue;
            }
            let Ok(m) = digest::parse(&r.manifest) else {
                continue;
            };
            let Ok(facts) = catalog.manifest(&m) else {
                continue;
            };
            blobs.insert(m.digest().to_string());
            blobs.insert(facts.config.digest.digest().to_string());
            blobs.extend(facts.layers.iter().map(|l| l.digest.digest().to_string()));
            chains.extend(
                chain_ids(&facts.diff_ids)
                    .iter()
                    .map(|c| c.digest().to_string()),
            );
        }
        (blobs, chains)
    }

    /// Adds what the build cache keeps to the sets collection must not remove.
    pub(crate) fn keep_build_cache(
        &self,
        catalog: &Catalog,
        blobs: &mut HashSet<String>,
        chains: &mut HashSet<String>,
    ) {
        let (b, c) = self.cache_references(catalog, None);
        blobs.extend(b);
        chains.extend(c);
    }

    /// Drops cache records no named image was built through (`all`: every record); returns
    /// how many. Called under the exclusive lock, before collection.
    pub(crate) fn prune_build_cache(
        &self,
        catalog: &Catalog,
        all: bool,
    ) -> Result<usize, StoreError> {
        let active = if all {
            HashSet::new()
        } else {
            self.active_records(catalog)?
        };
        if all {
            let memory = self.build_memory_dir();
            fsutil::remove_tree(&memory).map_err(StoreError::io("remove", &memory))?;
        }
        let mut removed = 0;
        for (path, _) in self.cache_records() {
            if !active.contains(&path) {
                std::fs::remove_file(&path).map_err(StoreError::io("remove", &path))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The build cache's disk use: `(usage, blobs, chains)` the cache alone keeps.
    pub(crate) fn build_cache_usage(
        &self,
        catalog: &Catalog,
        image_blobs: &HashSet<String>,
        image_chains: &HashSet<String>,
    ) -> Result<CacheUsage, StoreError> {
        let records = self.cache_records();
        let active = self.active_records(catalog)?;
        let (all_blobs, all_chains) = self.cache_references(catalog, None);
        let (kept_blobs, kept_chains) = self.cache_references(catalog, Some(&active));
        let mut u = CacheUsage {
            records: records.len(),
            active: active.len(),
            ..CacheUsage::default()
        };
        for (dir, names, kept, images) in [
            (
                self.root.join(super::BLOBS).join("sha256"),
                &all_blobs,
                &kept_blobs,
                image_blobs,
            ),
            (
                self.root.join(super::SNAPSHOTS),
                &all_chains,
                &kept_chains,
                image_chains,
            ),
        ] {
            for name in names.iter().filter(|n| !images.contains(*n)) {
                let bytes = fsutil::disk_usage(&dir.join(name));
                u.bytes += bytes;
                if !kept.contains(name) {
                    u.reclaimable += bytes;
                }
            }
        }
        Ok(u)
    }

    /// Gives the image of `manifest` (already committed) the names `names`.
    pub fn tag_manifest(
        &self,
        manifest: &[u8],
        names: &[ImageReference],
    ) -> Result<(), StoreError> {
        let digest = digest::sha256(manifest);
        let damaged = |e: String| StoreError::Damaged {
            what: format!("manifest {digest}: {e}"),
        };
        let m: serde_json::Value =
            serde_json::from_slice(manifest).map_err(|e| damaged(e.to_string()))?;
        let media_type = m["mediaType"]
            .as_str()
            .unwrap_or(ferry_oci::media_type::OCI_MANIFEST)
            .to_string();
        let _lock = self.lock_exclusive()?;
        let mut catalog = Catalog::read(&self.root)?;
        let facts = catalog.manifest(&digest)?;
        let platform: Platform = catalog.config(&facts.config.digest)?.platform;
        let entry = Entry::for_manifest(
            &BlobRef {
                digest: digest.clone(),
                size: manifest.len() as u64,
                media_type,
            },
            &platform,
        );
        for n in names {
            catalog.tag(n, entry.clone())?;
        }
        catalog.write()
    }
}

impl BuildSession<'_> {
    /// The session's directory (on the store's file system).
    pub fn dir(&self) -> &Path {
        &self.staging.path
    }

    fn fresh(&self, what: &str) -> PathBuf {
        self.seq.set(self.seq.get() + 1);
        self.staging
            .path
            .join(format!("store-{what}-{}", self.seq.get()))
    }

    /// Moves a new layer into the store on top of `below` (diff_ids, bottom first); returns
    /// its snapshot directory. A layer the store already has is not stored twice.
    pub fn commit_layer(
        &self,
        below: &[Digest],
        layer: NewBuildLayer<'_>,
    ) -> Result<PathBuf, StoreError> {
        let store = self.store;
        let mut ids = below.to_vec();
        ids.push(layer.diff_id.clone());
        let chains = chain_ids(&ids);
        let chain = chains.last().expect("at least one layer").clone();
        let parent = chains.len().checked_sub(2).map(|i| chains[i].to_string());
        let have_snapshot = store.snapshot_dir(&chain).join(INFO_JSON).is_file();
        let staged = if have_snapshot {
            None
        } else {
            let dir = self.fresh("snapshot");
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(&dir)
                .map_err(StoreError::io("create", &dir))?;
            let fs = dir.join(FS_DIR);
            let (size, entries, head) = match layer.tree {
                Some(tree) => {
                    std::fs::rename(tree, &fs).map_err(StoreError::io("move", tree))?;
                    let (size, entries) = layer.tree_stats.unwrap_or_else(|| tree_stats(&fs));
                    (size, entries, layer_head(layer.blob))
                }
                None => {
                    std::fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&fs)
                        .map_err(StoreError::io("create", &fs))?;
                    let opts = ApplyOptions {
                        format: store.format,
                        privileged: store.privileged,
                        min_free: LoadOptions::default().min_free,
                    };
                    let layer_err = |e: crate::error::LayerError| StoreError::Damaged {
                        what: format!("layer {} made by the build: {e}", layer.digest),
                    };
                    let (diff_id, head, stats, pending) =
                        snapshot::apply_blob(layer.blob, &fs, opts).map_err(layer_err)?;
                    if &diff_id != layer.diff_id {
                        return Err(StoreError::Damaged {
                            what: format!(
                                "layer {} made by the build unpacks to {diff_id}, not {}",
                                layer.digest, layer.diff_id
                            ),
                        });
                    }
                    let lowers: Vec<PathBuf> = chains[..chains.len() - 1]
                        .iter()
                        .map(|c| store.snapshot_fs(c))
                        .collect();
                    if !pending.is_empty() {
                        snapshot::resolve_pending(&fs, &pending, &lowers, store.privileged)
                            .map_err(layer_err)?;
                    }
                    (stats.bytes, stats.entries, Some(head.to_string()))
                }
            };
            let info = SnapshotInfo {
                chain_id: chain.to_string(),
                diff_id: layer.diff_id.to_string(),
                parent,
                format: store.format,
                size,
                entries,
                devices_skipped: 0,
                head,
            };
            let info_path = dir.join(INFO_JSON);
            std::fs::write(
                &info_path,
                serde_json::to_vec_pretty(&info).expect("serializes"),
            )
            .map_err(StoreError::io("write", &info_path))?;
            Some(dir)
        };
        // The store's rule: a snapshot is in place only once it is on the disk. A step's
        // files were written without a flush each (COPY's by ferry, RUN's by a `volatile`
        // overlay): one `syncfs` makes the blob and the snapshot durable together.
        fsutil::sync_filesystem(self.dir()).map_err(StoreError::io("sync", self.dir()))?;
        let _lock = store.lock_exclusive()?;
        let blob_dst = store.blob_path(layer.digest);
        let mut changed = Vec::new();
        if !blob_dst.exists() {
            std::fs::rename(layer.blob, &blob_dst)
                .map_err(StoreError::io("move into the store", &blob_dst))?;
            changed.push(store.root.join(super::BLOBS).join("sha256"));
        }
        if let Some(dir) = staged {
            let dst = store.snapshot_dir(&chain);
            if !dst.join(INFO_JSON).is_file() {
                std::fs::rename(&dir, &dst).map_err(StoreError::io("move into the store", &dst))?;
                changed.push(store.root.join(super::SNAPSHOTS));
                changed.push(dst);
            }
        }
        sync_dirs(&changed)?;
        Ok(store.snapshot_fs(&chain))
    }

    /// Stores a step's config and manifest; with `cache`, records the step under its key
    /// (and the image it was built on).
    pub fn commit_image(
        &self,
        config: &[u8],
        manifest: &[u8],
        cache: Option<(&Digest, Option<&Digest>)>,
    ) -> Result<(), StoreError> {
        let store = self.store;
        let mut staged = Vec::new();
        for bytes in [config, manifest] {
            let d = digest::sha256(bytes);
            if store.blob_path(&d).is_file() {
                continue;
            }
            let p = self.fresh("blob");
            // On the disk before a cache record (fsynced) can name it.
            write_synced(&p, bytes).map_err(StoreError::io("write", &p))?;
            staged.push((p, d));
        }
        let _lock = store.lock_exclusive()?;
        let mut moved = false;
        for (p, d) in staged {
            let dst = store.blob_path(&d);
            if !dst.exists() {
                std::fs::rename(&p, &dst).map_err(StoreError::io("move into the store", &dst))?;
                moved = true;
            }
        }
        if moved {
            sync_dirs(&[store.root.join(super::BLOBS).join("sha256")])?;
        }
        if let Some((key, parent)) = cache {
            let dir = store.cache_dir();
            if !dir.is_dir() {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dir)
                    .map_err(StoreError::io("create", &dir))?;
            }
            let record = CacheRecord {
                manifest: digest::sha256(manifest).to_string(),
                config: digest::sha256(config).to_string(),
                parent: parent.map(|p| p.to_string()),
                created: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            };
            let path = dir.join(format!("{}.json", key.digest()));
            fsutil::write_atomic(&path, &serde_json::to_vec(&record).expect("serializes"))
                .map_err(StoreError::io("write", &path))?;
        }
        Ok(())
    }
}

/// The digest of the first bytes of a layer's tar (what a load matches known layers by,
/// see `scan::layer`); `None` when the blob cannot be read back.
fn layer_head(blob: &Path) -> Option<String> {
    use std::io::Read;
    let f = std::fs::File::open(blob).ok()?;
    let (_, decoded) = crate::compression::open_stream(std::io::BufReader::new(f)).ok()?;
    let mut head = Vec::new();
    decoded
        .take(crate::scan::layer::HEAD_LEN)
        .read_to_end(&mut head)
        .ok()?;
    Some(digest::sha256(&head).to_string())
}

/// Makes renames into these directories durable (a moved directory's `..` changed too), as
/// a load does.
fn sync_dirs(dirs: &[PathBuf]) -> Result<(), StoreError> {
    for dir in dirs {
        fsutil::sync_dir(dir).map_err(StoreError::io("sync", dir))?;
    }
    Ok(())
}

/// Writes a new file and flushes it to the disk.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Bytes of file content and entries of a snapshot made from a directory.
fn tree_stats(dir: &Path) -> (u64, u64) {
    fn walk(p: &Path, acc: &mut (u64, u64)) {
        let Ok(rd) = std::fs::read_dir(p) else { return };
        for e in rd.flatten() {
            acc.1 += 1;
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                walk(&e.path(), acc);
            } else if m.is_file() {
                acc.0 += m.len();
            }
        }
    }
    let mut acc = (0, 0);
    walk(dir, &mut acc);
    acc
}

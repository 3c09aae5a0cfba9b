//! ferry's local store: an OCI image layout for images, one unpacked snapshot per layer, and
//! room for containers.
//!
//! ```text
//! <root>/oci-layout, index.json   the image part: a standard OCI image layout; index.json
//!                                 names images (io.containerd.image.name + ref.name), so
//!                                 `skopeo inspect oci:<root>:TAG` reads it
//! <root>/blobs/sha256/<hex>       manifests, configs, layers exactly as loaded (compressed
//!                                 layers stay compressed: `ferry save` is lossless)
//! <root>/snapshots/<chain>/fs     one directory per layer, keyed by chain ID, holding only
//!                                 that layer's changes, ready as an overlayfs lowerdir
//! <root>/snapshots/<chain>/info.json
//! <root>/containers/<id>/         owned by ferry-run; ferry.json names the image it uses
//! <root>/tmp/<load>/              staging of running loads, each locked by its process
//! <root>/lock                     flock: shared while reading or setting up a container,
//!                                 exclusive while index.json, blobs or snapshots change
//! ```
//!
//! Consistency rests on one rule: index.json names an image only after all its blobs and
//! snapshots are in place *and on the disk*, and it is replaced atomically (write, fsync,
//! rename, fsync of the directory). A load stages everything under `tmp/`, syncs it (one
//! `syncfs`), then, holding the exclusive lock, renames blobs and snapshots into place, syncs
//! the directories the renames changed, and writes index.json. A command killed at any point leaves either no new image or
//! the complete one; what it staged or half-committed is unreferenced, and the next command
//! that finds a dead staging directory removes it and collects what no image references.
//! Removal of unreferenced files waits while a load is running, so a load can rely on the blobs
//! and snapshots it saw at its start.

pub mod apply;
pub mod build;
pub mod fsutil;
mod gc;
mod index;
mod load;
pub mod materialize;
mod save;
pub mod snapshot;

use std::fs::File;
use std::path::{Path, PathBuf};

use ferry_oci::archive::BlobRef;
use ferry_oci::spec::ImageConfiguration;
use ferry_oci::{Digest, ImageConfig, ImageReference, Platform};
use rustix::fs::FlockOperation;

pub use apply::SnapshotFormat;
pub use build::{BuildImage, BuildLayer, BuildSession, CacheUsage, NewBuildLayer};
pub use gc::{DiskUsage, PruneReport, Removal};
pub use load::{LoadOptions, LoadedImage};
pub use materialize::materialize;

use crate::error::StoreError;
use crate::resolve::chain_ids;
use crate::store::index::Catalog;
use crate::store::snapshot::{FS_DIR, SnapshotInfo};

const BLOBS: &str = "blobs";
const SNAPSHOTS: &str = "snapshots";
const CONTAINERS: &str = "containers";
const TMP: &str = "tmp";
const LOCK: &str = "lock";

/// An open store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    format: SnapshotFormat,
    privileged: bool,
}

/// An image of the store, ready to run.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// The image ID: the config's digest.
    pub id: Digest,
    /// Its names, in Docker's short form (`busybox:latest`).
    pub names: Vec<String>,
    /// The image config.
    pub config: ImageConfiguration,
    /// Snapshot directories, bottom layer first, ready as overlayfs lowerdirs (reversed).
    pub layers: Vec<PathBuf>,
    /// How the snapshots store whiteouts: overlayfs can mount `Overlay` snapshots directly;
    /// `Portable` ones need [`materialize()`] (or a FUSE overlay that reads `.wh.` files).
    pub snapshot_format: SnapshotFormat,
    /// The manifest this name points at (the first one, when looked up by ID).
    pub manifest: BlobRef,
    /// The layers' diff_ids, bottom first.
    pub diff_ids: Vec<Digest>,
    /// The layers' chain IDs (the snapshots' names), bottom first.
    pub chain_ids: Vec<Digest>,
}

/// A held store lock; released when dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// One image of the store, for listings.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    /// The image ID.
    pub id: Digest,
    /// Its names with the manifest each points at.
    pub names: Vec<(ImageReference, Digest)>,
    /// The manifest of an image without names.
    pub manifest: Digest,
    /// When it was built, as its config says.
    pub created: Option<String>,
    /// Unpacked size (sum of its snapshots' content).
    pub size: u64,
    /// The platform its config declares.
    pub platform: Platform,
}

impl Store {
    /// Where the store lives by default: `/var/lib/ferry` for root, else the user's data
    /// directory (`~/.local/share/ferry`).
    pub fn default_root() -> PathBuf {
        if rustix::process::geteuid().is_root() {
            return PathBuf::from("/var/lib/ferry");
        }
        directories::ProjectDirs::from("", "", "ferry")
            .map(|d| d.data_dir().to_path_buf())
            .unwrap_or_else(|| std::env::temp_dir().join("ferry"))
    }

    /// Opens (creating when needed) the store at `root`, and cleans up what a killed command
    /// left half-done.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        apply::init_umask();
        for (dir, mode) in [
            (root.to_path_buf(), 0o711),
            (root.join(BLOBS), 0o711),
            (root.join(BLOBS).join("sha256"), 0o711),
            (root.join(SNAPSHOTS), 0o711),
            (root.join(CONTAINERS), 0o711),
            (root.join(TMP), 0o700),
        ] {
            if !dir.is_dir() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(mode)
                    .create(&dir)
                    .map_err(StoreError::io("create directory", &dir))?;
            }
        }
        let store = Store {
            root: root.to_path_buf(),
            format: apply::probe_format(&root.join(TMP)),
            privileged: rustix::process::geteuid().is_root(),
        };
        if !index::initialized(root) {
            // Under the lock: recovery (in another process) removes temporary files of
            // index.json, which must not be this one's.
            let _lock = store.lock_exclusive()?;
            index::init(root)?;
        }
        store.recover()?;
        Ok(store)
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/containers`: owned by ferry-run.
    pub fn containers_dir(&self) -> PathBuf {
        self.root.join(CONTAINERS)
    }

    /// How this store writes snapshots.
    pub fn snapshot_format(&self) -> SnapshotFormat {
        self.format
    }

    /// The snapshot directory (its `fs`) of a chain ID.
    pub fn snapshot_fs(&self, chain_id: &Digest) -> PathBuf {
        self.snapshot_dir(chain_id).join(FS_DIR)
    }

    fn snapshot_dir(&self, chain_id: &Digest) -> PathBuf {
        self.root.join(SNAPSHOTS).join(chain_id.digest())
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(ferry_oci::digest::blob_path(digest))
    }

    /// A shared lock: the store's images and snapshots will not change or go away while it
    /// is held (loads still stage, but do not commit).
    pub fn lock_shared(&self) -> Result<StoreLock, StoreError> {
        self.lock(FlockOperation::LockShared)
    }

    /// The exclusive lock: nobody else reads or changes the store while it is held.
    pub fn lock_exclusive(&self) -> Result<StoreLock, StoreError> {
        self.lock(FlockOperation::LockExclusive)
    }

    fn lock(&self, op: FlockOperation) -> Result<StoreLock, StoreError> {
        let path = self.root.join(LOCK);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(StoreError::io("open the lock", &path))?;
        rustix::fs::flock(&file, op).map_err(|e| StoreError::Io {
            action: "lock",
            path: path.clone(),
            source: e.into(),
        })?;
        Ok(StoreLock { _file: file })
    }

    fn try_lock_exclusive(&self) -> Result<Option<StoreLock>, StoreError> {
        match self.lock(FlockOperation::NonBlockingLockExclusive) {
            Ok(l) => Ok(Some(l)),
            Err(StoreError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::WouldBlock =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Looks an image up by name (`busybox` ≡ `docker.io/library/busybox:latest`,
    /// `name@sha256:…` by manifest digest), full ID, or unique ID prefix.
    ///
    /// Takes the shared lock for the lookup (fine while the caller holds a shared lock too;
    /// it would wait forever under the caller's own exclusive lock, as flock locks of one
    /// process on separate opens of the file conflict).
    pub fn image(&self, reference: &str) -> Result<StoredImage, StoreError> {
        let _lock = self.lock_shared()?;
        let catalog = Catalog::read(&self.root)?;
        let found = catalog.find(reference)?;
        self.stored_image(&catalog, &found)
    }

    fn stored_image(
        &self,
        catalog: &Catalog,
        found: &index::Found,
    ) -> Result<StoredImage, StoreError> {
        let facts = catalog.manifest(&found.manifest)?;
        let config_bytes = std::fs::read(self.blob_path(&facts.config.digest)).map_err(
            StoreError::io("read config", self.blob_path(&facts.config.digest)),
        )?;
        let config: ImageConfiguration =
            serde_json::from_slice(&config_bytes).map_err(|e| StoreError::Damaged {
                what: format!("config {} does not parse: {e}", facts.config.digest),
            })?;
        let diff_ids = config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| ferry_oci::digest::parse(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Damaged {
                what: format!("config {}: {e}", facts.config.digest),
            })?;
        let chains = chain_ids(&diff_ids);
        let mut format = self.format;
        let mut layers = Vec::new();
        for c in &chains {
            let dir = self.snapshot_dir(c);
            let info = SnapshotInfo::read(&dir).ok_or_else(|| StoreError::Damaged {
                what: format!("snapshot {c} of image {} is missing", found.id),
            })?;
            format = info.format;
            layers.push(dir.join(FS_DIR));
        }
        Ok(StoredImage {
            id: found.id.clone(),
            names: catalog
                .names_of(&found.id)
                .iter()
                .map(|n| n.familiar_tagged().unwrap_or_else(|| n.to_string()))
                .collect(),
            config,
            layers,
            snapshot_format: format,
            manifest: facts.manifest.clone(),
            diff_ids,
            chain_ids: chains,
        })
    }

    /// Every image, one entry per image ID, in index order.
    pub fn list(&self) -> Result<Vec<ImageSummary>, StoreError> {
        let _lock = self.lock_shared()?;
        let catalog = Catalog::read(&self.root)?;
        let mut out: Vec<ImageSummary> = Vec::new();
        for e in catalog.entries() {
            let id = catalog.id_of(e)?;
            let manifest =
                ferry_oci::digest::parse(&e.digest).map_err(|err| StoreError::Damaged {
                    what: format!("index.json: {err}"),
                })?;
            if let Some(s) = out.iter_mut().find(|s| s.id == id) {
                if let Some(n) = e.name() {
                    s.names.push((n, manifest));
                }
                continue;
            }
            let facts = catalog.manifest(&manifest)?;
            let ImageConfig {
                created, platform, ..
            } = catalog.config(&facts.config.digest)?;
            let size = chain_ids(&facts.diff_ids)
                .iter()
                .map(|c| {
                    SnapshotInfo::read(&self.snapshot_dir(c))
                        .map(|i| i.size)
                        .unwrap_or(0)
                })
                .sum();
            out.push(ImageSummary {
                id,
                names: e
                    .name()
                    .map(|n| vec![(n, manifest.clone())])
                    .unwrap_or_default(),
                manifest,
                created,
                size,
                platform,
            });
        }
        Ok(out)
    }

    /// The IDs of images containers use (from `containers/*/ferry.json`).
    pub fn images_in_use(&self) -> Vec<(String, Digest)> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.containers_dir()) else {
            return out;
        };
        for e in rd.flatten() {
            let Ok(bytes) = std::fs::read(e.path().join("ferry.json")) else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            if let Some(id) = v
                .get("image_id")
                .and_then(|i| i.as_str())
                .and_then(|i| ferry_oci::digest::parse(i).ok())
            {
                out.push((e.file_name().to_string_lossy().into_owned(), id));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;

//! A load as a transaction: stage while streaming, verify, then commit under the lock.
//!
//! Everything a load writes goes below its own `tmp/load-…` directory, which it keeps locked
//! (flock) for its lifetime so that other commands can tell a running load from a dead one.
//! Only when the whole archive was read and every digest checked does it take the store's
//! exclusive lock, rename blobs and snapshots into place (skipping what another load put there
//! meanwhile) and rewrite index.json. Killed before that rename of index.json, it leaves no
//! image; after it, the complete one.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ferry_oci::{Digest, ImageReference, Platform};
use rustix::fs::FlockOperation;

use crate::error::{LayerError, LoadError, StoreError};
use crate::reporter::Reporter;
use crate::resolve::{self, ArchiveImage, chain_ids};
use crate::scan::{self, Contents, LayerSink, Stage};
use crate::store::Store;
use crate::store::apply::{Applier, ApplyOptions, ApplyReport, PendingLink, Reports};
use crate::store::fsutil;
use crate::store::index::{Catalog, Entry};
use crate::store::snapshot::{self, FS_DIR, INFO_JSON, SnapshotInfo};

/// How to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The platform to choose from multi-platform archives.
    pub platform: Platform,
    /// Unpacking stops when the store's filesystem would have less free space than this.
    pub min_free: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            platform: scan::host_platform(),
            min_free: 256 * 1024 * 1024,
        }
    }
}

/// An image a load put into the store.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// The image ID.
    pub id: Digest,
    /// The names it was given.
    pub names: Vec<ImageReference>,
    /// Its manifest's digest.
    pub manifest: Digest,
    /// Layers in all.
    pub layers: usize,
    /// Layers whose snapshot this load created (the others were there already).
    pub new_layers: usize,
}

/// A load's private directory, locked while the load lives and removed when it ends.
pub(crate) struct Staging {
    pub path: PathBuf,
    _lock: File,
}

impl Staging {
    fn create(store: &Store) -> Result<Staging, StoreError> {
        // Created under the shared lock: cleanup runs under the exclusive one, so it never
        // sees a staging directory whose lock is not taken yet.
        let _shared = store.lock_shared()?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let path = store
            .root
            .join(super::TMP)
            .join(format!("load-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(StoreError::io("create", &path))?;
        let lock_path = path.join(super::LOCK);
        let lock = File::create(&lock_path).map_err(StoreError::io("create", &lock_path))?;
        rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive).map_err(|e| {
            StoreError::Io {
                action: "lock",
                path: lock_path,
                source: e.into(),
            }
        })?;
        Ok(Staging { path, _lock: lock })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = fsutil::remove_tree(&self.path) {
            tracing::warn!("cannot remove {}: {e}", self.path.display());
        }
    }
}

struct StoreStage<'a> {
    store: &'a Store,
    dir: PathBuf,
    apply: ApplyOptions,
    reports: Reports,
}

impl StoreStage<'_> {
    fn blob_file(&self, id: usize) -> PathBuf {
        self.dir.join(format!("blob-{id}"))
    }

    fn snapshot(&self, id: usize) -> PathBuf {
        self.dir.join(format!("snap-{id}"))
    }
}

impl Stage for StoreStage<'_> {
    fn has_blob(&self, digest: &Digest) -> bool {
        self.store.blob_path(digest).is_file()
    }

    fn blob_writer(&mut self, id: usize) -> Result<Option<Box<dyn Write>>, LoadError> {
        let p = self.blob_file(id);
        let f = File::create(&p).map_err(StoreError::io("create", &p))?;
        Ok(Some(Box::new(BufWriter::with_capacity(1024 * 1024, f))))
    }

    fn layer_sink(&mut self, id: usize) -> Result<Option<Box<dyn LayerSink>>, LoadError> {
        let fs = self.snapshot(id).join(FS_DIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&fs)
            .map_err(StoreError::io("create", &fs))?;
        let root = fsutil::open_dir(&fs).map_err(StoreError::io("open", &fs))?;
        Ok(Some(Box::new(
            Applier::new(root, self.apply).reporting_to(self.reports.clone(), id),
        )))
    }
}

/// What a load moves into the store.
struct Plan {
    /// Staged file → blob digest.
    blobs: Vec<(PathBuf, Digest)>,
    /// Staged snapshot directory → chain ID.
    snapshots: Vec<(PathBuf, Digest)>,
    loaded: Vec<LoadedImage>,
}

impl Store {
    /// Loads an archive (any format `ferry load` accepts) from `input`.
    pub fn load(
        &self,
        input: &mut dyn Read,
        opts: &LoadOptions,
        reporter: &dyn Reporter,
    ) -> Result<Vec<LoadedImage>, LoadError> {
        let staging = Staging::create(self)?;
        let reports: Reports = Rc::new(RefCell::new(HashMap::new()));
        let apply = ApplyOptions {
            format: self.format,
            privileged: self.privileged,
            min_free: opts.min_free,
        };
        let mut stage = StoreStage {
            store: self,
            dir: staging.path.clone(),
            apply,
            reports: reports.clone(),
        };
        let mut planner = |c: &Contents| resolve::plan(c, &opts.platform);
        let mut contents = scan::scan(input, &mut stage, &mut planner, reporter)?;
        // A delta archive is completed from the store, or refused before anything is committed.
        crate::delta::provide(&mut contents, &|d| self.blob_path(d).is_file(), "the store")?;
        reporter.on_finishing();
        let mut notices = Vec::new();
        let images = resolve::resolve(&contents, &opts.platform, &mut notices)?;
        for n in &notices {
            reporter.on_notice(n);
        }
        resolve::check_layers(&mut contents, &images)?;
        let plan = self.prepare(&stage, &contents, &images, &reports, reporter)?;
        self.commit(&images, &plan)?;
        Ok(plan.loaded)
    }

    /// Decides which staged blobs and snapshots go into the store, writes the small blobs,
    /// unpacks again what no streamed snapshot covers, and copies up hard-link targets.
    fn prepare(
        &self,
        stage: &StoreStage<'_>,
        contents: &Contents,
        images: &[ArchiveImage],
        reports: &Reports,
        reporter: &dyn Reporter,
    ) -> Result<Plan, LoadError> {
        let mut blobs: Vec<(PathBuf, Digest)> = Vec::new();
        let mut planned_blobs: HashSet<Digest> = HashSet::new();
        let mut snapshots = Vec::new();
        let mut planned_chains: HashMap<Digest, PathBuf> = HashMap::new();
        let mut claimed: HashSet<usize> = HashSet::new();
        let mut loaded = Vec::new();
        let mut devices_skipped = 0;
        let mut fallback = 0;
        for img in images {
            for (blob, bytes) in [
                (&img.manifest, &img.manifest_bytes),
                (&img.config, &img.config_bytes),
            ] {
                if self.blob_path(&blob.digest).is_file()
                    || !planned_blobs.insert(blob.digest.clone())
                {
                    continue;
                }
                let p = stage.dir.join(format!("meta-{}", blob.digest.digest()));
                std::fs::write(&p, bytes).map_err(StoreError::io("write", &p))?;
                blobs.push((p, blob.digest.clone()));
            }
            let diff_ids: Vec<Digest> = img.layers.iter().map(|l| l.diff_id.clone()).collect();
            let chains = chain_ids(&diff_ids);
            let mut lowers: Vec<PathBuf> = Vec::new();
            let mut new_layers = 0;
            for (i, layer) in img.layers.iter().enumerate() {
                let file = &contents.files[&layer.path];
                let in_store = self.blob_path(&layer.blob.digest).is_file();
                let staged_blob = stage.blob_file(file.id);
                if !in_store && planned_blobs.insert(layer.blob.digest.clone()) {
                    if !staged_blob.is_file() {
                        return Err(LoadError::Missing {
                            what: format!(
                                "layer {} of {} (it was removed from the store during the load; load again)",
                                layer.blob.digest,
                                img.label()
                            ),
                        });
                    }
                    blobs.push((staged_blob.clone(), layer.blob.digest.clone()));
                }
                let chain = &chains[i];
                let fs = if self.snapshot_dir(chain).join(INFO_JSON).is_file() {
                    self.snapshot_fs(chain)
                } else if let Some(fs) = planned_chains.get(chain) {
                    fs.clone()
                } else {
                    let layer_err = |source: LayerError| LoadError::Layer {
                        image: img.label(),
                        blob: layer.blob.digest.to_string(),
                        path: layer.path.clone(),
                        source: Box::new(source),
                    };
                    let streamed = file.layer.as_ref().is_some_and(|o| o.unpacked)
                        && !claimed.contains(&file.id);
                    let report = if streamed {
                        reports.borrow_mut().remove(&file.id)
                    } else {
                        None
                    };
                    let (dir, report) = match report {
                        Some(r) => {
                            claimed.insert(file.id);
                            (stage.snapshot(file.id), r)
                        }
                        None => {
                            // Not unpacked while streaming (the blob was already stored, or
                            // this diff_id sits on a second chain): unpack the blob now.
                            fallback += 1;
                            let dir = stage.dir.join(format!("fallback-{fallback}"));
                            let fs = dir.join(FS_DIR);
                            std::fs::DirBuilder::new()
                                .recursive(true)
                                .mode(0o755)
                                .create(&fs)
                                .map_err(StoreError::io("create", &fs))?;
                            let source = if in_store || !staged_blob.is_file() {
                                self.blob_path(&layer.blob.digest)
                            } else {
                                staged_blob.clone()
                            };
                            let (diff_id, stats, pending) =
                                snapshot::apply_blob(&source, &fs, stage.apply)
                                    .map_err(layer_err)?;
                            if diff_id != layer.diff_id {
                                return Err(LoadError::DiffId {
                                    image: img.label(),
                                    index: i + 1,
                                    blob: Box::new(layer.blob.digest.clone()),
                                    expected: Box::new(layer.diff_id.clone()),
                                    actual: Box::new(diff_id),
                                });
                            }
                            (dir, ApplyReport { stats, pending })
                        }
                    };
                    let fs = dir.join(FS_DIR);
                    resolve_links(&fs, &report.pending, &lowers, self.privileged)
                        .map_err(layer_err)?;
                    devices_skipped += report.stats.devices_skipped;
                    let info = SnapshotInfo {
                        chain_id: chain.to_string(),
                        diff_id: layer.diff_id.to_string(),
                        parent: i.checked_sub(1).map(|p| chains[p].to_string()),
                        format: self.format,
                        size: report.stats.bytes,
                        entries: report.stats.entries,
                        devices_skipped: report.stats.devices_skipped,
                    };
                    let info_path = dir.join(INFO_JSON);
                    std::fs::write(
                        &info_path,
                        serde_json::to_vec_pretty(&info).expect("serializes"),
                    )
                    .map_err(StoreError::io("write", &info_path))?;
                    snapshots.push((dir, chain.clone()));
                    planned_chains.insert(chain.clone(), fs.clone());
                    new_layers += 1;
                    fs
                };
                lowers.push(fs);
            }
            loaded.push(LoadedImage {
                id: img.config.digest.clone(),
                names: img.names.clone(),
                manifest: img.manifest.digest.clone(),
                layers: img.layers.len(),
                new_layers,
            });
        }
        if devices_skipped > 0 {
            reporter.on_notice(&format!(
                "skipped {devices_skipped} device node{} (only root can create them); containers get /dev from the runtime anyway",
                if devices_skipped == 1 { "" } else { "s" }
            ));
        }
        Ok(Plan {
            blobs,
            snapshots,
            loaded,
        })
    }

    /// Moves the plan into the store and names the images, under the exclusive lock.
    fn commit(&self, images: &[ArchiveImage], plan: &Plan) -> Result<(), LoadError> {
        let _lock = self.lock_exclusive()?;
        for (src, digest) in &plan.blobs {
            let dst = self.blob_path(digest);
            if !dst.exists() {
                std::fs::rename(src, &dst).map_err(StoreError::io("move into the store", &dst))?;
            }
        }
        for (src, chain) in &plan.snapshots {
            let dst = self.snapshot_dir(chain);
            if dst.exists() {
                continue;
            }
            if let Err(e) = std::fs::rename(src, &dst) {
                // Another load committed the same chain between our check and our lock.
                if !dst.join(INFO_JSON).is_file() {
                    return Err(StoreError::Io {
                        action: "move into the store",
                        path: dst,
                        source: e,
                    }
                    .into());
                }
            }
        }
        let mut catalog = Catalog::read(&self.root)?;
        for img in images {
            let entry = Entry::for_manifest(&img.manifest, &img.platform);
            if img.names.is_empty() {
                catalog.add_unnamed(entry.clone())?;
            }
            for n in &img.names {
                catalog.tag(n, entry.clone())?;
            }
        }
        catalog.write()?;
        Ok(())
    }
}

fn resolve_links(
    fs: &Path,
    pending: &[PendingLink],
    lowers: &[PathBuf],
    privileged: bool,
) -> Result<(), LayerError> {
    if pending.is_empty() {
        return Ok(());
    }
    snapshot::resolve_pending(fs, pending, lowers, privileged)
}

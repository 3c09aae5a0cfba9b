//! A load as a transaction: stage while streaming, verify, then commit under the lock.
//!
//! Everything a load writes goes below its own `tmp/load-…` directory, which it keeps locked
//! (flock) for its lifetime so that other commands can tell a running load from a dead one.
//! Only when the whole archive was read and every digest checked does it take the store's
//! exclusive lock, rename blobs and snapshots into place (skipping what another load put there
//! meanwhile) and rewrite index.json. Killed before that rename of index.json, it leaves no
//! image; after it, the complete one.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use ferry_oci::{Digest, ImageReference, Platform};
use rustix::fs::FlockOperation;

use crate::error::{LayerError, LoadError, StoreError};
use crate::reporter::Reporter;
use crate::resolve::{self, ArchiveImage, ArchiveLayer, chain_ids};
use crate::scan::{self, Contents, LayerSink, Stage, Unpacker};
use crate::store::Store;
use crate::store::apply::writers::Writers;
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
    pub(crate) fn create(store: &Store) -> Result<Staging, StoreError> {
        // Created under the shared lock: cleanup runs under the exclusive one, so it never
        // sees a staging directory whose lock is not taken yet.
        let _shared = store.lock_shared()?;
        fsutil::spread_subdirectories(&store.root.join(super::TMP));
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

impl Staging {
    /// Removes what the plan does not move into the store.
    fn keep_only(&self, plan: &Plan) -> Result<(), StoreError> {
        let keep: HashSet<&Path> = plan
            .blobs
            .iter()
            .map(|(p, _)| p.as_path())
            .chain(plan.snapshots.iter().map(|(p, _)| p.as_path()))
            .collect();
        let rd = std::fs::read_dir(&self.path).map_err(StoreError::io("list", &self.path))?;
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name() == super::LOCK || keep.contains(p.as_path()) {
                continue;
            }
            fsutil::remove_tree(&p).map_err(StoreError::io("remove", &p))?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = fsutil::remove_tree(&self.path) {
            tracing::warn!("cannot remove {}: {e}", self.path.display());
        }
    }
}

/// Where a load's layer workers put what they unpack, and what the store already has.
struct StoreStage {
    store: Store,
    dir: PathBuf,
    apply: ApplyOptions,
    reports: Reports,
    writers: Arc<Writers>,
    /// The store's snapshots, read when a worker first asks.
    known: OnceLock<Known>,
    /// Writing back what is staged, started once the archive is read (see `archive_read`).
    early_sync: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Whether a worker began unpacking a layer (a load of known layers writes nothing worth
    /// syncing).
    unpacking: std::sync::atomic::AtomicBool,
}

/// What the store's snapshots are: how each layer starts, and its diff_id.
#[derive(Default)]
struct Known {
    heads: HashSet<Digest>,
    diff_ids: HashSet<Digest>,
}

impl StoreStage {
    fn blob_file(&self, id: usize) -> PathBuf {
        self.dir.join(format!("blob-{id}"))
    }

    fn snapshot(&self, id: usize) -> PathBuf {
        self.dir.join(format!("snap-{id}"))
    }

    fn known(&self) -> &Known {
        self.known.get_or_init(|| {
            let mut known = Known::default();
            let Ok(rd) = std::fs::read_dir(self.store.root.join(super::SNAPSHOTS)) else {
                return known;
            };
            for e in rd.flatten() {
                let Some(info) = SnapshotInfo::read(&e.path()) else {
                    continue;
                };
                if let Some(h) = info
                    .head
                    .as_deref()
                    .and_then(|h| ferry_oci::digest::parse(h).ok())
                {
                    known.heads.insert(h);
                }
                if let Ok(d) = ferry_oci::digest::parse(&info.diff_id) {
                    known.diff_ids.insert(d);
                }
            }
            known
        })
    }
}

impl Unpacker for StoreStage {
    fn spool_path(&self, id: usize) -> PathBuf {
        self.blob_file(id)
    }

    fn stored_blob(&self, digest: &Digest) -> Option<PathBuf> {
        let p = self.store.blob_path(digest);
        p.is_file().then_some(p)
    }

    fn may_have(&self, head: &Digest) -> bool {
        self.known().heads.contains(head)
    }

    fn has_layer(&self, diff_id: &Digest) -> bool {
        self.known().diff_ids.contains(diff_id)
    }

    fn sink(&self, id: usize) -> Result<Box<dyn LayerSink + Send>, LayerError> {
        self.unpacking
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let fs = self.snapshot(id).join(FS_DIR);
        let failed = |action| {
            let entry = fs.display().to_string();
            move |source| LayerError::Io {
                action,
                entry,
                source,
            }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&fs)
            .map_err(failed("create the snapshot"))?;
        let root = fsutil::open_dir(&fs).map_err(failed("open the snapshot"))?;
        Ok(Box::new(
            Applier::new(root, self.apply)
                .with_writers(self.writers.clone())
                .reporting_to(self.reports.clone(), id),
        ))
    }

    fn archive_read(&self) {
        if !self.unpacking.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        // The commit must wait until everything staged is on the disk. Starting the
        // writeback now, while workers still unpack, overlaps most of that wait with their
        // work; the commit's own sync then waits only for what was written since.
        let dir = self.dir.clone();
        let handle = std::thread::Builder::new()
            .name("ferry-writeback".into())
            .spawn(move || {
                if let Err(e) = fsutil::sync_filesystem(&dir) {
                    tracing::debug!("early writeback of {}: {e}", dir.display());
                }
            });
        if let Ok(h) = handle {
            *self.early_sync.lock().expect("early sync lock") = Some(h);
        }
    }
}

/// The scan's view of a load: layers go to workers.
struct LoadStage(Arc<StoreStage>);

impl Stage for LoadStage {
    fn unpacker(&self) -> Option<Arc<dyn Unpacker>> {
        Some(self.0.clone())
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
        let reports: Reports = Arc::new(Mutex::new(HashMap::new()));
        let apply = ApplyOptions {
            format: self.format,
            privileged: self.privileged,
            min_free: opts.min_free,
        };
        let stage = Arc::new(StoreStage {
            store: self.clone(),
            dir: staging.path.clone(),
            apply,
            reports: reports.clone(),
            writers: Writers::for_this_machine(),
            known: OnceLock::new(),
            early_sync: Mutex::new(None),
            unpacking: Default::default(),
        });
        let mut planner = |c: &Contents| resolve::plan(c, &opts.platform);
        let mut contents =
            scan::scan(input, &mut LoadStage(stage.clone()), &mut planner, reporter)?;
        // A delta archive is completed from the store, or refused before anything is committed.
        crate::delta::provide(&mut contents, &|d| self.blob_path(d).is_file(), "the store")?;
        reporter.on_finishing();
        let mut notices = Vec::new();
        let images = resolve::resolve(&contents, &opts.platform, &mut notices)?;
        for n in &notices {
            reporter.on_notice(n);
        }
        resolve::check_layers(&mut contents, &images)?;
        let plan = self.prepare(&stage, &contents, &images, reporter)?;
        if let Some(h) = stage.early_sync.lock().expect("early sync lock").take() {
            let _ = h.join();
        }
        self.commit(&staging, &images, &plan)?;
        Ok(plan.loaded)
    }

    /// Decides which staged blobs and snapshots go into the store, writes the small blobs,
    /// unpacks again what no streamed snapshot covers, and copies up hard-link targets.
    fn prepare(
        &self,
        stage: &StoreStage,
        contents: &Contents,
        images: &[ArchiveImage],
        reporter: &dyn Reporter,
    ) -> Result<Plan, LoadError> {
        let mut plan = Planning {
            store: self,
            stage,
            contents,
            plan: Plan {
                blobs: Vec::new(),
                snapshots: Vec::new(),
                loaded: Vec::new(),
            },
            planned_blobs: HashSet::new(),
            planned_chains: HashMap::new(),
            claimed: HashSet::new(),
            devices_skipped: 0,
            fallbacks: 0,
        };
        for img in images {
            plan.metadata(img)?;
            let diff_ids: Vec<Digest> = img.layers.iter().map(|l| l.diff_id.clone()).collect();
            let chains = chain_ids(&diff_ids);
            let mut lowers: Vec<PathBuf> = Vec::new();
            let mut new_layers = 0;
            for (i, layer) in img.layers.iter().enumerate() {
                plan.layer_blob(img, layer)?;
                let fs = match plan.existing_snapshot(&chains[i]) {
                    Some(fs) => fs,
                    None => {
                        new_layers += 1;
                        plan.new_snapshot(img, i, &chains, &lowers)?
                    }
                };
                lowers.push(fs);
            }
            plan.plan.loaded.push(LoadedImage {
                id: img.config.digest.clone(),
                names: img.names.clone(),
                manifest: img.manifest.digest.clone(),
                layers: img.layers.len(),
                new_layers,
            });
        }
        if plan.devices_skipped > 0 {
            let n = plan.devices_skipped;
            reporter.on_notice(&format!(
                "skipped {n} device node{} (only root can create them); containers get /dev from the runtime anyway",
                if n == 1 { "" } else { "s" }
            ));
        }
        Ok(plan.plan)
    }

    /// Moves the plan into the store and names the images, under the exclusive lock, in the
    /// order that makes a power cut at any moment harmless (the README's "durability"):
    /// staged data on the disk, then renamed into place, the renames on the disk, then
    /// index.json replaced.
    fn commit(
        &self,
        staging: &Staging,
        images: &[ArchiveImage],
        plan: &Plan,
    ) -> Result<(), LoadError> {
        // Staged for nothing (layers the store had, speculative unpacks): removed before the
        // sync, so that it never reaches the disk.
        staging.keep_only(plan)?;
        let moving = !plan.blobs.is_empty() || !plan.snapshots.is_empty();
        if moving {
            // Thousands of files: one syncfs writes them all back and waits once, where an
            // fsync per file would wait for the disk thousands of times.
            fsutil::sync_filesystem(&staging.path)
                .map_err(StoreError::io("sync", &staging.path))?;
        }
        let _lock = self.lock_exclusive()?;
        let mut moved_dirs = Vec::new();
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
            match std::fs::rename(src, &dst) {
                Ok(()) => moved_dirs.push(dst),
                // Another load committed the same chain between our check and our lock.
                Err(_) if dst.join(INFO_JSON).is_file() => {}
                Err(e) => {
                    return Err(StoreError::Io {
                        action: "move into the store",
                        path: dst,
                        source: e,
                    }
                    .into());
                }
            }
        }
        if moving {
            // The renames: the directories they changed (a moved directory's `..` too).
            let blobs = self.root.join(super::BLOBS).join("sha256");
            let snapshots = self.root.join(super::SNAPSHOTS);
            for dir in [&blobs, &snapshots].into_iter().chain(&moved_dirs) {
                fsutil::sync_dir(dir).map_err(StoreError::io("sync", dir))?;
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

/// The decisions of [`Store::prepare`] as they are made.
struct Planning<'a> {
    store: &'a Store,
    stage: &'a StoreStage,
    contents: &'a Contents,
    plan: Plan,
    planned_blobs: HashSet<Digest>,
    /// Chains this load provides, with their staged `fs`.
    planned_chains: HashMap<Digest, PathBuf>,
    /// Entries whose streamed snapshot a chain took (one chain per staged snapshot).
    claimed: HashSet<usize>,
    devices_skipped: u64,
    fallbacks: usize,
}

impl Planning<'_> {
    /// The manifest and config of an image, written for the store where it lacks them.
    fn metadata(&mut self, img: &ArchiveImage) -> Result<(), LoadError> {
        for (blob, bytes) in [
            (&img.manifest, &img.manifest_bytes),
            (&img.config, &img.config_bytes),
        ] {
            if self.store.blob_path(&blob.digest).is_file()
                || !self.planned_blobs.insert(blob.digest.clone())
            {
                continue;
            }
            let p = self
                .stage
                .dir
                .join(format!("meta-{}", blob.digest.digest()));
            std::fs::write(&p, bytes).map_err(StoreError::io("write", &p))?;
            self.plan.blobs.push((p, blob.digest.clone()));
        }
        Ok(())
    }

    /// The staged blob of a layer, where the store lacks it.
    fn layer_blob(&mut self, img: &ArchiveImage, layer: &ArchiveLayer) -> Result<(), LoadError> {
        let file = &self.contents.files[&layer.path];
        if self.store.blob_path(&layer.blob.digest).is_file()
            || !self.planned_blobs.insert(layer.blob.digest.clone())
        {
            return Ok(());
        }
        let staged = self.stage.blob_file(file.id);
        if !staged.is_file() {
            return Err(LoadError::Missing {
                what: format!(
                    "layer {} of {} (it was removed from the store during the load; load again)",
                    layer.blob.digest,
                    img.label()
                ),
            });
        }
        self.plan.blobs.push((staged, layer.blob.digest.clone()));
        Ok(())
    }

    /// The `fs` of a snapshot the store or this load already has for `chain`.
    fn existing_snapshot(&self, chain: &Digest) -> Option<PathBuf> {
        if self.store.snapshot_dir(chain).join(INFO_JSON).is_file() {
            return Some(self.store.snapshot_fs(chain));
        }
        self.planned_chains.get(chain).cloned()
    }

    /// The snapshot of layer `i` of `img` on its chain: the one a worker unpacked while the
    /// archive streamed, or the blob unpacked now; its hard links resolved against `lowers`
    /// and its `info.json` written.
    fn new_snapshot(
        &mut self,
        img: &ArchiveImage,
        i: usize,
        chains: &[Digest],
        lowers: &[PathBuf],
    ) -> Result<PathBuf, LoadError> {
        let layer = &img.layers[i];
        let file = &self.contents.files[&layer.path];
        let layer_err = |source| layer_error(img, layer, source);
        let streamed =
            file.layer.as_ref().is_some_and(|o| o.unpacked) && !self.claimed.contains(&file.id);
        let report = streamed
            .then(|| {
                self.stage
                    .reports
                    .lock()
                    .expect("reports lock")
                    .remove(&file.id)
            })
            .flatten();
        let (dir, report, head) = match report {
            Some(r) => {
                self.claimed.insert(file.id);
                let head = file.layer.as_ref().and_then(|o| o.head.clone());
                (self.stage.snapshot(file.id), r, head)
            }
            // Not unpacked while streaming (the store had the layer, or this diff_id sits
            // on a second chain): unpack the blob now.
            None => self.unpack_again(img, i)?,
        };
        let fs = dir.join(FS_DIR);
        resolve_links(&fs, &report.pending, lowers, self.store.privileged).map_err(layer_err)?;
        self.devices_skipped += report.stats.devices_skipped;
        let info = SnapshotInfo {
            chain_id: chains[i].to_string(),
            diff_id: layer.diff_id.to_string(),
            parent: i.checked_sub(1).map(|p| chains[p].to_string()),
            format: self.store.format,
            size: report.stats.bytes,
            entries: report.stats.entries,
            devices_skipped: report.stats.devices_skipped,
            head: head.map(|h| h.to_string()),
        };
        let info_path = dir.join(INFO_JSON);
        std::fs::write(
            &info_path,
            serde_json::to_vec_pretty(&info).expect("serializes"),
        )
        .map_err(StoreError::io("write", &info_path))?;
        self.plan.snapshots.push((dir, chains[i].clone()));
        self.planned_chains.insert(chains[i].clone(), fs.clone());
        Ok(fs)
    }

    /// Unpacks the blob of layer `i` of `img` into a staged snapshot of its own, checking its
    /// diff_id.
    fn unpack_again(
        &mut self,
        img: &ArchiveImage,
        i: usize,
    ) -> Result<(PathBuf, ApplyReport, Option<Digest>), LoadError> {
        let layer = &img.layers[i];
        let file = &self.contents.files[&layer.path];
        self.fallbacks += 1;
        let dir = self.stage.dir.join(format!("fallback-{}", self.fallbacks));
        let fs = dir.join(FS_DIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&fs)
            .map_err(StoreError::io("create", &fs))?;
        let staged = self.stage.blob_file(file.id);
        let source = if self.store.blob_path(&layer.blob.digest).is_file() || !staged.is_file() {
            self.store.blob_path(&layer.blob.digest)
        } else {
            staged
        };
        let (diff_id, head, stats, pending) = snapshot::apply_blob(&source, &fs, self.stage.apply)
            .map_err(|e| layer_error(img, layer, e))?;
        if diff_id != layer.diff_id {
            return Err(LoadError::DiffId {
                image: img.label(),
                index: i + 1,
                blob: Box::new(layer.blob.digest.clone()),
                expected: Box::new(layer.diff_id.clone()),
                actual: Box::new(diff_id),
            });
        }
        Ok((dir, ApplyReport { stats, pending }, Some(head)))
    }
}

/// A layer of `img` that cannot be unpacked.
fn layer_error(img: &ArchiveImage, layer: &ArchiveLayer, source: LayerError) -> LoadError {
    LoadError::Layer {
        image: img.label(),
        blob: layer.blob.digest.to_string(),
        path: layer.path.clone(),
        source: Box::new(source),
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

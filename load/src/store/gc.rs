//! Naming and removing images, and collecting what nothing needs any more.
//!
//! Collection removes blobs and snapshots that no listed image (and no container's image)
//! references, and staging directories whose load is dead. It never runs while a load is
//! alive: a load may have decided to reuse a blob or snapshot it saw at its start, and must
//! find it at commit. Skipped collections happen at the next `rmi`, `system prune` or recovery.

use std::collections::HashSet;
use std::os::fd::AsFd;
use std::path::PathBuf;

use ferry_oci::{Digest, ImageReference};
use rustix::fs::FlockOperation;

use crate::error::StoreError;
use crate::store::index::{Catalog, Entry};
use crate::store::{BLOBS, SNAPSHOTS, Store, TMP, fsutil};

/// One step of `rmi`, as Docker prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// A name was removed.
    Untagged(String),
    /// An image was removed.
    Deleted(Digest),
}

/// What `system prune` did.
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    /// Images removed.
    pub images: Vec<Digest>,
    /// Bytes freed on disk.
    pub freed: u64,
    /// Whether collection was put off because a load is running.
    pub deferred: bool,
    /// Build-cache records removed.
    pub build_cache: usize,
}

/// What `system df` shows.
#[derive(Debug, Clone, Default)]
pub struct DiskUsage {
    /// Images listed.
    pub images: usize,
    /// Images some container uses.
    pub images_in_use: usize,
    /// Disk used by listed images' blobs and snapshots.
    pub image_bytes: u64,
    /// Of which no container needs.
    pub reclaimable_bytes: u64,
    /// Containers.
    pub containers: usize,
    /// Disk used by containers.
    pub container_bytes: u64,
    /// Blobs, snapshots and staging nothing references (freed by `system prune`).
    pub unreferenced_bytes: u64,
    /// The build cache.
    pub build_cache: super::CacheUsage,
}

impl Store {
    /// Gives the image `source` (name or ID) the name `target`.
    pub fn tag(&self, source: &str, target: &ImageReference) -> Result<(), StoreError> {
        let _lock = self.lock_exclusive()?;
        let mut catalog = Catalog::read(&self.root)?;
        let found = catalog.find(source)?;
        let facts = catalog.manifest(&found.manifest)?;
        let platform = catalog.config(&facts.config.digest)?.platform;
        let manifest = facts.manifest.clone();
        catalog.tag(target, Entry::for_manifest(&manifest, &platform))?;
        catalog.write()
    }

    /// `rmi`: by name, removes the name (and the image with its last name); by ID, removes
    /// the image with all its names. Refused while a container uses the image, and for an ID
    /// with several names, unless `force` (a used image is then only untagged).
    pub fn remove(&self, reference: &str, force: bool) -> Result<Vec<Removal>, StoreError> {
        let _lock = self.lock_exclusive()?;
        let mut catalog = Catalog::read(&self.root)?;
        let found = catalog.find(reference)?;
        let users: Vec<String> = self
            .images_in_use()
            .into_iter()
            .filter(|(_, id)| id == &found.id)
            .map(|(c, _)| c)
            .collect();
        let names = catalog.names_of(&found.id);
        let familiar = |n: &ImageReference| n.familiar_tagged().unwrap_or_else(|| n.to_string());
        let mut out = Vec::new();
        let to_untag: Vec<ImageReference> = match &found.name {
            Some(name) => {
                if names.len() <= 1 && !users.is_empty() && !force {
                    return Err(StoreError::InUse {
                        image: familiar(name),
                        container: users[0].clone(),
                    });
                }
                vec![name.clone()]
            }
            None => {
                if names.len() > 1 && !force {
                    return Err(StoreError::SeveralNames {
                        image: found.id.to_string(),
                        names: names.iter().map(familiar).collect(),
                    });
                }
                if !users.is_empty() && !force {
                    return Err(StoreError::InUse {
                        image: found.id.to_string(),
                        container: users[0].clone(),
                    });
                }
                names.clone()
            }
        };
        let mut orphaned = found.name.is_none();
        for n in &to_untag {
            if let Some((_, last)) = catalog.untag(n)? {
                orphaned |= last;
                out.push(Removal::Untagged(familiar(n)));
            }
        }
        if orphaned && users.is_empty() {
            catalog.remove_image(&found.id)?;
            out.push(Removal::Deleted(found.id.clone()));
        }
        catalog.write()?;
        self.collect(&catalog)?;
        Ok(out)
    }

    /// `system prune`: removes images without a name (with `all`, every image) that no
    /// container uses, then everything nothing references.
    pub fn prune(&self, all: bool) -> Result<PruneReport, StoreError> {
        let _lock = self.lock_exclusive()?;
        let mut catalog = Catalog::read(&self.root)?;
        let used: Vec<Digest> = self.images_in_use().into_iter().map(|(_, id)| id).collect();
        let mut report = PruneReport::default();
        for id in catalog.ids()? {
            if (all || catalog.names_of(&id).is_empty()) && !used.contains(&id) {
                catalog.remove_image(&id)?;
                report.images.push(id);
            }
        }
        catalog.write()?;
        report.build_cache = self.prune_build_cache(&catalog, all)?;
        let (freed, deferred) = self.collect(&catalog)?;
        report.freed = freed;
        report.deferred = deferred;
        Ok(report)
    }

    /// `system df`.
    pub fn disk_usage(&self) -> Result<DiskUsage, StoreError> {
        let _lock = self.lock_shared()?;
        let catalog = Catalog::read(&self.root)?;
        let in_use = self.images_in_use();
        let used_ids: Vec<Digest> = in_use.iter().map(|(_, id)| id.clone()).collect();
        let (blobs, chains) = catalog.referenced(&[])?;
        let mut du = DiskUsage {
            images: catalog.ids()?.len(),
            containers: std::fs::read_dir(self.containers_dir())
                .map(|r| r.count())
                .unwrap_or(0),
            container_bytes: fsutil::disk_usage(&self.containers_dir()),
            ..DiskUsage::default()
        };
        // What in-use images need, to tell reclaimable from not.
        let mut needed = Catalog::read(&self.root)?;
        let ids = needed.ids()?;
        for id in &ids {
            if !used_ids.contains(id) {
                needed.remove_image(id)?;
            }
        }
        du.images_in_use = needed.ids()?.len();
        let (kept_blobs, kept_chains) = needed.referenced(&used_ids)?;
        du.build_cache = self.build_cache_usage(&catalog, &blobs, &chains)?;
        let (mut cached_blobs, mut cached_chains) = (HashSet::new(), HashSet::new());
        self.keep_build_cache(&catalog, &mut cached_blobs, &mut cached_chains);
        for (dir, names, kept) in [
            (BLOBS, &blobs, &kept_blobs),
            (SNAPSHOTS, &chains, &kept_chains),
        ] {
            let base = if dir == BLOBS {
                self.root.join(BLOBS).join("sha256")
            } else {
                self.root.join(dir)
            };
            for e in std::fs::read_dir(&base)
                .map_err(StoreError::io("read", &base))?
                .flatten()
            {
                let name = e.file_name().to_string_lossy().into_owned();
                let bytes = fsutil::disk_usage(&e.path());
                if names.contains(&name) {
                    du.image_bytes += bytes;
                    if !kept.contains(&name) {
                        du.reclaimable_bytes += bytes;
                    }
                } else if !kept.contains(&name)
                    && !cached_blobs.contains(&name)
                    && !cached_chains.contains(&name)
                {
                    du.unreferenced_bytes += bytes;
                }
            }
        }
        du.unreferenced_bytes += fsutil::disk_usage(&self.root.join(TMP));
        Ok(du)
    }

    /// Runs at open: if a command died mid-load, removes its staging and what it half
    /// committed. Skipped when another command holds the lock (the next one will do it).
    pub(crate) fn recover(&self) -> Result<(), StoreError> {
        let Some(_lock) = self.try_lock_exclusive()? else {
            return Ok(());
        };
        // A temporary index of a killed writer (renamed into place only when complete).
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(".index.json.") && n.ends_with(".tmp") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        if self.staging().iter().all(|(_, live)| *live) {
            return Ok(());
        }
        let catalog = Catalog::read(&self.root)?;
        let (freed, _) = self.collect(&catalog)?;
        tracing::info!("recovered from an interrupted command: {freed} bytes freed");
        Ok(())
    }

    /// Staging directories, and whether their load is alive (holds its lock).
    fn staging(&self) -> Vec<(PathBuf, bool)> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.root.join(TMP)) else {
            return out;
        };
        for e in rd.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("probe-") {
                // Another process deciding the snapshot format, or one killed doing so.
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 600);
                if old {
                    out.push((path, false));
                }
                continue;
            }
            let live = std::fs::File::open(path.join(super::LOCK))
                .map(|f| {
                    match rustix::fs::flock(f.as_fd(), FlockOperation::NonBlockingLockExclusive) {
                        Ok(()) => false,
                        Err(rustix::io::Errno::WOULDBLOCK) => true,
                        Err(_) => false,
                    }
                })
                .unwrap_or(false);
            out.push((path, live));
        }
        out
    }

    /// Removes dead staging and unreferenced blobs and snapshots; the exclusive lock must be
    /// held. Returns the bytes freed and whether it was put off by a running load.
    fn collect(&self, catalog: &Catalog) -> Result<(u64, bool), StoreError> {
        let staging = self.staging();
        let mut freed = 0;
        for (path, live) in &staging {
            if !live {
                freed += fsutil::disk_usage(path);
                fsutil::remove_tree(path).map_err(StoreError::io("remove", path))?;
            }
        }
        if staging.iter().any(|(_, live)| *live) {
            return Ok((freed, true));
        }
        let extra: Vec<Digest> = self.images_in_use().into_iter().map(|(_, id)| id).collect();
        let (mut blobs, mut chains) = catalog.referenced(&extra)?;
        self.keep_build_cache(catalog, &mut blobs, &mut chains);
        for (base, keep) in [
            (self.root.join(BLOBS).join("sha256"), &blobs),
            (self.root.join(SNAPSHOTS), &chains),
        ] {
            for e in std::fs::read_dir(&base)
                .map_err(StoreError::io("read", &base))?
                .flatten()
            {
                let name = e.file_name().to_string_lossy().into_owned();
                if !keep.contains(&name) {
                    freed += fsutil::disk_usage(&e.path());
                    fsutil::remove_tree(&e.path()).map_err(StoreError::io("remove", e.path()))?;
                }
            }
        }
        Ok((freed, false))
    }
}

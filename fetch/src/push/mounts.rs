//! Which repositories of which registry hold which blobs, learnt from earlier pushes, so that
//! the next push of an image sharing base layers mounts them instead of uploading them again
//! (Docker keeps the same kind of record). A stale entry costs one HEAD, never a wrong byte:
//! a mount only succeeds where the registry has the blob.

use std::collections::BTreeMap;
use std::path::Path;

use ferry_oci::Digest;
use serde::{Deserialize, Serialize};

/// The record's file in the cache directory.
const FILE: &str = "push-mounts.json";
/// Repositories remembered per blob.
const REPOS_PER_BLOB: usize = 8;
/// Blobs remembered per registry; past it, the record starts afresh for that registry.
const BLOBS_PER_REGISTRY: usize = 50_000;

/// registry host → blob digest → repositories.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct MountRecord {
    registries: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl MountRecord {
    /// The record in `dir`; an unreadable one is an empty one.
    pub fn load(dir: &Path) -> MountRecord {
        std::fs::read(dir.join(FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Repositories of `host` that held `digest`.
    pub fn repos(&self, host: &str, digest: &Digest) -> Vec<String> {
        self.registries
            .get(host)
            .and_then(|m| m.get(&digest.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Notes that `repo` of `host` holds `digest`.
    pub fn add(&mut self, host: &str, digest: &Digest, repo: &str) {
        let blobs = self.registries.entry(host.to_string()).or_default();
        if blobs.len() >= BLOBS_PER_REGISTRY {
            blobs.clear();
        }
        let repos = blobs.entry(digest.to_string()).or_default();
        repos.retain(|r| r != repo);
        repos.insert(0, repo.to_string());
        repos.truncate(REPOS_PER_BLOB);
    }

    /// Writes the record to `dir` (beside, then renamed); failing to is not worth an error.
    pub fn save(&self, dir: &Path) {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!("{FILE}.{}.tmp", std::process::id()));
            std::fs::write(&tmp, serde_json::to_vec(self).expect("record serializes"))?;
            std::fs::rename(&tmp, dir.join(FILE))
        };
        if let Err(e) = write() {
            tracing::debug!(error = %e, "cannot save the record of pushed blobs");
        }
    }
}

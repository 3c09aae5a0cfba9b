//! `ferry push`: images from an archive or the store into a registry, bytes unchanged, so the
//! registry reports the digests the origin did.
//!
//! ```text
//! images (manifests in memory, blobs behind a BlobReader)
//!   ─► blobs the source lacks (delta archives): the registry must have them, checked first
//!   ─► blobs, in parallel: there already (HEAD) ─► mounted from another repository that has it
//!        ─► uploaded: one PUT when small, PATCH chunks when large, resumed from the offset the
//!           registry reports after a dropped connection, started over if it forgot the upload
//!   ─► manifests, children first and by digest, then each tag last
//! ```
//!
//! Nothing is re-serialised: manifests are put with their original bytes and media type, blobs
//! are streamed from the source as they are. The registry checks every digest itself.

mod blobs;
mod error;
mod manifests;
mod mounts;
mod upload;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_oci::archive::BlobRef;
use ferry_oci::{Digest, ImageReference};

pub use self::error::PushError;
use crate::ClientOptions;
use crate::reporter::Reporter;

/// Bytes per `PATCH` of a large blob, unless told otherwise. Each request costs the registry a
/// restore of its hash state: for the Debian-sized image's 125 MiB layer, 64 MiB chunks went
/// about 12 % faster than 32 MiB ones (128 MiB another 9 %), while a dropped connection still
/// costs at most 64 MiB sent again.
pub const DEFAULT_CHUNK: u64 = 64 << 20;

/// A manifest or index, with its bytes exactly as the source holds them.
#[derive(Debug, Clone)]
pub struct ManifestBlob {
    /// Its descriptor (digest, size, media type).
    pub blob: BlobRef,
    /// Its bytes; their digest is its identity.
    pub bytes: Vec<u8>,
}

/// One image to push.
#[derive(Debug, Clone)]
pub struct PushImage {
    /// Where it goes: the target registry, repository, and tag (or only a digest).
    pub target: ImageReference,
    /// The manifest or index the target names.
    pub top: ManifestBlob,
    /// The manifests below `top` (platform manifests, attestations, nested indexes), in the
    /// order they are put: children before the index that lists them.
    pub children: Vec<ManifestBlob>,
    /// The configs and layers the source holds.
    pub blobs: Vec<BlobRef>,
    /// Blobs the manifests name that the source lacks (a delta archive): the registry must
    /// have them already, in the target repository or one it can mount them from.
    pub absent: Vec<BlobRef>,
}

/// Where the bytes of blobs come from.
pub trait BlobReader: Send + Sync {
    /// Opens `blob` at byte `offset`; the reader yields the rest of the blob.
    fn open(&self, blob: &BlobRef, offset: u64) -> std::io::Result<Box<dyn Read + Send>>;
    /// The archive or store, for messages.
    fn name(&self) -> String;
}

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Blobs sent at once.
    pub concurrency: usize,
    /// Bytes per `PATCH`; blobs up to this size go in one `PUT`.
    pub chunk_size: u64,
    /// How to reach the registry.
    pub client: ClientOptions,
    /// Where the record of which repositories hold which blobs lives (for mounts); `None`
    /// keeps no record.
    pub cache_dir: Option<PathBuf>,
    /// Repositories of the target registry known to hold a blob (digest → repositories), from
    /// a delta archive's inventory: candidates for mounts.
    pub mount_hints: BTreeMap<String, Vec<String>>,
    /// Only find out what would move; write nothing.
    pub dry_run: bool,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            concurrency: 4,
            chunk_size: DEFAULT_CHUNK,
            client: ClientOptions::default(),
            cache_dir: None,
            mount_hints: BTreeMap::new(),
            dry_run: false,
        }
    }
}

/// What happened (or, in a dry run, would happen) to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The repository has the blob already.
    Exists {
        /// The blob.
        blob: BlobRef,
        /// The target repository.
        repo: String,
    },
    /// The blob is mounted from another repository of the registry.
    Mount {
        /// The blob.
        blob: BlobRef,
        /// The target repository.
        repo: String,
        /// Where it is mounted from.
        from: String,
    },
    /// The blob is uploaded.
    Upload {
        /// The blob.
        blob: BlobRef,
        /// The target repository.
        repo: String,
    },
    /// A manifest is put under a tag or digest (or is there already).
    Manifest {
        /// `repo:tag` or `repo@digest`.
        reference: String,
        /// The manifest.
        digest: Digest,
        /// It was there already.
        existed: bool,
    },
}

/// One image pushed.
#[derive(Debug, Clone)]
pub struct PushedImage {
    /// Where it went.
    pub target: ImageReference,
    /// The digest the target names (the manifest's or index's).
    pub digest: Digest,
}

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct PushSummary {
    /// The images.
    pub images: Vec<PushedImage>,
    /// Everything done (or, in a dry run, to be done), blobs first, then manifests.
    pub actions: Vec<Action>,
    /// Bytes sent in upload requests, including any sent again after a dropped connection.
    pub sent_bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl PushSummary {
    /// Count and bytes of the blob actions `which` selects.
    pub fn count(&self, which: impl Fn(&Action) -> bool) -> (usize, u64) {
        self.actions
            .iter()
            .filter(|a| which(a))
            .fold((0, 0), |(n, b), a| match a {
                Action::Exists { blob, .. }
                | Action::Mount { blob, .. }
                | Action::Upload { blob, .. } => (n + 1, b + blob.size),
                Action::Manifest { .. } => (n + 1, b),
            })
    }
}

/// Pushes `images` (all to the registry of their targets, which must be one) from `source`.
pub fn push(
    images: &[PushImage],
    source: &dyn BlobReader,
    opts: &PushOptions,
    reporter: Arc<dyn Reporter>,
) -> Result<PushSummary, PushError> {
    let started = Instant::now();
    let Some(first) = images.first() else {
        return Ok(PushSummary::default());
    };
    let host = first.target.registry_host().to_string();
    debug_assert!(images.iter().all(|i| i.target.registry_host() == host));
    let registry = opts.client.connect(
        first.target.registry(),
        &host,
        opts.concurrency,
        reporter.clone(),
    )?;
    let mut record = opts
        .cache_dir
        .as_deref()
        .map(mounts::MountRecord::load)
        .unwrap_or_default();

    for image in images {
        let mut all: Vec<BlobRef> = image.blobs.clone();
        all.extend(image.absent.iter().cloned());
        reporter.on_push_image(&image.target, &all);
    }
    let tasks = blobs::tasks(images);
    let ctx = blobs::Context {
        registry: &registry,
        source,
        opts,
        reporter: reporter.clone(),
        record: &record,
    };
    let (mut actions, sent) = blobs::push_all(&ctx, &tasks)?;
    if !opts.dry_run {
        for a in &actions {
            match a {
                Action::Exists { blob, repo }
                | Action::Mount { blob, repo, .. }
                | Action::Upload { blob, repo } => record.add(&host, &blob.digest, repo),
                Action::Manifest { .. } => {}
            }
        }
    }
    reporter.on_finishing();
    let mut pushed = Vec::new();
    for image in images {
        actions.extend(manifests::push_image(&registry, image, opts.dry_run)?);
        pushed.push(PushedImage {
            target: image.target.clone(),
            digest: image.top.blob.digest.clone(),
        });
    }
    if let Some(dir) = &opts.cache_dir
        && !opts.dry_run
    {
        record.save(dir);
    }
    Ok(PushSummary {
        images: pushed,
        actions,
        sent_bytes: sent,
        elapsed: started.elapsed(),
    })
}

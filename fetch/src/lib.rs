//! The registry client, and what ferry does with it: `ferry fetch` (image references in, one
//! verified archive out) and `ferry push` (archive or store images in, the same digests in an
//! internal registry; see [`push`]).
//!
//! ```text
//! reference ─► registry (ping, auth, manifest) ─► platform manifest(s) + config ─► archive plan
//!           ─► layers downloaded in parallel into FILE.part, verified while streaming
//!           ─► FILE.sha256 ─► FILE.part renamed to FILE (or FILE.000, FILE.001, … when split)
//! ```
//!
//! Several platforms keep the image index; an inventory of what the far side holds
//! leaves its layers out (a delta archive). The crate is portable (it is what `ferry.exe` runs
//! on Windows) and never draws progress itself: callers pass a [`Reporter`].

#![forbid(unsafe_code)]

pub mod credentials;
pub mod docker_config;
mod download;
pub mod error;
mod frozen;
pub mod http;
pub mod image_list;
pub mod inventory;
mod multi;
mod partial;
pub mod push;
pub mod registry;
pub mod reporter;
mod resolve;
mod reuse;
pub mod split;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_oci::archive::{ArchivePlan, BlobRef, DeltaInfo, NeededBlob, PlanExtras};
use ferry_oci::{Digest, ImageReference, Platform, PlatformChoice};

pub use credentials::{Credentials, Secret};
pub use docker_config::DockerConfig;
pub use error::FetchError;
pub use http::agent::AgentOptions;
pub use http::retry::RetryPolicy;
pub use reporter::{Reporter, Silent};

pub use image_list::Wanted;
pub use partial::{FAT32_MAX, parse_split_size, part_name};

use crate::partial::{PartFile, with_suffix};
use crate::registry::{Registry, Shared};

/// Where the archive goes.
#[derive(Debug, Clone)]
pub enum Destination {
    /// A file, written as `FILE.part` and renamed when complete, with `FILE.sha256` beside it.
    File(PathBuf),
    /// Standard output; the archive is assembled in `staging` first, so that nothing reaches
    /// the pipe before every blob was verified.
    Stdout {
        /// Directory for the part file.
        staging: PathBuf,
    },
    /// The directory moby's `download-frozen-image-v2.sh` writes (see `frozen.rs`), for
    /// `tar -cC DIR . | docker load`; assembled as `DIR.part` beside it first.
    Directory(PathBuf),
}

/// How to reach a registry: TLS, credentials, retries, connections. What push and the
/// registry inventory take (fetch has the same fields in [`FetchOptions`]).
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Hosts where plain HTTP and unverified TLS are allowed.
    pub insecure_registries: Vec<String>,
    /// Credentials given explicitly.
    pub credentials: Option<Credentials>,
    /// Docker's client configuration, when no credentials are given.
    pub docker_config: Option<Arc<DockerConfig>>,
    /// Retries of failed requests and dropped transfers.
    pub retry: RetryPolicy,
    /// Connection settings.
    pub agent: AgentOptions,
}

impl ClientOptions {
    /// A client for the registry `host` (`registry` as image references name it: Docker Hub is
    /// `docker.io`), keeping `connections` open at once.
    pub fn connect(
        &self,
        registry: &str,
        host: &str,
        connections: usize,
        reporter: Arc<dyn Reporter>,
    ) -> Result<Registry, FetchError> {
        let mut agent = self.agent.clone();
        agent.connections_per_host = agent.connections_per_host.max(connections);
        let shared = Arc::new(Shared {
            agents: http::agent::Agents::new(&agent)?,
            insecure: self.insecure_registries.clone(),
            retry: self.retry.clone(),
            reporter,
        });
        let credentials = match (&self.credentials, &self.docker_config) {
            (Some(c), _) => Some(c.clone()),
            (None, Some(config)) => config.credentials_for(registry)?,
            (None, None) => None,
        };
        Ok(Registry::new(host, shared, credentials))
    }
}

/// What the far side already holds: the layers a delta archive leaves out.
#[derive(Debug, Clone, Default)]
pub struct Have {
    /// Blob digests held.
    pub digests: HashSet<Digest>,
    /// Where that was learnt (an inventory's source, an archive's name).
    pub based_on: String,
    /// For a registry's inventory: repositories holding each blob (digest → repositories).
    pub repositories: HashMap<String, Vec<String>>,
}

/// How to fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The platforms to take from multi-platform images (unless an image says otherwise).
    pub platform: PlatformChoice,
    /// Parallel blob downloads.
    pub concurrency: usize,
    /// Hosts where plain HTTP and unverified TLS are allowed.
    pub insecure_registries: Vec<String>,
    /// Credentials given explicitly, for every registry of the requested images.
    pub credentials: Option<Credentials>,
    /// Docker's client configuration, for registries without explicit credentials.
    pub docker_config: Option<Arc<DockerConfig>>,
    /// Retries of failed requests and dropped downloads.
    pub retry: RetryPolicy,
    /// Connection settings.
    pub agent: AgentOptions,
    /// Where the index of earlier archives' blobs lives; `None` disables reuse.
    pub cache_dir: Option<PathBuf>,
    /// Write the archive as parts of at most this many bytes.
    pub split: Option<u64>,
    /// Leave out the layers the far side holds (a delta archive).
    pub have: Option<Have>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            platform: PlatformChoice::default(),
            concurrency: 8,
            insecure_registries: Vec::new(),
            credentials: None,
            docker_config: None,
            retry: RetryPolicy::default(),
            agent: AgentOptions::default(),
            cache_dir: None,
            split: None,
            have: None,
        }
    }
}

/// One image in a finished archive.
#[derive(Debug, Clone)]
pub struct FetchedImage {
    /// The reference it was fetched as.
    pub reference: ImageReference,
    /// The platform chosen.
    pub platform: Platform,
    /// The platform manifest's digest, as the registry has it.
    pub manifest_digest: Digest,
    /// The image ID (config digest).
    pub config_digest: Digest,
}

/// What a fetch did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The images in the archive.
    pub images: Vec<FetchedImage>,
    /// Size of the archive.
    pub archive_bytes: u64,
    /// Layer bytes downloaded in this run (less than their total when a run was resumed).
    pub downloaded_bytes: u64,
    /// Layer bytes copied from earlier archives instead of downloaded.
    pub reused_bytes: u64,
    /// sha256 of the archive, or of each of its parts.
    pub checksums: Vec<Digest>,
    /// What a delta archive leaves out.
    pub delta: Option<DeltaInfo>,
    /// Wall time.
    pub elapsed: Duration,
}

/// ferry's cache directory: `override_dir`, else the user's cache directory
/// (`~/.cache/ferry`, `%LOCALAPPDATA%\ferry\cache`), else one under the system's temporary
/// directory.
pub fn cache_dir(override_dir: Option<PathBuf>) -> PathBuf {
    override_dir
        .or_else(|| {
            directories::ProjectDirs::from("", "", "ferry").map(|d| d.cache_dir().to_path_buf())
        })
        .unwrap_or_else(|| std::env::temp_dir().join("ferry-cache"))
}

/// Fetches `images` into one archive at `destination`, each for the platforms of
/// `opts.platform`.
pub fn fetch(
    images: &[ImageReference],
    destination: &Destination,
    opts: &FetchOptions,
    reporter: Arc<dyn Reporter>,
) -> Result<Summary, FetchError> {
    let wanted: Vec<Wanted> = images
        .iter()
        .map(|r| Wanted {
            reference: r.clone(),
            platform: None,
        })
        .collect();
    fetch_list(&wanted, destination, opts, reporter)
}

/// Fetches `images` (each with its own platforms, or those of `opts`) into one archive.
pub fn fetch_list(
    images: &[Wanted],
    destination: &Destination,
    opts: &FetchOptions,
    reporter: Arc<dyn Reporter>,
) -> Result<Summary, FetchError> {
    let started = Instant::now();
    let resolved = resolve_all(images, opts, &reporter)?;
    let records: Vec<_> = resolved
        .iter()
        .flat_map(|(r, _)| r.images.iter().map(|i| i.record.clone()))
        .collect();
    let mut extras = PlanExtras::default();
    for (r, _) in &resolved {
        for b in r.extra_small.iter().map(|(b, _)| b).chain(&r.extra_blobs) {
            if !extras.blobs.contains(b) {
                extras.blobs.push(b.clone());
            }
        }
    }
    extras.delta = opts.have.as_ref().map(|have| delta(&records, have));
    let plan = ArchivePlan::with_extras(records, extras);
    let part_path = match destination {
        Destination::File(path) => with_suffix(path, ".part"),
        Destination::Directory(dir) => frozen::part_path(dir),
        Destination::Stdout { staging } => staging.join(format!(
            "stdout-{}.tar.part",
            &plan.fingerprint().digest()[..16]
        )),
    };
    if let Some(dir) = part_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| FetchError::Io {
            action: "create directory",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let split = match destination {
        Destination::File(_) => opts.split,
        Destination::Stdout { .. } | Destination::Directory(_) => None,
    };
    let part = PartFile::open(part_path, &plan, download::CHUNK, split)?;
    let small: HashMap<String, Vec<u8>> = resolved
        .iter()
        .flat_map(|(r, _)| {
            let images = r.images.iter().flat_map(|i| {
                [
                    (
                        i.record.manifest.digest.to_string(),
                        i.manifest_bytes.clone(),
                    ),
                    (i.record.config.digest.to_string(), i.config_bytes.clone()),
                ]
            });
            let extra = r
                .extra_small
                .iter()
                .map(|(b, bytes)| (b.digest.to_string(), bytes.clone()));
            images.chain(extra).collect::<Vec<_>>()
        })
        .collect();
    part.write_known(&plan, &|b| small.get(&b.digest.to_string()).cloned())?;

    let layers = layers_to_download(&plan, &resolved, &small);
    let index = opts.cache_dir.as_deref().map(reuse::BlobIndex::load);
    let done = download::transfer(
        &layers,
        &part,
        index.as_ref(),
        plan.total_len(),
        opts.concurrency,
        &opts.retry,
        reporter.as_ref(),
    )?;
    reporter.on_finishing();
    let checksums = done.checksums;
    match destination {
        Destination::File(path) => {
            part.commit(path, &checksums)?;
            if let Some(dir) = &opts.cache_dir
                && split.is_none()
            {
                reuse::BlobIndex::record(dir, path, &plan);
            }
        }
        Destination::Stdout { .. } => {
            part.copy_to(&mut std::io::stdout().lock())?;
            part.discard();
        }
        Destination::Directory(dir) => {
            let config = |img: &ferry_oci::archive::ImageRecord| {
                small
                    .get(&img.config.digest.to_string())
                    .cloned()
                    .unwrap_or_default()
            };
            frozen::write(part, &plan, &config, dir)?;
        }
    }

    Ok(Summary {
        images: resolved
            .iter()
            .flat_map(|(r, _)| &r.images)
            .map(|i| FetchedImage {
                reference: i
                    .record
                    .reference
                    .clone()
                    .expect("fetched images have references"),
                platform: i.record.platform.clone().unwrap_or_default(),
                manifest_digest: i.record.manifest.digest.clone(),
                config_digest: i.record.config.digest.clone(),
            })
            .collect(),
        archive_bytes: plan.total_len(),
        downloaded_bytes: done.downloaded,
        reused_bytes: done.reused,
        checksums,
        delta: plan.delta().cloned(),
        elapsed: started.elapsed(),
    })
}

/// What a delta leaves out: every layer the far side holds (manifests, configs and other
/// small blobs always travel).
fn delta(records: &[ferry_oci::archive::ImageRecord], have: &Have) -> DeltaInfo {
    let mut needs: Vec<NeededBlob> = Vec::new();
    for layer in records.iter().flat_map(|r| &r.layers) {
        let d = layer.digest.to_string();
        if have.digests.contains(&layer.digest) && !needs.iter().any(|n| n.digest == d) {
            needs.push(NeededBlob {
                repositories: have.repositories.get(&d).cloned().unwrap_or_default(),
                digest: d,
                size: layer.size,
                media_type: layer.media_type.clone(),
            });
        }
    }
    DeltaInfo::new(have.based_on.clone(), needs)
}

/// Resolves every distinct image, one registry client per host.
fn resolve_all(
    images: &[Wanted],
    opts: &FetchOptions,
    reporter: &Arc<dyn Reporter>,
) -> Result<Vec<(resolve::Resolved, Arc<Registry>)>, FetchError> {
    let client = ClientOptions {
        insecure_registries: opts.insecure_registries.clone(),
        credentials: opts.credentials.clone(),
        docker_config: opts.docker_config.clone(),
        retry: opts.retry.clone(),
        agent: opts.agent.clone(),
    };
    let mut registries: HashMap<String, Arc<Registry>> = HashMap::new();
    let mut resolved = Vec::new();
    let mut seen = Vec::new();
    for wanted in images {
        let reference = &wanted.reference;
        if seen.contains(&reference.qualified()) {
            continue;
        }
        seen.push(reference.qualified());
        let host = reference.registry_host().to_string();
        let registry = match registries.get(&host) {
            Some(r) => r.clone(),
            None => {
                let r = Arc::new(client.connect(
                    reference.registry(),
                    &host,
                    opts.concurrency,
                    reporter.clone(),
                )?);
                registries.insert(host.clone(), r.clone());
                r
            }
        };
        let choice = wanted.platform.as_ref().unwrap_or(&opts.platform);
        let found = resolve::resolve_choice(&registry, reference, choice)?;
        for image in &found.images {
            reporter.on_resolved(
                reference,
                image
                    .record
                    .platform
                    .as_ref()
                    .unwrap_or(&Platform::default()),
                &image.record.layers,
            );
        }
        resolved.push((found, registry));
    }
    Ok(resolved)
}

/// The layers to bring into the archive, each from the first image that lists it.
fn layers_to_download(
    plan: &ArchivePlan,
    resolved: &[(resolve::Resolved, Arc<Registry>)],
    small: &HashMap<String, Vec<u8>>,
) -> Vec<download::Layer> {
    let holds = |r: &resolve::Resolved, blob: &BlobRef| {
        r.extra_blobs.iter().any(|b| b.digest == blob.digest)
            || r.images
                .iter()
                .any(|i| i.record.layers.iter().any(|l| l.digest == blob.digest))
    };
    plan.blobs()
        .filter(|(_, b)| !small.contains_key(&b.digest.to_string()))
        .map(|(entry, blob)| {
            let (found, registry) = resolved
                .iter()
                .find(|(r, _)| holds(r, blob))
                .expect("every planned layer belongs to an image");
            download::Layer {
                offset: entry.data_offset(),
                blob: blob.clone(),
                registry: registry.clone(),
                repo: found.images[0]
                    .record
                    .reference
                    .as_ref()
                    .expect("fetched images have references")
                    .repository()
                    .to_string(),
            }
        })
        .collect()
}

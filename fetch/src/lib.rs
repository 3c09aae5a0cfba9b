//! `ferry fetch`: image references in, one verified archive out.
//!
//! ```text
//! reference ─► registry (ping, auth, manifest) ─► platform manifest + config ─► archive plan
//!           ─► layers downloaded in parallel into FILE.part, verified while streaming
//!           ─► FILE.sha256 ─► FILE.part renamed to FILE
//! ```
//!
//! The crate is portable (it is what `ferry.exe` runs on Windows) and never draws progress
//! itself: callers pass a [`Reporter`].

#![forbid(unsafe_code)]

pub mod credentials;
pub mod docker_config;
mod download;
pub mod error;
mod frozen;
pub mod http;
mod partial;
pub mod registry;
pub mod reporter;
mod resolve;
mod reuse;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_oci::archive::ArchivePlan;
use ferry_oci::{Digest, ImageReference, Platform};

pub use credentials::{Credentials, Secret};
pub use docker_config::DockerConfig;
pub use error::FetchError;
pub use http::agent::AgentOptions;
pub use http::retry::RetryPolicy;
pub use reporter::{Reporter, Silent};

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

/// How to fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The platform to pick from multi-platform images.
    pub platform: Platform,
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
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            platform: Platform::default(),
            concurrency: 8,
            insecure_registries: Vec::new(),
            credentials: None,
            docker_config: None,
            retry: RetryPolicy::default(),
            agent: AgentOptions::default(),
            cache_dir: None,
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
    /// sha256 of the archive.
    pub checksum: Digest,
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

/// Fetches `images` into one archive at `destination`.
pub fn fetch(
    images: &[ImageReference],
    destination: &Destination,
    opts: &FetchOptions,
    reporter: Arc<dyn Reporter>,
) -> Result<Summary, FetchError> {
    let started = Instant::now();
    let mut agent_opts = opts.agent.clone();
    agent_opts.connections_per_host = agent_opts.connections_per_host.max(opts.concurrency);
    let shared = Arc::new(Shared {
        agents: http::agent::Agents::new(&agent_opts)?,
        insecure: opts.insecure_registries.clone(),
        retry: opts.retry.clone(),
        reporter: reporter.clone(),
    });

    let resolved = resolve_all(images, opts, &shared, reporter.as_ref())?;
    let plan = ArchivePlan::new(resolved.iter().map(|(i, _)| i.record.clone()).collect());
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
    let part = PartFile::open(part_path, &plan, download::CHUNK)?;
    let small: HashMap<String, Vec<u8>> = resolved
        .iter()
        .flat_map(|(i, _)| {
            [
                (
                    i.record.manifest.digest.to_string(),
                    i.manifest_bytes.clone(),
                ),
                (i.record.config.digest.to_string(), i.config_bytes.clone()),
            ]
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
    let checksum = done.checksum;
    match destination {
        Destination::File(path) => {
            part.commit(path, &checksum)?;
            if let Some(dir) = &opts.cache_dir {
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
            .map(|(i, _)| FetchedImage {
                reference: i
                    .record
                    .reference
                    .clone()
                    .expect("fetched images have references"),
                platform: i
                    .record
                    .platform
                    .clone()
                    .unwrap_or_else(|| opts.platform.clone()),
                manifest_digest: i.record.manifest.digest.clone(),
                config_digest: i.record.config.digest.clone(),
            })
            .collect(),
        archive_bytes: plan.total_len(),
        downloaded_bytes: done.downloaded,
        reused_bytes: done.reused,
        checksum,
        elapsed: started.elapsed(),
    })
}

/// Resolves every distinct image, one registry client per host.
fn resolve_all(
    images: &[ImageReference],
    opts: &FetchOptions,
    shared: &Arc<Shared>,
    reporter: &dyn Reporter,
) -> Result<Vec<(resolve::ResolvedImage, Arc<Registry>)>, FetchError> {
    let mut registries: HashMap<String, Arc<Registry>> = HashMap::new();
    let mut resolved = Vec::new();
    let mut seen = Vec::new();
    for reference in images {
        if seen.contains(&reference.qualified()) {
            continue;
        }
        seen.push(reference.qualified());
        let host = reference.registry_host().to_string();
        let registry = match registries.get(&host) {
            Some(r) => r.clone(),
            None => {
                let credentials = match (&opts.credentials, &opts.docker_config) {
                    (Some(c), _) => Some(c.clone()),
                    (None, Some(config)) => config.credentials_for(reference.registry())?,
                    (None, None) => None,
                };
                let r = Arc::new(Registry::new(&host, shared.clone(), credentials));
                registries.insert(host.clone(), r.clone());
                r
            }
        };
        let image = resolve::resolve(&registry, reference, &opts.platform)?;
        reporter.on_resolved(
            reference,
            image.record.platform.as_ref().unwrap_or(&opts.platform),
            &image.record.layers,
        );
        resolved.push((image, registry));
    }
    Ok(resolved)
}

/// The layers to bring into the archive, each from the first image that lists it.
fn layers_to_download(
    plan: &ArchivePlan,
    resolved: &[(resolve::ResolvedImage, Arc<Registry>)],
    small: &HashMap<String, Vec<u8>>,
) -> Vec<download::Layer> {
    plan.blobs()
        .filter(|(_, b)| !small.contains_key(&b.digest.to_string()))
        .map(|(entry, blob)| {
            let (image, registry) = resolved
                .iter()
                .find(|(i, _)| i.record.layers.iter().any(|l| l.digest == blob.digest))
                .expect("every planned layer belongs to an image");
            download::Layer {
                offset: entry.data_offset(),
                blob: blob.clone(),
                registry: registry.clone(),
                repo: image
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

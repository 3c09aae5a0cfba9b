//! `ferry-build`'s traits over ferry's own parts: the store (`ferry-load`), the runtime
//! (`ferry-run`) and the HTTP client of `ferry fetch` (for `ADD URL`).

use std::io::Read;
use std::path::{Path, PathBuf};

use ferry_build::host::{
    ContainerChanges, Downloaded, Downloader, HostError, ImageStore, Layer, NewLayer, RunStep,
    StepContainer, StepEvents, StepExit, StepRunner, StoredImage,
};
use ferry_fetch::http::agent::Agents;
use ferry_load::Store;
use ferry_load::store::{BuildImage, BuildSession, NewBuildLayer, SnapshotFormat};
use ferry_oci::{Digest, ImageReference};
use ferry_run::container::step::{self, StepSpec};
use ferry_run::{Containers, Image, ImageSource, Network, RootfsMode, Volume};

use crate::commands::store::StoreSource;

fn stored(img: BuildImage) -> StoredImage {
    StoredImage {
        id: img.id,
        config: img.config,
        manifest_media_type: img.manifest_media_type,
        layers: img
            .layers
            .into_iter()
            .map(|l| Layer {
                diff_id: l.diff_id,
                blob: l.blob,
                snapshot: l.snapshot,
            })
            .collect(),
    }
}

/// The store, with this build's session.
pub struct StoreHost<'s> {
    pub store: &'s Store,
    pub session: BuildSession<'s>,
}

impl ImageStore for StoreHost<'_> {
    fn image(&self, reference: &str) -> Result<Option<StoredImage>, HostError> {
        Ok(self.store.build_image(reference)?.map(stored))
    }

    fn cached(&self, key: &Digest) -> Result<Option<StoredImage>, HostError> {
        Ok(self.store.build_cached(key)?.map(stored))
    }

    fn workspace(&self) -> &Path {
        self.session.dir()
    }

    fn memory_dir(&self) -> Option<PathBuf> {
        Some(self.store.build_memory_dir())
    }

    fn overlay_snapshots(&self) -> bool {
        self.store.snapshot_format() == SnapshotFormat::Overlay
    }

    fn commit_layer(&self, below: &[Digest], layer: NewLayer<'_>) -> Result<PathBuf, HostError> {
        Ok(self.session.commit_layer(
            below,
            NewBuildLayer {
                blob: &layer.blob.path,
                digest: &layer.blob.digest,
                diff_id: &layer.blob.diff_id,
                tree: layer.tree,
                tree_stats: Some((layer.blob.stats.tree_bytes, layer.blob.stats.tree_entries)),
            },
        )?)
    }

    fn commit_image(
        &self,
        config: &[u8],
        manifest: &[u8],
        cache: Option<(&Digest, Option<&Digest>)>,
    ) -> Result<(), HostError> {
        Ok(self.session.commit_image(config, manifest, cache)?)
    }

    fn tag(&self, manifest: &[u8], names: &[String]) -> Result<(), HostError> {
        let refs = names
            .iter()
            .map(|n| n.parse::<ImageReference>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.store.tag_manifest(manifest, &refs)?)
    }
}

/// The runtime.
pub struct Runner {
    pub source: StoreSource,
    pub containers: Containers,
    pub rootfs: RootfsMode,
    /// Where a step's upper directory may go instead of its container's directory (see
    /// `ferry_run::container::step::StepSpec::spare_dirs`).
    pub spare_dirs: Vec<PathBuf>,
}

struct Finished(step::StepContainer);

impl StepContainer for Finished {
    fn id(&self) -> &str {
        self.0.id()
    }

    fn changes(&self) -> ContainerChanges {
        match self.0.upper() {
            Some(u) => ContainerChanges::Upper(u),
            None => ContainerChanges::Tree(self.0.rootfs()),
        }
    }
}

impl StepRunner for Runner {
    fn run(
        &self,
        s: &RunStep<'_>,
        events: &mut dyn StepEvents,
    ) -> Result<(Box<dyn StepContainer>, StepExit), HostError> {
        let config = serde_json::from_slice(&s.config.to_bytes())?;
        let spec = StepSpec {
            image: Image {
                id: s.image.clone(),
                names: Vec::new(),
                config,
                layers: s.layers.clone(),
                overlay_ready: s.overlay_ready,
            },
            command: s.command.clone(),
            env: s.env.clone(),
            network: if s.network_none {
                Network::None
            } else {
                Network::Host
            },
            rootfs: self.rootfs,
            volumes: s
                .volumes
                .iter()
                .map(|(path, dir)| Volume {
                    host: Some(dir.clone()),
                    container: path.clone(),
                    ..Volume::default()
                })
                .collect(),
            spare_dirs: self.spare_dirs.clone(),
        };
        let events = std::cell::RefCell::new(events);
        let (container, exit) = step::run_step(
            &self.source as &dyn ImageSource,
            &self.containers,
            spec,
            &mut |id| events.borrow_mut().started(id),
            &mut |bytes| events.borrow_mut().output(bytes),
        )?;
        Ok((
            Box::new(Finished(container)),
            StepExit {
                code: exit.code,
                interrupted: exit.interrupted,
            },
        ))
    }

    fn interrupted(&self) -> Option<i32> {
        step::interrupted()
    }
}

/// `ADD URL` through `ferry fetch`'s HTTP client: the system's trust store plus
/// `--ca-cert`, the proxy from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`. Redirects are followed
/// (at most 10).
pub struct Http {
    pub agents: Agents,
}

impl Downloader for Http {
    fn download(&self, url: &str, dest: &Path) -> Result<Downloaded, HostError> {
        let mut current = url.to_string();
        for _ in 0..10 {
            let resp = self.agents.verified.get(&current).call()?;
            let status = resp.status().as_u16();
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            if (300..400).contains(&status)
                && let Some(loc) = header("location")
            {
                current = resolve_location(&current, &loc);
                continue;
            }
            if status != 200 {
                return Err(format!("{current} answered HTTP {status}").into());
            }
            let file_name = header("content-disposition").and_then(|d| disposition_name(&d));
            let last_modified = header("last-modified")
                .and_then(|v| httpdate::parse_http_date(&v).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64);
            let mut body = resp.into_body().into_reader();
            let mut f = std::fs::File::create(dest)?;
            std::io::copy(&mut body as &mut dyn Read, &mut f)?;
            f.sync_all()?;
            return Ok(Downloaded {
                file_name,
                last_modified,
            });
        }
        Err(format!("{url}: too many redirects").into())
    }
}

fn resolve_location(base: &str, loc: &str) -> String {
    if loc.contains("://") {
        return loc.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
    let host = rest.split('/').next().unwrap_or_default();
    if loc.starts_with('/') {
        format!("{scheme}://{host}{loc}")
    } else {
        let dir = base.rsplit_once('/').map_or(base, |(d, _)| d);
        format!("{dir}/{loc}")
    }
}

/// `attachment; filename="x.tar.gz"` → `x.tar.gz` (no directories).
fn disposition_name(value: &str) -> Option<String> {
    let v = value
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("filename="))?;
    let name = v.trim_matches('"');
    let base = name.rsplit('/').next().unwrap_or(name);
    (!base.is_empty()).then(|| base.to_string())
}

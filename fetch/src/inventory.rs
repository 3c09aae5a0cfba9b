//! `ferry inventory --registry`: what an internal registry already holds, as the inventory a
//! delta is made from. Every repository (below a prefix, if given), every tag, every manifest
//! and what it names: configs, layers, and the manifests of an index. Each blob is listed with
//! the repositories holding it, so `ferry push` of the delta can mount what is elsewhere.

use std::sync::Arc;

use ferry_oci::inventory::{Inventory, InventoryImage};
use ferry_oci::media_type::Kind;
use ferry_oci::spec::{ImageIndex, ImageManifest};
use ferry_oci::{Digest, digest};

use crate::error::FetchError;
use crate::registry::{FetchedManifest, Registry};
use crate::reporter::Reporter;
use crate::{ClientOptions, resolve};

/// The inventory of registry `host`, of the repositories below `prefix` (all, without one).
pub fn registry_inventory(
    host: &str,
    prefix: Option<&str>,
    opts: &ClientOptions,
    reporter: Arc<dyn Reporter>,
) -> Result<Inventory, FetchError> {
    let registry = opts.connect(host, host, 4, reporter)?;
    let source = match prefix {
        Some(p) => format!("registry {host}/{p}"),
        None => format!("registry {host}"),
    };
    let mut inv = Inventory::new(source);
    let repos = registry.repositories()?;
    for repo in repos.iter().filter(|r| match prefix {
        Some(p) => r.starts_with(&format!("{p}/")) || *r == p,
        None => true,
    }) {
        for tag in registry.tags(repo)? {
            let m = registry.manifest(repo, &tag)?;
            inv.images.push(InventoryImage {
                name: format!("{host}/{repo}:{tag}"),
                digest: m.digest.to_string(),
            });
            add(&registry, repo, &m, 0, &mut inv)?;
        }
    }
    Ok(inv)
}

/// Adds a manifest or index and everything below it.
fn add(
    registry: &Registry,
    repo: &str,
    m: &FetchedManifest,
    depth: usize,
    inv: &mut Inventory,
) -> Result<(), FetchError> {
    inv.add_blob(&m.digest, m.bytes.len() as u64, Some(repo));
    let invalid = |e: serde_json::Error| FetchError::Invalid {
        what: format!("manifest {repo}@{}", m.digest),
        source: Box::new(e),
    };
    match m.kind {
        Kind::Index if depth < resolve::MAX_NESTING => {
            let index: ImageIndex = serde_json::from_slice(&m.bytes).map_err(invalid)?;
            for d in index.manifests() {
                let digest = parse(d.digest().as_ref())?;
                let child = registry.manifest(repo, digest.as_ref())?;
                add(registry, repo, &child, depth + 1, inv)?;
            }
        }
        Kind::Manifest => {
            let manifest: ImageManifest = serde_json::from_slice(&m.bytes).map_err(invalid)?;
            for d in std::iter::once(manifest.config()).chain(manifest.layers().iter()) {
                inv.add_blob(&parse(d.digest().as_ref())?, d.size(), Some(repo));
            }
        }
        // Schema1, artifacts, indexes nested too deep: what they name is not listed.
        _ => {}
    }
    Ok(())
}

fn parse(d: &str) -> Result<Digest, FetchError> {
    digest::parse(d).map_err(|e| FetchError::Invalid {
        what: "descriptor".into(),
        source: Box::new(e),
    })
}

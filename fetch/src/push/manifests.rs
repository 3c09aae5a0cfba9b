//! Putting manifests: every child of an index by its digest first (a registry refuses an index
//! whose manifests it lacks), then the image's own manifest or index under its tag. Each is
//! asked for first (HEAD), so a push of what the registry has writes nothing.

use super::{Action, PushError, PushImage};
use crate::registry::Registry;

/// Puts the manifests of `image` (only asks, in a dry run); returns what was done.
pub(super) fn push_image(
    registry: &Registry,
    image: &PushImage,
    dry_run: bool,
) -> Result<Vec<Action>, PushError> {
    let repo = image.target.repository();
    let mut done = Vec::new();
    let top_reference = match image.target.tag() {
        Some(tag) => tag.to_string(),
        None => image.top.blob.digest.to_string(),
    };
    let children = image
        .children
        .iter()
        .map(|c| (c, c.blob.digest.to_string()));
    for (manifest, reference) in children.chain([(&image.top, top_reference)]) {
        let digest = &manifest.blob.digest;
        let shown = match reference.starts_with("sha256:") {
            true => format!("{repo}@{reference}"),
            false => format!("{repo}:{reference}"),
        };
        let what = format!("manifest {shown}");
        let existed = registry
            .manifest_digest(repo, &reference)
            .map_err(|e| PushError::from_fetch(e, &what))?
            .is_some_and(|d| &d == digest);
        if !existed && !dry_run {
            registry
                .put_manifest(repo, &reference, &manifest.blob.media_type, &manifest.bytes)
                .map_err(|e| PushError::from_fetch(e, &format!("{what} ({digest})")))?;
        }
        done.push(Action::Manifest {
            reference: shown,
            digest: digest.clone(),
            existed,
        });
    }
    Ok(done)
}

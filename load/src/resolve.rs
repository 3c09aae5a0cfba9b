//! From an archive's metadata to the images in it, whatever tool wrote it.
//!
//! Two kinds of metadata exist, often side by side:
//!
//! - `index.json` (OCI layout: skopeo/crane/regctl OCI archives, Docker ≥ 25, ferry): walked
//!   from the top, through nested indexes, choosing the wanted platform as `fetch` does and
//!   skipping attestations. Blobs of other platforms may be missing. Names come from the
//!   descriptor's `io.containerd.image.name`, else from `org.opencontainers.image.ref.name`
//!   when that is a full name (Docker 25+ puts only the tag there).
//! - `manifest.json` (`docker load`'s list: every Docker version, skopeo/podman
//!   docker-archive, crane tarballs): `Config` and `Layers` are paths inside the archive,
//!   followed through symlinks; `RepoTags` names the image. Such images have no manifest blob,
//!   so one is written for them (schema2, layers as stored), which makes `ferry save` of them
//!   possible.
//!
//! When both describe the same image (same config), the index provides the manifest and
//! `manifest.json` adds its names: hybrid archives keep every name (podman#10809 loses them).

use std::collections::HashSet;

use ferry_oci::archive::{BlobRef, DockerManifestEntry, INDEX_JSON, MANIFEST_JSON, annotated_name};
use ferry_oci::media_type::{self, Kind};
use ferry_oci::platform::is_attestation;
use ferry_oci::spec::{Descriptor, ImageIndex, ImageManifest};
use ferry_oci::{Digest, DigestError, ImageConfig, ImageReference, Platform, digest};
use serde::Deserialize;

use crate::compression::Format;
use crate::error::{LayerError, LoadError};
use crate::path;
use crate::scan::{Contents, FileEntry};

/// How deep indexes may nest before the archive is refused.
const MAX_NESTING: usize = 4;

/// One image found in an archive.
#[derive(Debug, Clone)]
pub struct ArchiveImage {
    /// Every name the archive gives it (possibly none).
    pub names: Vec<ImageReference>,
    /// The manifest (as stored, or written by ferry when the archive has none).
    pub manifest: BlobRef,
    /// The manifest's bytes.
    pub manifest_bytes: Vec<u8>,
    /// Whether ferry wrote the manifest (`manifest.json`-only archives).
    pub synthesized: bool,
    /// The config; its digest is the image ID.
    pub config: BlobRef,
    /// The config's bytes.
    pub config_bytes: Vec<u8>,
    /// The platform the config declares.
    pub platform: Platform,
    /// When the image was built, as the config says.
    pub created: Option<String>,
    /// The layers, bottom first.
    pub layers: Vec<ArchiveLayer>,
}

impl ArchiveImage {
    /// The image ID: the config's digest.
    pub fn id(&self) -> &Digest {
        &self.config.digest
    }

    /// The first name, else the short ID, for messages.
    pub fn label(&self) -> String {
        match self.names.first() {
            Some(n) => n.familiar_tagged().unwrap_or_else(|| n.to_string()),
            None => short_id(self.id()),
        }
    }
}

/// One layer of an archive image.
#[derive(Debug, Clone)]
pub struct ArchiveLayer {
    /// The blob as stored in the archive.
    pub blob: BlobRef,
    /// Its entry in the archive (after following links).
    pub path: String,
    /// What its decompressed content must hash to, from the config.
    pub diff_id: Digest,
}

/// `sha256:0123456789ab`, the short form of an ID.
pub fn short_id(d: &Digest) -> String {
    format!(
        "{}:{}",
        d.algorithm(),
        &d.digest()[..12.min(d.digest().len())]
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Layers must be present.
    Full,
    /// Layers may still be on their way (they follow the metadata).
    Plan,
}

/// The images of a fully read archive, for `platform`. Layer contents are checked
/// separately by [`check_layers`].
pub fn resolve(
    contents: &Contents,
    platform: &Platform,
    notices: &mut Vec<String>,
) -> Result<Vec<ArchiveImage>, LoadError> {
    resolve_in(contents, platform, Mode::Full, notices)
}

/// The archive paths the chosen images need, when the metadata at the start of the archive
/// already says so (ferry's archives); `None` while that is not certain.
pub fn plan(contents: &Contents, platform: &Platform) -> Option<HashSet<String>> {
    if !contents.files.contains_key(INDEX_JSON) || !contents.files.contains_key(MANIFEST_JSON) {
        return None;
    }
    let images = resolve_in(contents, platform, Mode::Plan, &mut Vec::new()).ok()?;
    let mut needed: HashSet<String> = [INDEX_JSON, MANIFEST_JSON]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for img in &images {
        if img.synthesized {
            return None;
        }
        needed.insert(digest::blob_path(&img.manifest.digest));
        needed.insert(digest::blob_path(&img.config.digest));
        needed.extend(img.layers.iter().map(|l| l.path.clone()));
    }
    // manifest.json must not point anywhere the index does not: otherwise it is not certain.
    let entries = manifest_json(contents).ok()??;
    for e in entries {
        if named_by_index(&e, &images) {
            continue;
        }
        for l in e.layers.iter().chain([&e.config]) {
            if !needed.contains(l.as_str()) {
                return None;
            }
        }
    }
    Some(needed)
}

fn resolve_in(
    contents: &Contents,
    platform: &Platform,
    mode: Mode,
    notices: &mut Vec<String>,
) -> Result<Vec<ArchiveImage>, LoadError> {
    let index = small(contents, INDEX_JSON, mode)?;
    let docker = manifest_json(contents)?;
    if index.is_none() && docker.is_none() {
        return Err(LoadError::NotAnArchive(
            "it has neither manifest.json nor index.json".into(),
        ));
    }
    let mut images: Vec<ArchiveImage> = Vec::new();
    if let Some(bytes) = index {
        from_index(contents, bytes, platform, mode, notices, &mut images)?;
    }
    for entry in docker.unwrap_or_default() {
        from_manifest_json(contents, &entry, mode, notices, &mut images)?;
    }
    if images.is_empty() {
        return Err(LoadError::NoImages);
    }
    Ok(images)
}

/// Whether index.json already chose an image for every name of a manifest.json entry: a
/// multi-platform archive lists only its default platform there, for `docker load`, while the
/// index chose the wanted one.
fn named_by_index(entry: &DockerManifestEntry, images: &[ArchiveImage]) -> bool {
    !entry.repo_tags.is_empty()
        && entry.repo_tags.iter().all(|t| {
            t.parse::<ImageReference>()
                .is_ok_and(|n| images.iter().any(|i| i.names.contains(&n)))
        })
}

/// The images `index.json` names (see the module comment), added to `images`.
fn from_index(
    contents: &Contents,
    bytes: &[u8],
    platform: &Platform,
    mode: Mode,
    notices: &mut Vec<String>,
    images: &mut Vec<ArchiveImage>,
) -> Result<(), LoadError> {
    let index: ImageIndex = parse_json(bytes, INDEX_JSON)?;
    for d in index.manifests() {
        let names: Vec<ImageReference> = annotated_name(d.annotations().as_ref())
            .into_iter()
            .collect();
        let what = names
            .first()
            .map(|n| n.to_string())
            .unwrap_or_else(|| format!("index.json entry {}", d.digest()));
        let Some(manifest) = choose(contents, d, platform, &what, 0, &mut Vec::new())? else {
            continue;
        };
        let Some(mut img) = image_from_manifest(contents, &manifest, &what, mode, notices)? else {
            continue;
        };
        match images
            .iter_mut()
            .find(|i| i.manifest.digest == img.manifest.digest)
        {
            Some(same) => add_names(&mut same.names, names),
            None => {
                img.names = names;
                images.push(img);
            }
        }
    }
    Ok(())
}

/// The image one `manifest.json` entry describes: its names added to the same image from the
/// index, or a new image with a manifest written by ferry.
fn from_manifest_json(
    contents: &Contents,
    entry: &DockerManifestEntry,
    mode: Mode,
    notices: &mut Vec<String>,
    images: &mut Vec<ArchiveImage>,
) -> Result<(), LoadError> {
    let config_path = inside(&entry.config)?;
    let mut names = Vec::new();
    for tag in &entry.repo_tags {
        match tag.parse::<ImageReference>() {
            Ok(r) => names.push(r),
            Err(e) => notices.push(format!("ignoring the name `{tag}` in manifest.json: {e}")),
        }
    }
    if named_by_index(entry, images) {
        return Ok(());
    }
    let (config_at, config_file) = present(contents, &config_path, "config", mode)?;
    let Some(config_digest) = config_file.and_then(|f| f.digest.clone()) else {
        return Ok(());
    };
    if let Some(same) = images.iter_mut().find(|i| i.config.digest == config_digest) {
        add_names(&mut same.names, names);
        return Ok(());
    }
    if mode == Mode::Plan {
        return Err(LoadError::Missing {
            what: "a manifest for a manifest.json image".into(),
        });
    }
    let config_file = config_file.expect("present in full mode");
    let config_bytes = config_file.data.clone().ok_or_else(|| LoadError::Invalid {
        what: format!("config `{config_at}`"),
        source: "too large, or not JSON".into(),
    })?;
    let config = parse_config(&config_bytes, &format!("config `{config_at}`"))?;
    if config.diff_ids.len() != entry.layers.len() {
        return Err(LoadError::Invalid {
            what: format!("manifest.json entry for {config_digest}"),
            source: format!(
                "it lists {} layers, its config {} diff_ids",
                entry.layers.len(),
                config.diff_ids.len()
            )
            .into(),
        });
    }
    let layers = entry
        .layers
        .iter()
        .zip(&config.diff_ids)
        .enumerate()
        .map(|(i, (path, diff_id))| {
            let what = format!("layer {} of {config_digest}", i + 1);
            docker_layer(contents, path, diff_id, &what)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config_ref = BlobRef {
        digest: config_digest,
        size: config_bytes.len() as u64,
        media_type: media_type::DOCKER_CONFIG.into(),
    };
    let manifest_bytes = synthesize_manifest(&config_ref, &layers);
    images.push(ArchiveImage {
        names,
        manifest: BlobRef {
            digest: digest::sha256(&manifest_bytes),
            size: manifest_bytes.len() as u64,
            media_type: media_type::DOCKER_MANIFEST.into(),
        },
        manifest_bytes,
        synthesized: true,
        config: config_ref,
        config_bytes,
        platform: config.platform,
        created: config.created,
        layers,
    });
    Ok(())
}

/// A path `manifest.json` names, confined to the archive.
fn inside(path: &str) -> Result<String, LoadError> {
    path::archive_path("", path).map_err(|e| LoadError::Unsafe {
        entry: MANIFEST_JSON.into(),
        reason: format!("names `{path}` ({e}): paths must stay inside the archive"),
    })
}

/// One layer of a `manifest.json` image: the archive entry at `path` (links followed).
fn docker_layer(
    contents: &Contents,
    path: &str,
    diff_id: &Digest,
    what: &str,
) -> Result<ArchiveLayer, LoadError> {
    let clean = inside(path)?;
    let (at, file) = present(contents, &clean, what, Mode::Full)?;
    let file = file.expect("present in full mode");
    let digest = file.digest.clone().ok_or_else(|| LoadError::Missing {
        what: format!("layer `{at}`"),
    })?;
    let format = file
        .layer
        .as_ref()
        .map(|l| l.format)
        .unwrap_or(Format::Other);
    Ok(ArchiveLayer {
        blob: BlobRef {
            digest,
            size: file.size,
            media_type: layer_media_type(format).into(),
        },
        path: at,
        diff_id: diff_id.clone(),
    })
}

/// Checks every layer of `images` against what the scan saw: unpacked without error, and
/// hashing to its diff_id. Takes the layer errors out of `contents` to return them.
pub fn check_layers(contents: &mut Contents, images: &[ArchiveImage]) -> Result<(), LoadError> {
    for img in images {
        for (i, layer) in img.layers.iter().enumerate() {
            let file = contents
                .files
                .get_mut(&layer.path)
                .ok_or_else(|| LoadError::Missing {
                    what: format!("layer `{}`", layer.path),
                })?;
            let fail = |source: LayerError| LoadError::Layer {
                image: img.label(),
                blob: layer.blob.digest.to_string(),
                path: layer.path.clone(),
                source: Box::new(source),
            };
            let Some(outcome) = file.layer.as_mut() else {
                return Err(fail(LayerError::NotALayer));
            };
            if outcome.result.is_err() {
                let err = std::mem::replace(&mut outcome.result, Ok(Default::default()));
                return Err(fail(err.expect_err("checked")));
            }
            if let Some(actual) = &outcome.diff_id
                && actual != &layer.diff_id
            {
                return Err(LoadError::DiffId {
                    image: img.label(),
                    index: i + 1,
                    blob: Box::new(layer.blob.digest.clone()),
                    expected: Box::new(layer.diff_id.clone()),
                    actual: Box::new(actual.clone()),
                });
            }
        }
    }
    Ok(())
}

/// The chain ID of each layer (the key of its snapshot): the first layer's diff_id, then
/// `sha256(parent + " " + diff_id)`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => digest::sha256(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

fn add_names(into: &mut Vec<ImageReference>, names: Vec<ImageReference>) {
    for n in names {
        if !into.contains(&n) {
            into.push(n);
        }
    }
}

fn small<'a>(
    contents: &'a Contents,
    path: &str,
    mode: Mode,
) -> Result<Option<&'a [u8]>, LoadError> {
    let Some((_, f)) = contents.file(path) else {
        return Ok(None);
    };
    match &f.data {
        Some(d) => Ok(Some(d)),
        None if mode == Mode::Plan => Err(LoadError::Missing { what: path.into() }),
        None => Err(LoadError::Invalid {
            what: path.into(),
            source: "too large, or not JSON".into(),
        }),
    }
}

fn manifest_json(contents: &Contents) -> Result<Option<Vec<DockerManifestEntry>>, LoadError> {
    match small(contents, MANIFEST_JSON, Mode::Full)? {
        Some(b) => Ok(Some(parse_json(b, MANIFEST_JSON)?)),
        None => Ok(None),
    }
}

fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, LoadError> {
    serde_json::from_slice(bytes).map_err(|e| LoadError::Invalid {
        what: what.to_string(),
        source: Box::new(e),
    })
}

/// A file the metadata names; in plan mode it may not have arrived yet (`None`).
fn present<'a>(
    contents: &'a Contents,
    path: &str,
    what: &str,
    mode: Mode,
) -> Result<(String, Option<&'a FileEntry>), LoadError> {
    match contents.file(path) {
        Some((at, f)) if f.digest.is_some() => Ok((at.to_string(), Some(f))),
        Some((at, _)) if mode == Mode::Plan => Ok((at.to_string(), None)),
        _ if mode == Mode::Plan => Ok((path.to_string(), None)),
        _ => Err(LoadError::Missing {
            what: format!("{what} (`{path}`)"),
        }),
    }
}

/// A blob of the OCI layout, checked against its descriptor's size.
fn blob<'a>(
    contents: &'a Contents,
    d: &Descriptor,
    what: &str,
) -> Result<Option<&'a FileEntry>, LoadError> {
    let digest = digest::parse(d.digest().as_ref()).map_err(|e| LoadError::Invalid {
        what: what.into(),
        source: Box::new(e),
    })?;
    let Some((_, f)) = contents.blob(&digest) else {
        return Ok(None);
    };
    if f.size != d.size() {
        return Err(LoadError::Corrupt {
            what: format!("{what} ({digest})"),
            source: DigestError::Size {
                expected: d.size(),
                actual: f.size,
            },
        });
    }
    Ok(Some(f))
}

/// Follows `d` down to one image manifest for `wanted`.
fn choose(
    contents: &Contents,
    d: &Descriptor,
    wanted: &Platform,
    what: &str,
    depth: usize,
    available: &mut Vec<String>,
) -> Result<Option<Descriptor>, LoadError> {
    match media_type::kind(d.media_type().as_ref()) {
        Kind::Manifest => Ok(Some(d.clone())),
        Kind::Index => {
            if depth >= MAX_NESTING {
                return Err(LoadError::Invalid {
                    what: what.into(),
                    source: format!("indexes nested deeper than {MAX_NESTING} levels").into(),
                });
            }
            let f = blob(contents, d, &format!("index of {what}"))?.ok_or_else(|| {
                LoadError::Missing {
                    what: format!("index {} of {what}", d.digest()),
                }
            })?;
            let bytes = f.data.as_deref().ok_or_else(|| LoadError::Missing {
                what: format!("index {} of {what}", d.digest()),
            })?;
            let index: ImageIndex = parse_json(bytes, &format!("index {} of {what}", d.digest()))?;
            for m in index.manifests() {
                if is_attestation(m) {
                    continue;
                }
                if media_type::kind(m.media_type().as_ref()) == Kind::Index {
                    if let Some(found) = choose(contents, m, wanted, what, depth + 1, available)? {
                        return Ok(Some(found));
                    }
                    continue;
                }
                let Some(p) = m.platform().as_ref().map(Platform::from_spec) else {
                    continue;
                };
                available.push(p.to_string());
                if wanted.matches(&p) {
                    return Ok(Some(m.clone()));
                }
            }
            if depth > 0 {
                return Ok(None);
            }
            available.dedup();
            Err(LoadError::NoPlatform {
                image: what.into(),
                wanted: wanted.to_string(),
                available: std::mem::take(available),
            })
        }
        _ => Ok(None),
    }
}

fn image_from_manifest(
    contents: &Contents,
    d: &Descriptor,
    what: &str,
    mode: Mode,
    notices: &mut Vec<String>,
) -> Result<Option<ArchiveImage>, LoadError> {
    let manifest_what = format!("manifest {} of {what}", d.digest());
    let f = blob(contents, d, &manifest_what)?.ok_or_else(|| LoadError::Missing {
        what: manifest_what.clone(),
    })?;
    let bytes = f.data.clone().ok_or_else(|| LoadError::Missing {
        what: manifest_what.clone(),
    })?;
    let manifest: ImageManifest = parse_json(&bytes, &manifest_what)?;
    let cd = manifest.config();
    let config_mt = cd.media_type().to_string();
    if config_mt != media_type::OCI_CONFIG && config_mt != media_type::DOCKER_CONFIG {
        notices.push(format!(
            "skipping {what}: it is not an image (config type `{config_mt}`)"
        ));
        return Ok(None);
    }
    let config_what = format!("config {} of {what}", cd.digest());
    let cf = blob(contents, cd, &config_what)?.ok_or_else(|| LoadError::Missing {
        what: config_what.clone(),
    })?;
    let config_bytes = cf.data.clone().ok_or_else(|| LoadError::Missing {
        what: config_what.clone(),
    })?;
    let config = parse_config(&config_bytes, &config_what)?;
    if config.diff_ids.len() != manifest.layers().len() {
        return Err(LoadError::Invalid {
            what: manifest_what,
            source: format!(
                "it lists {} layers, its config {} diff_ids",
                manifest.layers().len(),
                config.diff_ids.len()
            )
            .into(),
        });
    }
    let mut layers = Vec::new();
    for (i, (l, diff_id)) in manifest.layers().iter().zip(&config.diff_ids).enumerate() {
        let layer_what = format!("layer {} of {what}", i + 1);
        let digest = digest::parse(l.digest().as_ref()).map_err(|e| LoadError::Invalid {
            what: layer_what.clone(),
            source: Box::new(e),
        })?;
        let found = blob(contents, l, &layer_what)?;
        let path = match found {
            Some(_) => contents
                .blob(&digest)
                .map(|(p, _)| p.to_string())
                .expect("found above"),
            None if mode == Mode::Plan => digest::blob_path(&digest),
            None => {
                return Err(LoadError::Missing {
                    what: format!("{layer_what} ({digest})"),
                });
            }
        };
        layers.push(ArchiveLayer {
            blob: BlobRef {
                digest,
                size: l.size(),
                media_type: l.media_type().to_string(),
            },
            path,
            diff_id: diff_id.clone(),
        });
    }
    Ok(Some(ArchiveImage {
        names: Vec::new(),
        manifest: BlobRef {
            digest: digest::parse(d.digest().as_ref()).map_err(|e| LoadError::Invalid {
                what: manifest_what.clone(),
                source: Box::new(e),
            })?,
            size: bytes.len() as u64,
            media_type: d.media_type().to_string(),
        },
        manifest_bytes: bytes,
        synthesized: false,
        config: BlobRef {
            digest: digest::parse(cd.digest().as_ref()).map_err(|e| LoadError::Invalid {
                what: config_what,
                source: Box::new(e),
            })?,
            size: config_bytes.len() as u64,
            media_type: config_mt,
        },
        config_bytes,
        platform: config.platform,
        created: config.created,
        layers,
    }))
}

/// An image config, which a loader needs to list its layers (`rootfs`).
fn parse_config(bytes: &[u8], what: &str) -> Result<ImageConfig, LoadError> {
    let invalid = |source: Box<dyn std::error::Error + Send + Sync>| LoadError::Invalid {
        what: what.into(),
        source,
    };
    let config = ImageConfig::parse(bytes).map_err(|e| invalid(Box::new(e)))?;
    if !config.has_rootfs {
        return Err(invalid("it has no `rootfs`".into()));
    }
    Ok(config)
}

/// The media type a manifest written by ferry gives a layer stored in `format`.
fn layer_media_type(format: Format) -> &'static str {
    match format {
        Format::Gzip => media_type::DOCKER_LAYER_GZIP,
        Format::Zstd => media_type::OCI_LAYER_ZSTD,
        _ => "application/vnd.docker.image.rootfs.diff.tar",
    }
}

/// A Docker schema2 manifest for an image that came without one.
fn synthesize_manifest(config: &BlobRef, layers: &[ArchiveLayer]) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            serde_json::json!({
                "mediaType": l.blob.media_type,
                "size": l.blob.size,
                "digest": l.blob.digest.to_string(),
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::DOCKER_MANIFEST,
        "config": {
            "mediaType": config.media_type,
            "size": config.size,
            "digest": config.digest.to_string(),
        },
        "layers": layers,
    }))
    .expect("a manifest serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = digest::sha256(b"a");
        let b = digest::sha256(b"b");
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], digest::sha256(format!("{a} {b}").as_bytes()));
    }
}

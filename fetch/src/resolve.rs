//! From an image reference to one platform's manifest, config and layer list.
//!
//! A tag may name an index (one manifest per platform, possibly nested, possibly with
//! attestation manifests beside the images) or a single manifest. Either way the result is the
//! manifest for the wanted platform, its config, and the descriptors of its layers.

use ferry_oci::archive::{BlobRef, ImageRecord};
use ferry_oci::media_type::Kind;
use ferry_oci::platform::is_attestation;
use ferry_oci::spec::{ImageIndex, ImageManifest};
use ferry_oci::{ImageConfig, ImageReference, Platform, PlatformChoice, digest};

use crate::error::FetchError;
use crate::registry::{FetchedManifest, Registry};

/// Image configs larger than this are refused; real ones are a few KiB.
pub(crate) const CONFIG_LIMIT: u64 = 64 * 1024 * 1024;
/// How deep indexes may nest before ferry gives up (a loop, or a hostile registry).
pub(crate) const MAX_NESTING: usize = 4;

/// A resolved image: what goes into the archive, with the small blobs already in memory.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The archive's view of the image.
    pub record: ImageRecord,
    /// The platform manifest's bytes.
    pub manifest_bytes: Vec<u8>,
    /// The config's bytes.
    pub config_bytes: Vec<u8>,
    /// Whether the manifest was picked out of an index by its platform entry.
    pub chosen_from_index: bool,
}

/// Every image of `reference` that `choice` takes, with what else the archive keeps of a
/// multi-platform image.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// One per chosen platform, the default one first.
    pub images: Vec<ResolvedImage>,
    /// Small documents the archive keeps besides the images' manifests and configs: the
    /// index, nested indexes, attestation manifests.
    pub extra_small: Vec<(BlobRef, Vec<u8>)>,
    /// Blobs to download besides the images' layers: attestations' configs and layers.
    pub extra_blobs: Vec<BlobRef>,
}

/// Resolves `reference` on `registry` for the platforms `choice` takes.
pub fn resolve_choice(
    registry: &Registry,
    reference: &ImageReference,
    choice: &PlatformChoice,
) -> Result<Resolved, FetchError> {
    let single = |image| Resolved {
        images: vec![image],
        extra_small: Vec::new(),
        extra_blobs: Vec::new(),
    };
    if let PlatformChoice::One(platform) = choice {
        return resolve(registry, reference, platform).map(single);
    }
    let top = registry.manifest(reference.repository(), &reference.manifest_reference())?;
    match top.kind {
        Kind::Index => crate::multi::resolve_index(registry, reference, top, choice),
        _ => {
            // A single-platform image: taken when its platform is among the chosen.
            let image = image_from(registry, reference, top, None)?;
            let found = image.record.platform.clone().unwrap_or_default();
            if !choice.takes(&found) {
                return Err(FetchError::PlatformMismatch {
                    reference: reference.to_string(),
                    wanted: choice.to_string(),
                    found: found.to_string(),
                });
            }
            Ok(single(image))
        }
    }
}

/// Resolves `reference` for `platform` on `registry`.
pub fn resolve(
    registry: &Registry,
    reference: &ImageReference,
    platform: &Platform,
) -> Result<ResolvedImage, FetchError> {
    let repo = reference.repository();
    let top = registry.manifest(repo, &reference.manifest_reference())?;
    let (manifest, chosen_platform) = match top.kind {
        Kind::Manifest => (top, None),
        Kind::Index => {
            let mut available = Vec::new();
            match choose(registry, reference, &top, platform, 0, &mut available)? {
                Some((m, p)) => (m, Some(p)),
                None => {
                    available.dedup();
                    return Err(FetchError::NoPlatform {
                        reference: reference.to_string(),
                        wanted: platform.to_string(),
                        available,
                    });
                }
            }
        }
        Kind::Schema1 => {
            return Err(FetchError::Schema1 {
                reference: reference.to_string(),
            });
        }
        Kind::Other => {
            return Err(FetchError::Invalid {
                what: format!("manifest of {reference}"),
                source: format!("unexpected media type `{}`", top.media_type).into(),
            });
        }
    };
    let image = image_from(registry, reference, manifest, chosen_platform)?;
    // A single-platform image for another platform would only fail later, on the server.
    if let Some(found) = image.record.platform.as_ref()
        && !image.chosen_from_index
        && !platform.matches(found)
    {
        return Err(FetchError::PlatformMismatch {
            reference: reference.to_string(),
            wanted: platform.to_string(),
            found: found.to_string(),
        });
    }
    Ok(image)
}

/// The image of one platform manifest: its config fetched, its layers listed. `chosen` is
/// the platform its index entry declared, when it came from an index.
pub(crate) fn image_from(
    registry: &Registry,
    reference: &ImageReference,
    manifest: FetchedManifest,
    chosen: Option<Platform>,
) -> Result<ResolvedImage, FetchError> {
    match manifest.kind {
        Kind::Schema1 => {
            return Err(FetchError::Schema1 {
                reference: reference.to_string(),
            });
        }
        Kind::Manifest => {}
        _ => {
            return Err(FetchError::Invalid {
                what: format!("manifest of {reference}"),
                source: format!("unexpected media type `{}`", manifest.media_type).into(),
            });
        }
    }
    let repo = reference.repository();
    let parsed: ImageManifest = parse_fetched(&manifest, "manifest", reference)?;
    let config_desc = parsed.config();
    let config = blob_ref(
        config_desc.digest().as_ref(),
        config_desc.size(),
        config_desc.media_type().to_string(),
    )?;
    let config_bytes = registry.small_blob(repo, &config.digest, config.size, CONFIG_LIMIT)?;
    let image_platform = ImageConfig::parse(&config_bytes)
        .map_err(|e| FetchError::Invalid {
            what: format!("config {} of {reference}", config.digest),
            source: Box::new(e),
        })?
        .platform;
    let layers = parsed
        .layers()
        .iter()
        .map(|l| blob_ref(l.digest().as_ref(), l.size(), l.media_type().to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let chosen_from_index = chosen.is_some();
    Ok(ResolvedImage {
        record: ImageRecord {
            reference: Some(reference.clone()),
            manifest: BlobRef {
                digest: manifest.digest.clone(),
                size: manifest.bytes.len() as u64,
                media_type: manifest.media_type.clone(),
            },
            platform: Some(chosen.unwrap_or(image_platform)),
            config,
            layers,
            index: None,
        },
        manifest_bytes: manifest.bytes,
        config_bytes,
        chosen_from_index,
    })
}

/// Picks the manifest for `wanted` out of an index, descending into nested indexes.
pub(crate) fn choose(
    registry: &Registry,
    reference: &ImageReference,
    index: &FetchedManifest,
    wanted: &Platform,
    depth: usize,
    available: &mut Vec<String>,
) -> Result<Option<(FetchedManifest, Platform)>, FetchError> {
    let parsed: ImageIndex = parse_fetched(index, "index", reference)?;
    for desc in parsed.manifests() {
        if is_attestation(desc) {
            continue;
        }
        let kind = ferry_oci::media_type::kind(desc.media_type().as_ref());
        let platform = desc.platform().as_ref().map(Platform::from_spec);
        let fetch = |registry: &Registry| -> Result<FetchedManifest, FetchError> {
            let d = digest::parse(desc.digest().as_ref()).map_err(|e| FetchError::Invalid {
                what: format!("index {} of {reference}", index.digest),
                source: Box::new(e),
            })?;
            let blob = BlobRef {
                digest: d,
                size: desc.size(),
                media_type: desc.media_type().to_string(),
            };
            fetch_listed(registry, reference, &blob)
        };
        match kind {
            Kind::Index if depth < MAX_NESTING => {
                let nested = fetch(registry)?;
                if let Some(found) =
                    choose(registry, reference, &nested, wanted, depth + 1, available)?
                {
                    return Ok(Some(found));
                }
            }
            Kind::Index => {
                return Err(FetchError::Invalid {
                    what: format!("index {} of {reference}", index.digest),
                    source: format!("indexes nested deeper than {MAX_NESTING} levels").into(),
                });
            }
            _ => {
                let Some(platform) = platform else { continue };
                available.push(platform.to_string());
                if wanted.matches(&platform) {
                    let m = fetch(registry)?;
                    if m.kind != Kind::Manifest {
                        return Err(FetchError::Invalid {
                            what: format!("manifest {} of {reference}", m.digest),
                            source: format!("index entry for {platform} is a `{}`", m.media_type)
                                .into(),
                        });
                    }
                    return Ok(Some((m, platform)));
                }
            }
        }
    }
    Ok(None)
}

/// Parses a fetched index or manifest (`what` says which, for the error).
pub(crate) fn parse_fetched<T: serde::de::DeserializeOwned>(
    fetched: &FetchedManifest,
    what: &str,
    reference: &ImageReference,
) -> Result<T, FetchError> {
    serde_json::from_slice(&fetched.bytes).map_err(|e| FetchError::Invalid {
        what: format!("{what} {} of {reference}", fetched.digest),
        source: Box::new(e),
    })
}

/// Fetches a manifest an index lists, checked against the index's digest and size.
pub(crate) fn fetch_listed(
    registry: &Registry,
    reference: &ImageReference,
    blob: &BlobRef,
) -> Result<FetchedManifest, FetchError> {
    let m = registry.manifest(reference.repository(), blob.digest.as_ref())?;
    if m.bytes.len() as u64 != blob.size {
        return Err(FetchError::Verify {
            what: format!("manifest {}", blob.digest),
            host: registry.host().to_string(),
            source: Box::new(ferry_oci::DigestError::Size {
                expected: blob.size,
                actual: m.bytes.len() as u64,
            }),
        });
    }
    Ok(m)
}

pub(crate) fn blob_ref(digest: &str, size: u64, media_type: String) -> Result<BlobRef, FetchError> {
    let digest = digest::parse(digest).map_err(|e| FetchError::Invalid {
        what: "descriptor".into(),
        source: Box::new(e),
    })?;
    Ok(BlobRef {
        digest,
        size,
        media_type,
    })
}

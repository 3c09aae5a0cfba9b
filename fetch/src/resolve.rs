//! From an image reference to one platform's manifest, config and layer list.
//!
//! A tag may name an index (one manifest per platform, possibly nested, possibly with
//! attestation manifests beside the images) or a single manifest. Either way the result is the
//! manifest for the wanted platform, its config, and the descriptors of its layers.

use ferry_oci::archive::{BlobRef, ImageRecord};
use ferry_oci::media_type::Kind;
use ferry_oci::platform::is_attestation;
use ferry_oci::spec::{ImageIndex, ImageManifest};
use ferry_oci::{ImageConfig, ImageReference, Platform, digest};

use crate::error::FetchError;
use crate::registry::{FetchedManifest, Registry};

/// Image configs larger than this are refused; real ones are a few KiB.
const CONFIG_LIMIT: u64 = 64 * 1024 * 1024;
/// How deep indexes may nest before ferry gives up (a loop, or a hostile registry).
const MAX_NESTING: usize = 4;

/// A resolved image: what goes into the archive, with the small blobs already in memory.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The archive's view of the image.
    pub record: ImageRecord,
    /// The platform manifest's bytes.
    pub manifest_bytes: Vec<u8>,
    /// The config's bytes.
    pub config_bytes: Vec<u8>,
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
    let parsed: ImageManifest =
        serde_json::from_slice(&manifest.bytes).map_err(|e| FetchError::Invalid {
            what: format!("manifest {} of {reference}", manifest.digest),
            source: Box::new(e),
        })?;
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
    // A single-platform image for another platform would only fail later, on the server.
    if chosen_platform.is_none() && !platform.matches(&image_platform) {
        return Err(FetchError::PlatformMismatch {
            reference: reference.to_string(),
            wanted: platform.to_string(),
            found: image_platform.to_string(),
        });
    }
    let layers = parsed
        .layers()
        .iter()
        .map(|l| blob_ref(l.digest().as_ref(), l.size(), l.media_type().to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ResolvedImage {
        record: ImageRecord {
            reference: Some(reference.clone()),
            manifest: BlobRef {
                digest: manifest.digest.clone(),
                size: manifest.bytes.len() as u64,
                media_type: manifest.media_type.clone(),
            },
            platform: Some(chosen_platform.unwrap_or(image_platform)),
            config,
            layers,
        },
        manifest_bytes: manifest.bytes,
        config_bytes,
    })
}

/// Picks the manifest for `wanted` out of an index, descending into nested indexes.
fn choose(
    registry: &Registry,
    reference: &ImageReference,
    index: &FetchedManifest,
    wanted: &Platform,
    depth: usize,
    available: &mut Vec<String>,
) -> Result<Option<(FetchedManifest, Platform)>, FetchError> {
    let parsed: ImageIndex =
        serde_json::from_slice(&index.bytes).map_err(|e| FetchError::Invalid {
            what: format!("index {} of {reference}", index.digest),
            source: Box::new(e),
        })?;
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
            let m = registry.manifest(reference.repository(), d.as_ref())?;
            if m.bytes.len() as u64 != desc.size() {
                return Err(FetchError::Verify {
                    what: format!("manifest {d}"),
                    host: registry.host().to_string(),
                    source: Box::new(ferry_oci::DigestError::Size {
                        expected: desc.size(),
                        actual: m.bytes.len() as u64,
                    }),
                });
            }
            Ok(m)
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

fn blob_ref(digest: &str, size: u64, media_type: String) -> Result<BlobRef, FetchError> {
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

//! Fetching several platforms of an image: the index is kept with its digest (so `ferry push`
//! can put it into another registry unchanged), with every chosen platform's image and the
//! attestations that describe them. With `--platform all`, every entry of the index is kept,
//! which is what a registry needs to accept the index back.

use ferry_oci::archive::BlobRef;
use ferry_oci::media_type::{self, Kind};
use ferry_oci::platform::is_attestation;
use ferry_oci::spec::{Descriptor, ImageIndex, ImageManifest};
use ferry_oci::{ImageReference, Platform, PlatformChoice, digest};

use crate::error::FetchError;
use crate::registry::{FetchedManifest, Registry};
use crate::resolve::{MAX_NESTING, Resolved, blob_ref, fetch_listed, image_from, parse_fetched};

/// Where an attestation manifest names the image it describes.
const SUBJECT_ANNOTATION: &str = "vnd.docker.reference.digest";

/// One manifest entry found while walking the index and its nested indexes.
struct Found {
    blob: BlobRef,
    platform: Option<Platform>,
    attestation: bool,
    subject: Option<String>,
}

/// Resolves the index `top` of `reference` for `choice` (several platforms, or all).
pub fn resolve_index(
    registry: &Registry,
    reference: &ImageReference,
    top: FetchedManifest,
    choice: &PlatformChoice,
) -> Result<Resolved, FetchError> {
    let top_blob = BlobRef {
        digest: top.digest.clone(),
        size: top.bytes.len() as u64,
        media_type: top.media_type.clone(),
    };
    let mut resolved = Resolved {
        images: Vec::new(),
        extra_small: Vec::new(),
        extra_blobs: Vec::new(),
    };
    let mut found = Vec::new();
    walk(registry, reference, &top, 0, &mut resolved, &mut found)?;
    resolved
        .extra_small
        .insert(0, (top_blob.clone(), top.bytes));

    let available: Vec<String> = found
        .iter()
        .filter(|f| !f.attestation)
        .filter_map(|f| f.platform.as_ref().map(Platform::to_string))
        .collect();
    // The images, in the order asked for (the default one first).
    let mut chosen: Vec<&Found> = Vec::new();
    let images = || {
        found
            .iter()
            .filter(|f| !f.attestation && f.platform.is_some())
    };
    match choice {
        PlatformChoice::Several(list) => {
            for wanted in list {
                let Some(f) = images().find(|f| wanted.matches(f.platform.as_ref().unwrap()))
                else {
                    return Err(FetchError::NoPlatform {
                        reference: reference.to_string(),
                        wanted: wanted.to_string(),
                        available,
                    });
                };
                if !chosen.iter().any(|c| c.blob.digest == f.blob.digest) {
                    chosen.push(f);
                }
            }
        }
        _ => {
            let preferred = choice.preferred();
            chosen.extend(images().filter(|f| preferred.matches(f.platform.as_ref().unwrap())));
            chosen.extend(images().filter(|f| !preferred.matches(f.platform.as_ref().unwrap())));
        }
    }
    if chosen.is_empty() {
        return Err(FetchError::NoPlatform {
            reference: reference.to_string(),
            wanted: choice.to_string(),
            available,
        });
    }
    for f in &chosen {
        let m = fetch_listed(registry, reference, &f.blob)?;
        let mut image = image_from(registry, reference, m, f.platform.clone())?;
        image.record.index = Some(top_blob.clone());
        resolved.images.push(image);
    }
    // The rest of the index: attestations of the chosen images (of every image, and anything
    // else the index lists, with `all`).
    let chosen_digests: Vec<String> = chosen.iter().map(|f| f.blob.digest.to_string()).collect();
    for f in &found {
        if chosen.iter().any(|c| c.blob.digest == f.blob.digest) {
            continue;
        }
        let keep = match choice {
            PlatformChoice::All => true,
            _ => {
                f.attestation
                    && f.subject
                        .as_ref()
                        .is_some_and(|s| chosen_digests.contains(s))
            }
        };
        if keep {
            keep_other(registry, reference, &f.blob, &mut resolved)?;
        }
    }
    Ok(resolved)
}

/// Collects the manifest entries of `index` and, recursively, of its nested indexes (kept).
fn walk(
    registry: &Registry,
    reference: &ImageReference,
    index: &FetchedManifest,
    depth: usize,
    resolved: &mut Resolved,
    found: &mut Vec<Found>,
) -> Result<(), FetchError> {
    let parsed: ImageIndex = parse_fetched(index, "index", reference)?;
    for desc in parsed.manifests() {
        let blob = descriptor_blob(desc, reference, index)?;
        if media_type::kind(desc.media_type().as_ref()) == Kind::Index {
            if depth + 1 >= MAX_NESTING {
                return Err(FetchError::Invalid {
                    what: format!("index {} of {reference}", index.digest),
                    source: format!("indexes nested deeper than {MAX_NESTING} levels").into(),
                });
            }
            let nested = fetch_listed(registry, reference, &blob)?;
            walk(registry, reference, &nested, depth + 1, resolved, found)?;
            resolved.extra_small.push((blob, nested.bytes));
            continue;
        }
        found.push(Found {
            blob,
            platform: desc.platform().as_ref().map(Platform::from_spec),
            attestation: is_attestation(desc),
            subject: desc
                .annotations()
                .as_ref()
                .and_then(|a| a.get(SUBJECT_ANNOTATION))
                .cloned(),
        });
    }
    Ok(())
}

fn descriptor_blob(
    desc: &Descriptor,
    reference: &ImageReference,
    index: &FetchedManifest,
) -> Result<BlobRef, FetchError> {
    let d = digest::parse(desc.digest().as_ref()).map_err(|e| FetchError::Invalid {
        what: format!("index {} of {reference}", index.digest),
        source: Box::new(e),
    })?;
    Ok(BlobRef {
        digest: d,
        size: desc.size(),
        media_type: desc.media_type().to_string(),
    })
}

/// Keeps an entry that is not a chosen image (an attestation, an artifact): its manifest in
/// memory, its config and layers to download.
fn keep_other(
    registry: &Registry,
    reference: &ImageReference,
    blob: &BlobRef,
    resolved: &mut Resolved,
) -> Result<(), FetchError> {
    let m = fetch_listed(registry, reference, blob)?;
    let parsed: ImageManifest =
        serde_json::from_slice(&m.bytes).map_err(|e| FetchError::Invalid {
            what: format!("manifest {} of {reference}", blob.digest),
            source: Box::new(e),
        })?;
    let config = parsed.config();
    let blobs = std::iter::once(config).chain(parsed.layers().iter());
    for d in blobs {
        let b = blob_ref(d.digest().as_ref(), d.size(), d.media_type().to_string())?;
        if !resolved.extra_blobs.contains(&b) {
            resolved.extra_blobs.push(b);
        }
    }
    resolved.extra_small.push((blob.clone(), m.bytes));
    Ok(())
}

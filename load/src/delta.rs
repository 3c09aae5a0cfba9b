//! Reading delta archives (see [`ferry_oci::archive::delta`]): archives whose
//! `ferry-delta.json` lists layers they leave out because the far side holds them.
//!
//! A load completes the archive from the store: each left-out layer the store has stands in
//! for the missing entry (its snapshot is reused, or unpacked again from the stored blob and
//! checked against its diff_id), and a layer the store lacks refuses the whole load before
//! anything is committed. `verify` and `inspect`, which have no store, check what the archive
//! holds and report what it needs.

use std::collections::HashSet;
use std::path::Path;

use ferry_oci::archive::{DELTA_JSON, DeltaInfo, NeededBlob};
use ferry_oci::media_type::{self, Compression};
use ferry_oci::{Digest, digest};

use crate::compression::Format;
use crate::error::LoadError;
use crate::locate::Located;
use crate::scan::{Contents, FileEntry, LayerOutcome, LayerStats};
use crate::split::Parts;

/// A delta archive needs blobs that are not here.
#[derive(Debug, thiserror::Error)]
#[error(
    "this delta archive leaves out {} layer{} that {where_} lacks: {}",
    missing.len(),
    if missing.len() == 1 { "" } else { "s" },
    missing.iter().map(|n| n.digest.as_str()).collect::<Vec<_>>().join(", ")
)]
pub struct DeltaError {
    /// Where they were looked for (`the store`).
    pub where_: String,
    /// The blobs.
    pub missing: Vec<NeededBlob>,
}

impl DeltaError {
    /// What to do about it.
    pub fn hint(&self) -> String {
        "a delta only loads where its base was loaded before; load the whole archive instead, or make the delta from this side's inventory (ferry inventory -o have.json, then ferry fetch --have have.json)".into()
    }
}

/// The delta marker of a scanned archive, if it is a delta.
pub fn info(contents: &Contents) -> Result<Option<DeltaInfo>, LoadError> {
    let Some((_, f)) = contents.file(DELTA_JSON) else {
        return Ok(None);
    };
    let bytes = f.data.as_deref().ok_or_else(|| LoadError::Invalid {
        what: DELTA_JSON.into(),
        source: "too large".into(),
    })?;
    DeltaInfo::parse(bytes)
        .map(Some)
        .map_err(|e| LoadError::Invalid {
            what: DELTA_JSON.into(),
            source: Box::new(e),
        })
}

/// Completes a scanned delta archive: each blob it leaves out that `have` says is held takes
/// the place of its missing entry. Fails, naming them, when some are not held (`where_` says
/// where they were looked for). Returns the delta marker, `None` for a whole archive.
pub fn provide(
    contents: &mut Contents,
    have: &dyn Fn(&Digest) -> bool,
    where_: &str,
) -> Result<Option<DeltaInfo>, LoadError> {
    let Some(delta) = info(contents)? else {
        return Ok(None);
    };
    let mut missing = Vec::new();
    for (i, need) in delta.needs.iter().enumerate() {
        let Some(blob) = need.blob() else {
            return Err(LoadError::Invalid {
                what: DELTA_JSON.into(),
                source: format!("`{}` is not a digest", need.digest).into(),
            });
        };
        if contents.blob(&blob.digest).is_some() {
            continue;
        }
        if !have(&blob.digest) {
            missing.push(need.clone());
            continue;
        }
        let format = match media_type::layer_compression(&blob.media_type) {
            Compression::Gzip => Format::Gzip,
            Compression::Zstd => Format::Zstd,
            _ => Format::Tar,
        };
        contents.files.insert(
            digest::blob_path(&blob.digest),
            FileEntry {
                // Ids of entries the archive does not hold, far from any real one.
                id: usize::MAX - i,
                size: blob.size,
                digest: Some(blob.digest.clone()),
                data: None,
                layer: Some(LayerOutcome {
                    format,
                    diff_id: None,
                    unpacked: false,
                    result: Ok(LayerStats::default()),
                    head: None,
                }),
            },
        );
    }
    if !missing.is_empty() {
        return Err(DeltaError {
            where_: where_.to_string(),
            missing,
        }
        .into());
    }
    Ok(Some(delta))
}

/// The delta marker of the archive at `parts`, read from its first entries without reading
/// the rest (ferry writes it among the metadata at the start); `None` for a whole archive, or
/// one that cannot be read in place (compressed).
pub fn peek(parts: &Parts) -> Option<DeltaInfo> {
    let located = Located::read(parts.clone()).ok()?;
    let bytes = located.read_small(DELTA_JSON).ok()??;
    DeltaInfo::parse(&bytes).ok()
}

/// Every blob the far side holds after loading the archive at `path`: the blobs in it, and,
/// for a delta, those it needed.
pub fn archive_blobs(path: &Path) -> Result<HashSet<Digest>, LoadError> {
    let parts = Parts::find(path).map_err(|e| LoadError::Open {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    let located = Located::read(parts)?;
    let mut out: HashSet<Digest> = located
        .files
        .keys()
        .filter_map(|p| crate::scan::named_digest(p))
        .collect();
    if let Some(bytes) = located.read_small(DELTA_JSON)? {
        let delta = DeltaInfo::parse(&bytes).map_err(|e| LoadError::Invalid {
            what: DELTA_JSON.into(),
            source: Box::new(e),
        })?;
        out.extend(
            delta
                .needs
                .iter()
                .filter_map(|n| n.blob())
                .map(|b| b.digest),
        );
    }
    Ok(out)
}

/// The blobs a delta needs that the store at `root` lacks.
pub fn missing_in_store(root: &Path, delta: &DeltaInfo) -> Vec<NeededBlob> {
    delta
        .needs
        .iter()
        .filter(|n| {
            n.blob()
                .is_none_or(|b| !root.join(digest::blob_path(&b.digest)).is_file())
        })
        .cloned()
        .collect()
}

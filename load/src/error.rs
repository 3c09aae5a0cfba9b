//! What can go wrong while reading an archive, unpacking a layer or using the store. Each
//! message names the operation and the object; the cause is in `source()`.

use std::io;
use std::path::PathBuf;

use ferry_oci::{Digest, DigestError, ReferenceError};

use crate::tar::TarError;

/// A failed load, verify or inspect of an archive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The archive file could not be opened.
    #[error("cannot open archive `{}`", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Reading the archive failed (I/O, or its outer compression is corrupt).
    #[error("cannot read the archive")]
    Read(#[source] io::Error),
    /// The input is not a tar archive at all.
    #[error("not an image archive: {0}")]
    NotAnArchive(String),
    /// The outer tar is damaged or truncated.
    #[error("the archive is damaged")]
    BadArchive(#[source] TarError),
    /// An entry of the archive tries to leave it, or is of a kind archives never hold.
    #[error("unsafe archive entry `{entry}`: {reason}")]
    Unsafe {
        /// The entry.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// A layer could not be unpacked (unsafe entry, corrupt compression, broken tar).
    #[error("layer {blob} (`{path}`) of {image} cannot be unpacked")]
    Layer {
        /// The image.
        image: String,
        /// The layer's blob digest.
        blob: String,
        /// Where it is in the archive.
        path: String,
        /// Why.
        #[source]
        source: Box<LayerError>,
    },
    /// Content does not match its digest or size.
    #[error("{what} is corrupt")]
    Corrupt {
        /// What was checked.
        what: String,
        /// The mismatch.
        #[source]
        source: DigestError,
    },
    /// A decompressed layer does not hash to the diff_id its config lists.
    #[error(
        "layer {index} of {image} (blob {blob}) does not match its config: diff_id should be {expected}, the content hashes to {actual}"
    )]
    DiffId {
        /// The image.
        image: String,
        /// 1-based position of the layer, bottom first.
        index: usize,
        /// The layer's blob digest.
        blob: Box<Digest>,
        /// What the config says.
        expected: Box<Digest>,
        /// What the content hashed to.
        actual: Box<Digest>,
    },
    /// Something the metadata names is not in the archive.
    #[error("{what} is missing from the archive")]
    Missing {
        /// What, and where it was expected.
        what: String,
    },
    /// A manifest, index or config could not be understood.
    #[error("{what} is not valid")]
    Invalid {
        /// What was parsed.
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The archive has metadata but no image in it.
    #[error("the archive holds no image")]
    NoImages,
    /// A multi-platform index has nothing for the wanted platform.
    #[error("{image} has no image for {wanted}; available: {}", available.join(", "))]
    NoPlatform {
        /// The index's name or digest.
        image: String,
        /// The platform asked for.
        wanted: String,
        /// What the index offers.
        available: Vec<String>,
    },
    /// Writing into the store's staging area failed.
    #[error("cannot write the staged blob")]
    Stage(#[source] io::Error),
    /// The store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A delta archive needs layers that are not here.
    #[error(transparent)]
    Delta(#[from] crate::delta::DeltaError),
}

impl LoadError {
    /// What the user can do about it, if there is something.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            LoadError::Corrupt { .. } | LoadError::DiffId { .. } | LoadError::BadArchive(_) => {
                "the archive was damaged on the way; compare `sha256sum FILE` with the FILE.sha256 that ferry fetch wrote beside it, and copy or fetch it again".into()
            }
            LoadError::Unsafe { .. } => {
                "this archive tries to write outside its own directory; it was crafted or badly broken, do not use it".into()
            }
            LoadError::Layer { source, .. } if matches!(**source, LayerError::Unsafe { .. }) => "this layer tries to write outside its snapshot; the image was crafted or badly broken, do not use it".into(),
            LoadError::NotAnArchive(_) | LoadError::NoImages => {
                "ferry load reads `docker save` output (any Docker version), OCI archives (skopeo, crane, regctl), crane tarballs and ferry fetch archives, plain or gzip/zstd/xz/bzip2-compressed".into()
            }
            LoadError::NoPlatform { available, .. } => format!(
                "choose one with --platform, e.g. --platform {}",
                available.first().map(String::as_str).unwrap_or("linux/amd64")
            ),
            LoadError::Store(e) => return e.hint(),
            LoadError::Delta(e) => e.hint(),
            _ => return None,
        })
    }
}

/// Why one layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// An entry would write outside the snapshot, or is not allowed.
    #[error("unsafe entry `{entry}`: {reason}")]
    Unsafe {
        /// The entry.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// Writing an entry failed.
    #[error("cannot {action} `{entry}`")]
    Io {
        /// `create`, `write`, …
        action: &'static str,
        /// The entry.
        entry: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The layer's tar stream is broken.
    #[error("the layer is not a valid tar stream")]
    Tar(#[source] TarError),
    /// The layer's compression is corrupt.
    #[error("cannot decompress the layer ({0})")]
    Decompress(&'static str, #[source] io::Error),
    /// The layer's content is not a tar stream at all.
    #[error("the blob is not a layer (neither a tar stream nor gzip, zstd, xz or bzip2)")]
    NotALayer,
    /// Unpacking would leave too little space on the store's filesystem.
    #[error(
        "unpacking stopped at `{entry}`: only {free} bytes would be left on the store's filesystem (at least {reserve} are kept free)"
    )]
    DiskFull {
        /// The entry being written.
        entry: String,
        /// Free bytes.
        free: u64,
        /// The reserve ferry keeps.
        reserve: u64,
    },
}

/// A failed operation on the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file operation failed.
    #[error("cannot {action} `{}`", path.display())]
    Io {
        /// `create`, `rename`, `lock`, …
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// No image has this name or ID.
    #[error("no such image: {0}")]
    NotFound(String),
    /// An ID prefix matches more than one image.
    #[error("image ID prefix `{prefix}` matches {count} images")]
    Ambiguous {
        /// What was given.
        prefix: String,
        /// How many matched.
        count: usize,
    },
    /// A container uses the image.
    #[error("image {image} is used by container {container}")]
    InUse {
        /// The image.
        image: String,
        /// The container ID.
        container: String,
    },
    /// An image given by ID has several names.
    #[error("image {image} has several names ({})", names.join(", "))]
    SeveralNames {
        /// The image ID.
        image: String,
        /// Its names.
        names: Vec<String>,
    },
    /// A name could not be parsed.
    #[error("invalid image name")]
    InvalidName(#[source] ReferenceError),
    /// A file of the store is not what ferry wrote.
    #[error("the store is damaged: {what}")]
    Damaged {
        /// What is wrong.
        what: String,
    },
}

impl StoreError {
    /// What the user can do about it, if there is something.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            StoreError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                "the store belongs to another user: run as root, or pass --root DIR (or set FERRY_ROOT) for a store of your own".into()
            }
            StoreError::NotFound(_) => "`ferry images` lists what the store holds".into(),
            StoreError::InUse { .. } => {
                "remove the container first, or pass -f to untag the image anyway (it stays until the container is gone)".into()
            }
            StoreError::SeveralNames { .. } => {
                "remove it by name, one name at a time, or pass -f to remove every name".into()
            }
            StoreError::Ambiguous { .. } => "give more characters of the ID".into(),
            StoreError::Damaged { .. } => {
                "`ferry system prune` removes what no image needs; an image whose files are damaged can be loaded again".into()
            }
            _ => return None,
        })
    }

    #[cfg(unix)]
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io {
            action,
            path,
            source,
        }
    }
}

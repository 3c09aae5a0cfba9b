//! `ferry load` and the store: archive in, verified images and unpacked layer snapshots out.
//!
//! ```text
//! archive (file or stdin; plain, gzip, zstd, xz or bzip2)
//!   ─► scan: one pass over the tar; each blob hashed, each layer decompressed, its diff_id
//!            hashed and its entries applied to a staged snapshot as it streams past
//!   ─► resolve: manifest.json / index.json → images (names, platform, config, layers)
//!   ─► verify: blob digests and sizes, diff_ids, image ID = config digest
//!   ─► commit (store lock): blobs and snapshots renamed into place, then index.json
//! ```
//!
//! Reading and verifying archives is portable (`ferry verify` and `ferry inspect` run on
//! Windows); the store ([`store`]) is Unix only.

#![forbid(unsafe_code)]

pub mod compression;
pub mod delta;
pub mod error;
pub mod graph;
pub mod layer;
pub mod locate;
pub mod path;
pub mod reporter;
pub mod resolve;
pub mod scan;
pub mod split;
pub mod tar;
pub mod verify;

#[cfg(unix)]
pub mod store;
#[cfg(unix)]
pub mod store_inventory;

pub use error::{LayerError, LoadError, StoreError};
pub use reporter::{Reporter, Silent};
pub use resolve::{ArchiveImage, ArchiveLayer};
pub use scan::host_platform;
pub use verify::{ArchiveReport, inspect, verify};

#[cfg(unix)]
pub use store::{LoadOptions, LoadedImage, Store, StoreLock, StoredImage};

//! `ferry load` and the store: archive in, verified images and unpacked layer snapshots out.
//!
//! ```text
//! archive (file or stdin; plain, gzip, zstd, xz or bzip2)
//!   ─► scan: one pass over the tar; each blob hashed and staged as it streams past, while
//!            workers behind it decompress layers, hash their diff_ids and apply their
//!            entries to staged snapshots (several layers at once, files by a pool of
//!            writers), skipping layers the store already has
//!   ─► resolve: manifest.json / index.json → images (names, platform, config, layers)
//!   ─► verify: blob digests and sizes, diff_ids, image ID = config digest
//!   ─► commit: staged data synced, then (store lock) blobs and snapshots renamed into
//!              place and synced, then index.json replaced
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

//! The vocabulary every ferry crate speaks.
//!
//! `ferry-fetch` turns a registry's answers into an archive and `ferry-load` turns an archive
//! into a store; both need the same notion of a digest, an image reference, a platform, a media
//! type and the archive layout. They are defined here once:
//!
//! - [`digest`]: parsing digests and hashing bytes while they stream past.
//! - [`config`]: the facts of an image config (platform, creation time, diff_ids).
//! - [`mod@reference`]: `[host[:port]/]name[:tag][@digest]`, normalised the way Docker does.
//! - [`platform`]: `os/arch[/variant]`, matching and choosing from an index.
//! - [`media_type`]: Docker schema2 and OCI media types and what kind of object each names.
//! - [`archive`]: the hybrid OCI-layout + `docker load` tar that fetch writes and load reads,
//!   whole, split into parts, or as a delta.
//! - [`inventory`]: what the far side holds (`have.json`), from which deltas are made.
//! - [`time`]: RFC 3339 times, as configs and Docker write them.
//!
//! Image JSON types (manifests, indexes, configs, descriptors) come from the `oci-spec` crate and
//! are re-exported as [`spec`].

#![forbid(unsafe_code)]

pub mod archive;
pub mod config;
pub mod digest;
pub mod inventory;
pub mod media_type;
pub mod platform;
pub mod reference;
pub mod time;

pub use config::ImageConfig;
pub use digest::{Digest, DigestError, Hasher, VerifyingReader};
pub use oci_spec::image as spec;
pub use platform::{Platform, PlatformChoice};
pub use reference::{ImageReference, ReferenceError};

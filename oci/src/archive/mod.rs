//! The archive ferry writes: one tar that `docker load`, containerd and ferry all accept.
//!
//! It is the hybrid layout `docker save` writes since Docker 25 (an OCI image layout plus
//! `manifest.json` and `repositories` for `docker load`), except that blobs stay exactly as the
//! registry served them, so every digest survives the trip:
//!
//! ```text
//! oci-layout            {"imageLayoutVersion":"1.0.0"}
//! index.json            one descriptor per image name, pointing at the platform manifest
//! manifest.json         [{"Config":"blobs/sha256/…","RepoTags":["…"],"Layers":["blobs/sha256/…"]}]
//! repositories          legacy name → tag → id map
//! blobs/sha256/<hex>    manifests, configs, layers; each blob once per archive
//! ```
//!
//! Metadata comes first and layers last, so a streaming reader knows what to expect before the
//! large entries pass. The layout is computed up front ([`ArchivePlan`]) because every size is
//! known from the descriptors: that lets `fetch` write downloaded bytes straight to their final
//! offset, in parallel, and lets a rerun recognise an interrupted archive as the same one.

pub mod delta;
mod layout;
mod plan;
mod write;

pub use delta::{DELTA_JSON, DeltaInfo, NeededBlob};
pub use layout::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, BlobRef, DockerManifestEntry, INDEX_JSON,
    ImageRecord, MANIFEST_JSON, OCI_LAYOUT, OCI_LAYOUT_CONTENT, REPOSITORIES, annotated_name,
};
pub use plan::{ArchivePlan, Content, Entry, PlanExtras};
pub use write::{BlobSource, publish, sync_parent, write_archive};

//! Media types of the Docker schema2 and OCI image formats, and what each one names.
//!
//! Registries say what a manifest is through `Content-Type`; the optional `mediaType` field in
//! the JSON is only a fallback. Both formats are structurally the same, so ferry classifies a
//! media type into a [`Kind`] and handles the two formats with one code path.

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (a list of manifests, one per platform).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker schema2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker foreign (non-distributable) gzip layer, used by Windows base images.
pub const DOCKER_LAYER_FOREIGN_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Docker schema1 manifest (unsigned).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema1 manifest (signed).
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The `Accept` header for manifest requests: every format ferry can read, preferred first.
///
/// Schema1 is deliberately absent: a registry that only has schema1 answers with it anyway, and
/// ferry then refuses it with a clear message instead of writing an archive nobody can load.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// What a manifest-like document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A list of platform manifests (OCI index or Docker manifest list).
    Index,
    /// A single-platform image manifest (OCI or Docker schema2).
    Manifest,
    /// A Docker schema1 manifest, which ferry refuses.
    Schema1,
    /// Anything else.
    Other,
}

/// Classifies a media type (parameters such as `; charset=utf-8` are ignored).
pub fn kind(media_type: &str) -> Kind {
    match essence(media_type) {
        OCI_INDEX | DOCKER_LIST => Kind::Index,
        OCI_MANIFEST | DOCKER_MANIFEST => Kind::Manifest,
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => Kind::Schema1,
        _ => Kind::Other,
    }
}

/// The media type without parameters, trimmed.
pub fn essence(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or("").trim()
}

/// Classifies a manifest by its JSON content, for registries whose `Content-Type` says nothing
/// useful (`application/json`, `text/plain` or missing).
pub fn kind_of_json(value: &serde_json::Value) -> Kind {
    if let Some(mt) = value.get("mediaType").and_then(|v| v.as_str()) {
        let k = kind(mt);
        if k != Kind::Other {
            return k;
        }
    }
    match value.get("schemaVersion").and_then(|v| v.as_u64()) {
        Some(1) => Kind::Schema1,
        Some(2) if value.get("manifests").is_some() => Kind::Index,
        Some(2) if value.get("layers").is_some() => Kind::Manifest,
        _ => Kind::Other,
    }
}

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
    /// Not a layer media type ferry knows; callers sniff the bytes instead.
    Unknown,
}

/// The compression a layer media type announces.
pub fn layer_compression(media_type: &str) -> Compression {
    let mt = essence(media_type);
    if mt.ends_with("+gzip") || mt.ends_with(".tar.gzip") {
        Compression::Gzip
    } else if mt.ends_with("+zstd") {
        Compression::Zstd
    } else if mt.ends_with(".tar") || mt == "application/vnd.docker.image.rootfs.diff.tar" {
        Compression::None
    } else {
        Compression::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_content_type() {
        assert_eq!(kind(OCI_INDEX), Kind::Index);
        assert_eq!(kind(DOCKER_LIST), Kind::Index);
        assert_eq!(kind(DOCKER_MANIFEST), Kind::Manifest);
        assert_eq!(
            kind(&format!("{OCI_MANIFEST}; charset=utf-8")),
            Kind::Manifest
        );
        assert_eq!(kind(DOCKER_SCHEMA1_SIGNED), Kind::Schema1);
        assert_eq!(kind("application/json"), Kind::Other);
    }

    #[test]
    fn kinds_from_json_when_content_type_is_generic() {
        let v = serde_json::json!({"schemaVersion": 2, "manifests": []});
        assert_eq!(kind_of_json(&v), Kind::Index);
        let v = serde_json::json!({"schemaVersion": 2, "config": {}, "layers": []});
        assert_eq!(kind_of_json(&v), Kind::Manifest);
        let v = serde_json::json!({"schemaVersion": 1, "fsLayers": []});
        assert_eq!(kind_of_json(&v), Kind::Schema1);
    }

    #[test]
    fn layer_compressions() {
        assert_eq!(layer_compression(DOCKER_LAYER_GZIP), Compression::Gzip);
        assert_eq!(layer_compression(OCI_LAYER_GZIP), Compression::Gzip);
        assert_eq!(layer_compression(OCI_LAYER_ZSTD), Compression::Zstd);
        assert_eq!(layer_compression(OCI_LAYER), Compression::None);
        assert_eq!(layer_compression("application/x-foo"), Compression::Unknown);
    }
}

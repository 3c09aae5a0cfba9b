//! `ferry inspect IMAGE` / `ferry image inspect`: an image as `docker image inspect` shows it
//! (its fields, in its order), plus what ferry adds: the manifest and the snapshots.

use std::collections::BTreeMap;

use anyhow::Context;
use ferry_load::store::snapshot::SnapshotInfo;
use ferry_load::{Store, StoredImage};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// Docker's `container.Config` as image configs carry it (`config`, `container_config`), in
/// Docker's field order, with its `omitempty` fields left out when empty.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DockerConfig {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Json>>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub env: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Json>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub args_escaped: bool,
    pub image: String,
    pub volumes: Option<BTreeMap<String, Json>>,
    pub working_dir: String,
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub network_disabled: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
    pub on_build: Option<Vec<String>>,
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
}

impl DockerConfig {
    /// Reads the object at `v` (absent or malformed fields stay empty, as Go's decoder leaves
    /// them).
    pub fn from_json(v: &Json) -> Option<DockerConfig> {
        v.as_object()?;
        Some(serde_json::from_value(v.clone()).unwrap_or_default())
    }
}

/// `docker image inspect`'s object.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageJson {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub parent: String,
    pub comment: String,
    pub created: String,
    pub container: String,
    pub container_config: DockerConfig,
    pub docker_version: String,
    pub author: String,
    pub config: Option<DockerConfig>,
    pub architecture: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub variant: String,
    pub os: String,
    pub size: u64,
    pub virtual_size: u64,
    pub graph_driver: GraphDriver,
    #[serde(rename = "RootFS")]
    pub root_fs: RootFs,
    pub metadata: Metadata,
    /// ferry's own: the manifest this name points at.
    pub manifest: ManifestRef,
    /// ferry's own: the layers' snapshot directories.
    pub snapshots: Snapshots,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GraphDriver {
    pub data: BTreeMap<String, String>,
    pub name: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RootFs {
    #[serde(rename = "Type")]
    pub kind: String,
    pub layers: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Metadata {
    pub last_tag_time: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestRef {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Snapshots {
    pub format: Json,
    pub layers: Vec<String>,
}

/// Docker's zero time, which it prints for times it does not know.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The object for `img`.
pub fn inspect(store: &Store, img: &StoredImage) -> anyhow::Result<Box<ImageJson>> {
    let path = store.root().join(ferry_oci::digest::blob_path(&img.id));
    let raw: Json = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
    )
    .with_context(|| format!("config {} does not parse", img.id))?;
    let text = |k: &str| raw[k].as_str().unwrap_or_default().to_string();
    let size: u64 = img
        .layers
        .iter()
        .map(|fs| {
            fs.parent()
                .and_then(SnapshotInfo::read)
                .map_or(0, |i| i.size)
        })
        .sum();
    let layers: Vec<String> = img.layers.iter().map(|l| l.display().to_string()).collect();
    let repo_digests = img
        .names
        .iter()
        .filter_map(|n| n.parse::<ferry_oci::ImageReference>().ok())
        .map(|n| format!("{}@{}", n.familiar_name(), img.manifest.digest))
        .fold(Vec::new(), |mut v, d| {
            if !v.contains(&d) {
                v.push(d);
            }
            v
        });
    Ok(Box::new(ImageJson {
        id: img.id.to_string(),
        repo_tags: img.names.clone(),
        repo_digests,
        parent: String::new(),
        comment: text("comment"),
        created: raw["created"].as_str().unwrap_or(ZERO_TIME).to_string(),
        container: text("container"),
        container_config: DockerConfig::from_json(&raw["container_config"]).unwrap_or_default(),
        docker_version: text("docker_version"),
        author: text("author"),
        config: DockerConfig::from_json(&raw["config"]),
        architecture: text("architecture"),
        variant: text("variant"),
        os: text("os"),
        size,
        virtual_size: size,
        graph_driver: GraphDriver {
            data: BTreeMap::from([("LowerDir".to_string(), {
                let mut l = layers.clone();
                l.reverse();
                l.join(":")
            })]),
            name: "ferry".into(),
        },
        root_fs: RootFs {
            kind: "layers".into(),
            layers: img.diff_ids.iter().map(|d| d.to_string()).collect(),
        },
        metadata: Metadata {
            last_tag_time: ZERO_TIME.into(),
        },
        manifest: ManifestRef {
            digest: img.manifest.digest.to_string(),
            media_type: img.manifest.media_type.to_string(),
            size: img.manifest.size,
        },
        snapshots: Snapshots {
            format: serde_json::to_value(img.snapshot_format)?,
            layers,
        },
    }))
}

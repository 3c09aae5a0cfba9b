//! What ferry reads from an image config: the platform it was built for, when, and the
//! diff_ids of its layers.
//!
//! Parsed leniently, as `docker load` does: unknown fields are ignored and missing ones take a
//! default, because configs come from every builder there is. Only the diff_ids must be valid
//! digests: they name the layers' content, which is verified against them. The full config (for
//! running a container) is [`crate::spec::ImageConfiguration`].

use serde::Deserialize;

use crate::digest::{self, Digest, DigestError};
use crate::platform::Platform;

/// The facts of an image config that fetch, load and the store use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    /// `os`, `architecture` and `variant`, normalised (`aarch64` is `arm64`).
    pub platform: Platform,
    /// `created`, as written.
    pub created: Option<String>,
    /// `rootfs.diff_ids`: the sha256 of each layer's uncompressed tar, bottom first.
    pub diff_ids: Vec<Digest>,
    /// Whether the config has a `rootfs` at all: a loader refuses one without (as `docker
    /// load` does); fetching it is fine.
    pub has_rootfs: bool,
}

/// Why a config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not JSON, or a field of the wrong type.
    #[error("the config is not valid JSON")]
    Json(#[from] serde_json::Error),
    /// A diff_id is not a digest ferry can verify.
    #[error("the config lists an invalid diff_id")]
    DiffId(#[from] DigestError),
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Deserialize, Default)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

impl ImageConfig {
    /// Parses a config's bytes.
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, ConfigError> {
        let raw: Raw = serde_json::from_slice(bytes)?;
        let has_rootfs = raw.rootfs.is_some();
        let diff_ids = raw
            .rootfs
            .unwrap_or_default()
            .diff_ids
            .iter()
            .map(|d| digest::parse(d))
            .collect::<Result<Vec<_>, _>>()?;
        let mut platform: Platform = format!("{}/{}", raw.os, raw.architecture)
            .parse()
            .unwrap_or(Platform {
                os: raw.os,
                architecture: raw.architecture,
                variant: None,
            });
        platform.variant = raw.variant.filter(|v| !v.is_empty());
        Ok(ImageConfig {
            platform,
            created: raw.created,
            diff_ids,
            has_rootfs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYER: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn reads_platform_created_and_diff_ids() {
        let c = ImageConfig::parse(
            format!(
                r#"{{"os":"linux","architecture":"aarch64","variant":"v8","created":"2024-01-01T00:00:00Z",
                    "config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["{LAYER}"]}}}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(c.platform.to_string(), "linux/arm64/v8");
        assert_eq!(c.created.as_deref(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(c.diff_ids, [digest::parse(LAYER).unwrap()]);
        assert!(c.has_rootfs);
    }

    #[test]
    fn missing_fields_default_and_bad_diff_ids_are_refused() {
        let c = ImageConfig::parse(b"{}").unwrap();
        assert!(c.diff_ids.is_empty() && c.created.is_none() && !c.has_rootfs);
        assert!(matches!(
            ImageConfig::parse(br#"{"rootfs":{"diff_ids":["sha256:xyz"]}}"#),
            Err(ConfigError::DiffId(_))
        ));
        assert!(matches!(
            ImageConfig::parse(b"[1]"),
            Err(ConfigError::Json(_))
        ));
    }
}

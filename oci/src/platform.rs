//! Platforms (`os/arch[/variant]`) and choosing one manifest out of an index.
//!
//! The default is `linux/amd64` whatever machine ferry runs on: the images are carried to a
//! Linux server, and on the Windows PC that fetches them the host's own platform is the wrong
//! answer (skopeo's host default is a known trap there).

use std::fmt;
use std::str::FromStr;

use oci_spec::image::{Descriptor, Platform as SpecPlatform};

/// The annotation BuildKit puts on attestation manifests inside an index.
pub const REFERENCE_TYPE_ANNOTATION: &str = "vnd.docker.reference.type";

/// A target platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture in Go's spelling, e.g. `amd64`, `arm64`, `arm`.
    pub architecture: String,
    /// CPU variant, e.g. `v8` for arm64 or `v7` for arm.
    pub variant: Option<String>,
}

/// Why a platform string was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid platform `{0}` (expected os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8)")]
pub struct PlatformError(String);

impl Default for Platform {
    fn default() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok) {
            return Err(PlatformError(s.to_string()));
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: normalize_arch(&parts[1].to_ascii_lowercase()).to_string(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Maps the other common spellings of an architecture to Go's.
fn normalize_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "i386" | "i686" => "386",
        "armhf" => "arm",
        other => other,
    }
}

/// The variant an architecture means when none is written (containerd's rules).
fn implied_variant(arch: &str) -> Option<&'static str> {
    match arch {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        "amd64" => Some("v1"),
        _ => None,
    }
}

impl Platform {
    /// The platform an index entry or a config declares.
    pub fn from_spec(p: &SpecPlatform) -> Self {
        Platform {
            os: p.os().to_string(),
            architecture: normalize_arch(&p.architecture().to_string()).to_string(),
            variant: p.variant().clone().filter(|v| !v.is_empty()),
        }
    }

    fn effective_variant(&self) -> Option<&str> {
        self.variant
            .as_deref()
            .or_else(|| implied_variant(&self.architecture))
    }

    /// Whether an image built for `candidate` is what the user asked for with `self`.
    ///
    /// os and architecture must be equal. A variant the user wrote must match, where a missing
    /// variant on either side means the architecture's usual one (`arm64` is `v8`). When the user
    /// wrote none, any variant of amd64 and other architectures is accepted.
    pub fn matches(&self, candidate: &Platform) -> bool {
        if self.os != candidate.os || self.architecture != candidate.architecture {
            return false;
        }
        match (self.variant.as_deref(), implied_variant(&self.architecture)) {
            (None, None) => true,
            (None, Some(_)) if self.architecture == "amd64" => true,
            _ => self.effective_variant() == candidate.effective_variant(),
        }
    }
}

/// Whether an index entry is an attestation (SBOM, provenance) rather than a runnable image.
pub fn is_attestation(descriptor: &Descriptor) -> bool {
    let by_annotation = descriptor
        .annotations()
        .as_ref()
        .and_then(|a| a.get(REFERENCE_TYPE_ANNOTATION))
        .is_some_and(|t| t == "attestation-manifest");
    let unknown_platform = descriptor.platform().as_ref().is_some_and(|p| {
        p.os().to_string() == "unknown" && p.architecture().to_string() == "unknown"
    });
    by_annotation || unknown_platform
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn default_is_linux_amd64_not_the_host() {
        assert_eq!(Platform::default().to_string(), "linux/amd64");
    }

    #[test]
    fn parses_and_normalizes() {
        assert_eq!(p("linux/x86_64").to_string(), "linux/amd64");
        assert_eq!(p("Linux/ARM64/V8").to_string(), "linux/arm64/v8");
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux/amd64/v3/x".parse::<Platform>().is_err());
        assert!("linux//v7".parse::<Platform>().is_err());
    }

    #[test]
    fn arm64_means_v8_when_no_variant_is_given() {
        assert!(p("linux/arm64").matches(&p("linux/arm64/v8")));
        assert!(p("linux/arm64/v8").matches(&p("linux/arm64")));
        assert!(!p("linux/arm64").matches(&p("linux/arm64/v9")));
    }

    #[test]
    fn arm_variants_are_distinct() {
        assert!(p("linux/arm/v7").matches(&p("linux/arm/v7")));
        assert!(!p("linux/arm/v7").matches(&p("linux/arm/v6")));
        assert!(p("linux/arm").matches(&p("linux/arm/v7")));
    }

    #[test]
    fn os_and_arch_must_match() {
        assert!(!p("linux/amd64").matches(&p("windows/amd64")));
        assert!(!p("linux/amd64").matches(&p("linux/arm64/v8")));
        assert!(p("linux/amd64").matches(&p("linux/amd64")));
    }
}

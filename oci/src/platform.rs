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

/// Which platforms of a multi-platform image to take: one (the index is left behind and the
/// archive holds that platform's image), several, or all of them (the archive keeps the index,
/// with its digest, and every chosen platform's blobs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformChoice {
    /// One platform.
    One(Platform),
    /// These platforms; the first is the default one (what `docker load` gets).
    Several(Vec<Platform>),
    /// Every platform of the index, attestations included.
    All,
}

impl Default for PlatformChoice {
    fn default() -> Self {
        PlatformChoice::One(Platform::default())
    }
}

impl FromStr for PlatformChoice {
    type Err = PlatformError;

    /// `linux/amd64`, `linux/amd64,linux/arm64`, or `all`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("all") {
            return Ok(PlatformChoice::All);
        }
        let list = s
            .split(',')
            .map(|p| p.trim().parse())
            .collect::<Result<Vec<Platform>, _>>()?;
        Ok(match <[Platform; 1]>::try_from(list) {
            Ok([one]) => PlatformChoice::One(one),
            Err(list) => PlatformChoice::Several(list),
        })
    }
}

impl fmt::Display for PlatformChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlatformChoice::One(p) => p.fmt(f),
            PlatformChoice::Several(list) => {
                let names: Vec<String> = list.iter().map(Platform::to_string).collect();
                f.write_str(&names.join(","))
            }
            PlatformChoice::All => f.write_str("all platforms"),
        }
    }
}

impl PlatformChoice {
    /// Whether an image for `candidate` is among the chosen.
    pub fn takes(&self, candidate: &Platform) -> bool {
        match self {
            PlatformChoice::One(p) => p.matches(candidate),
            PlatformChoice::Several(list) => list.iter().any(|p| p.matches(candidate)),
            PlatformChoice::All => true,
        }
    }

    /// Whether the index is kept (several or all platforms).
    pub fn keeps_index(&self) -> bool {
        !matches!(self, PlatformChoice::One(_))
    }

    /// The platform preferred as the default image: the first asked for, else `linux/amd64`.
    pub fn preferred(&self) -> Platform {
        match self {
            PlatformChoice::One(p) => p.clone(),
            PlatformChoice::Several(list) => list.first().cloned().unwrap_or_default(),
            PlatformChoice::All => Platform::default(),
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
    fn platform_choices_parse() {
        assert_eq!(
            "linux/arm64".parse::<PlatformChoice>().unwrap(),
            PlatformChoice::One(p("linux/arm64"))
        );
        assert_eq!(
            "linux/amd64, linux/arm64"
                .parse::<PlatformChoice>()
                .unwrap(),
            PlatformChoice::Several(vec![p("linux/amd64"), p("linux/arm64")])
        );
        assert_eq!(
            "ALL".parse::<PlatformChoice>().unwrap(),
            PlatformChoice::All
        );
        assert!("linux/amd64,".parse::<PlatformChoice>().is_err());
        let several = PlatformChoice::Several(vec![p("linux/arm/v7"), p("linux/amd64")]);
        assert!(several.takes(&p("linux/amd64")));
        assert!(!several.takes(&p("linux/arm/v6")));
        assert_eq!(several.preferred(), p("linux/arm/v7"));
    }

    #[test]
    fn os_and_arch_must_match() {
        assert!(!p("linux/amd64").matches(&p("windows/amd64")));
        assert!(!p("linux/amd64").matches(&p("linux/arm64/v8")));
        assert!(p("linux/amd64").matches(&p("linux/amd64")));
    }
}

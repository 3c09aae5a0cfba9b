//! Image references: `[host[:port]/]name[:tag][@digest]`, normalised the way Docker does.
//!
//! Parsing is `oci-spec`'s; this wrapper adds what ferry needs around it: the host to actually
//! talk to (`docker.io` is served by `registry-1.docker.io`), Docker's short "familiar" form for
//! `RepoTags` (`busybox:latest`), and the fully qualified form for OCI annotations.

use std::fmt;
use std::str::FromStr;

use oci_spec::distribution::Reference;

use crate::digest::{self, Digest};

/// The registry name Docker Hub images carry in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

/// An image reference that parsed and whose digest, if any, ferry can verify.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    inner: Reference,
    digest: Option<Digest>,
    /// Whether the user wrote a tag (rather than getting the implied `latest`).
    explicit_tag: bool,
}

/// Why a reference did not parse.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// Not a reference at all.
    #[error("invalid image reference `{text}`: {reason}")]
    Invalid {
        /// What the user wrote.
        text: String,
        /// Why it was refused.
        reason: String,
    },
}

impl FromStr for ImageReference {
    type Err = ReferenceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| ReferenceError::Invalid {
            text: text.to_string(),
            reason,
        };
        let inner: Reference = text.parse().map_err(|e| invalid(format!("{e}")))?;
        let digest = match inner.digest() {
            Some(d) => Some(digest::parse(d).map_err(|e| invalid(e.to_string()))?),
            None => None,
        };
        let after_name = text.rsplit('/').next().unwrap_or(text);
        let explicit_tag = after_name.split('@').next().unwrap_or("").contains(':');
        Ok(ImageReference {
            inner,
            digest,
            explicit_tag,
        })
    }
}

impl ImageReference {
    /// The registry as written in references: `docker.io`, `ghcr.io`, `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        self.inner.registry()
    }

    /// The `host[:port]` to connect to; Docker Hub's API lives on another host than its name.
    pub fn registry_host(&self) -> &str {
        match self.inner.registry() {
            DOCKER_HUB | "index.docker.io" => DOCKER_HUB_HOST,
            other => other,
        }
    }

    /// The repository path inside the registry: `library/busybox`.
    pub fn repository(&self) -> &str {
        self.inner.repository()
    }

    /// The tag, if one was written or implied (`latest` when neither tag nor digest was given).
    pub fn tag(&self) -> Option<&str> {
        if self.digest.is_some() && !self.explicit_tag {
            return None;
        }
        self.inner.tag()
    }

    /// The pinned digest, if the reference has one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, self.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".to_string(),
        }
    }

    /// `registry/repository`, fully qualified: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry(), self.repository())
    }

    /// Docker's short form of [`Self::name`]: `busybox`, `user/app`, `ghcr.io/o/app`.
    pub fn familiar_name(&self) -> String {
        if self.registry() == DOCKER_HUB {
            let repo = self.repository();
            repo.strip_prefix("library/")
                .filter(|r| !r.contains('/'))
                .unwrap_or(repo)
                .to_string()
        } else {
            self.name()
        }
    }

    /// The `name:tag` Docker shows and `docker load` accepts in `RepoTags`, if there is a tag.
    pub fn familiar_tagged(&self) -> Option<String> {
        self.tag().map(|t| format!("{}:{t}", self.familiar_name()))
    }

    /// The fully qualified reference, e.g. `docker.io/library/busybox:latest` or
    /// `docker.io/library/busybox@sha256:…` (containerd's `io.containerd.image.name`).
    pub fn qualified(&self) -> String {
        let mut s = self.name();
        if let Some(t) = self.tag() {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_ref());
        }
        s
    }

    /// The same image pinned to `digest`, keeping the tag for naming.
    pub fn with_digest(&self, digest: Digest) -> Self {
        let mut r = self.clone();
        r.explicit_tag = self.tag().is_some();
        r.digest = Some(digest);
        r
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.qualified())
    }
}

impl fmt::Debug for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageReference({})", self.qualified())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> ImageReference {
        s.parse().unwrap()
    }

    const D: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn one_part_names_are_docker_hub_library_images() {
        let x = r("busybox");
        assert_eq!(x.registry(), "docker.io");
        assert_eq!(x.registry_host(), "registry-1.docker.io");
        assert_eq!(x.repository(), "library/busybox");
        assert_eq!(x.tag(), Some("latest"));
        assert_eq!(x.qualified(), "docker.io/library/busybox:latest");
        assert_eq!(x.familiar_tagged().unwrap(), "busybox:latest");
    }

    #[test]
    fn host_with_port_is_a_registry() {
        let x = r("127.0.0.1:5000/ferry/busybox:oci");
        assert_eq!(x.registry(), "127.0.0.1:5000");
        assert_eq!(x.registry_host(), "127.0.0.1:5000");
        assert_eq!(x.repository(), "ferry/busybox");
        assert_eq!(x.manifest_reference(), "oci");
        assert_eq!(
            x.familiar_tagged().unwrap(),
            "127.0.0.1:5000/ferry/busybox:oci"
        );
        let y = r("localhost/app");
        assert_eq!(y.registry(), "localhost");
    }

    #[test]
    fn user_repositories_on_docker_hub_keep_their_namespace() {
        let x = r("docker.io/grafana/grafana:11.0.0");
        assert_eq!(x.familiar_tagged().unwrap(), "grafana/grafana:11.0.0");
        assert_eq!(x.registry_host(), "registry-1.docker.io");
    }

    #[test]
    fn digest_only_has_no_tag() {
        let x = r(&format!("busybox@{D}"));
        assert_eq!(x.tag(), None);
        assert_eq!(x.manifest_reference(), D);
        assert_eq!(x.familiar_tagged(), None);
        assert_eq!(x.qualified(), format!("docker.io/library/busybox@{D}"));
    }

    #[test]
    fn tag_and_digest_fetches_by_digest_and_keeps_the_tag() {
        let x = r(&format!("ghcr.io/o/app:1.2@{D}"));
        assert_eq!(x.tag(), Some("1.2"));
        assert_eq!(x.manifest_reference(), D);
        assert_eq!(x.familiar_tagged().unwrap(), "ghcr.io/o/app:1.2");
    }

    #[test]
    fn bad_references_are_refused() {
        for bad in ["", "ns/UPPER", "a/b:", "busybox@sha256:abc", ":tag"] {
            assert!(bad.parse::<ImageReference>().is_err(), "{bad:?} parsed");
        }
    }
}

//! Image references: `[host[:port]/]name[:tag][@digest]`, normalised the way Docker does.
//!
//! The grammar is distribution's (`reference/regexp.go`), checked by hand rather than with a
//! regular expression: compiling one costs ~90 ms at every start, more than a container run.
//! Around the parse this module adds what ferry needs: the host to actually talk to
//! (`docker.io` is served by `registry-1.docker.io`), Docker's short "familiar" form for
//! `RepoTags` (`busybox:latest`), and the fully qualified form for OCI annotations.

use std::fmt;
use std::str::FromStr;

use crate::digest::{self, Digest};

/// The registry name Docker Hub images carry in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";
/// Longest `registry/repository` Docker accepts.
const NAME_MAX: usize = 255;
/// Longest tag Docker accepts.
const TAG_MAX: usize = 128;

/// An image reference that parsed and whose digest, if any, ferry can verify.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    registry: String,
    repository: String,
    /// The tag as written, or `latest` when neither tag nor digest was written.
    tag: Option<String>,
    digest: Option<Digest>,
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
        parse(text).map_err(|reason| ReferenceError::Invalid {
            text: text.to_string(),
            reason: reason.to_string(),
        })
    }
}

fn parse(text: &str) -> Result<ImageReference, String> {
    if text.is_empty() {
        return Err("it is empty".into());
    }
    let (rest, digest) = match text.split_once('@') {
        Some((rest, d)) => (rest, Some(digest::parse(d).map_err(|e| e.to_string())?)),
        None => (text, None),
    };
    let last_slash = rest.rfind('/');
    let (name, tag) = match rest.rfind(':') {
        Some(i) if last_slash.is_none_or(|s| i > s) => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(t) = tag
        && !valid_tag(t)
    {
        return Err(format!("`{t}` is not a valid tag"));
    }
    // Docker's rule: the first component is a registry if it looks like a host name.
    let (registry, remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    };
    if !valid_registry(registry) {
        return Err(format!("`{registry}` is not a valid registry host"));
    }
    let registry = if registry == "index.docker.io" {
        DOCKER_HUB
    } else {
        registry
    };
    let repository = if registry == DOCKER_HUB && !remainder.contains('/') {
        format!("library/{remainder}")
    } else {
        remainder.to_string()
    };
    if let Some(bad) = repository.split('/').find(|c| !valid_path_component(c)) {
        return Err(if bad.chars().any(|c| c.is_ascii_uppercase()) {
            "repository names must be lowercase".into()
        } else {
            format!("`{bad}` is not a valid repository name component")
        });
    }
    if registry.len() + 1 + repository.len() > NAME_MAX {
        return Err(format!("names are limited to {NAME_MAX} characters"));
    }
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, None) => Some("latest".to_string()),
        (None, Some(_)) => None,
    };
    Ok(ImageReference {
        registry: registry.to_string(),
        repository,
        tag,
        digest,
    })
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let mut chars = t.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && t.len() <= TAG_MAX
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A lowercase alphanumeric run, then more runs joined by `.`, `_`, `__` or any number of `-`.
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        match b[i] {
            b'.' => i += 1,
            b'_' => i += if b.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// `host[:port]`, where host is dot-separated labels (`[A-Za-z0-9]`, `-` inside) or `[IPv6]`.
fn valid_registry(r: &str) -> bool {
    let (host_ok, port) = match r.strip_prefix('[') {
        Some(v6) => {
            let Some((addr, rest)) = v6.split_once(']') else {
                return false;
            };
            let port = match rest {
                "" => None,
                _ => match rest.strip_prefix(':') {
                    Some(p) => Some(p),
                    None => return false,
                },
            };
            let addr_ok = !addr.is_empty()
                && addr
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
            (addr_ok, port)
        }
        None => {
            let (host, port) = match r.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (r, None),
            };
            (!host.is_empty() && host.split('.').all(valid_label), port)
        }
    };
    host_ok && port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// A DNS label: alphanumerics, with `-` only inside.
fn valid_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
}

impl ImageReference {
    /// The registry as written in references: `docker.io`, `ghcr.io`, `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The `host[:port]` to connect to; Docker Hub's API lives on another host than its name.
    pub fn registry_host(&self) -> &str {
        match self.registry.as_str() {
            DOCKER_HUB => DOCKER_HUB_HOST,
            other => other,
        }
    }

    /// The repository path inside the registry: `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if one was written or implied (`latest` when neither tag nor digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
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
    fn registries_by_docker_rules() {
        assert_eq!(r("localhost:5000/a").registry(), "localhost:5000");
        assert_eq!(r("[::1]:5000/a/b:1").registry(), "[::1]:5000");
        assert_eq!(r("UPPER/case").registry(), "UPPER");
        assert_eq!(
            r("index.docker.io/x").qualified(),
            "docker.io/library/x:latest"
        );
        assert_eq!(r("a-b__c/d.e_f:T.1-x").repository(), "a-b__c/d.e_f");
        assert_eq!(r("a---b").repository(), "library/a---b");
    }

    #[test]
    fn bad_references_are_refused() {
        for bad in [
            "a//b",
            "a..b",
            "a/b_",
            "a/-b",
            "a___b",
            "reg.lan:/x",
            "reg.lan:5x/x",
            "bad-.host/x",
            "x:",
        ] {
            assert!(bad.parse::<ImageReference>().is_err(), "{bad:?} parsed");
        }
        assert!(
            format!("x:{}", "t".repeat(129))
                .parse::<ImageReference>()
                .is_err()
        );
        assert!(
            format!("x:{}", "t".repeat(128))
                .parse::<ImageReference>()
                .is_ok()
        );
        for bad in ["", "ns/UPPER", "a/b:", "busybox@sha256:abc", ":tag"] {
            assert!(bad.parse::<ImageReference>().is_err(), "{bad:?} parsed");
        }
    }
}

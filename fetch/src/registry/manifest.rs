//! Manifests and other small documents, read whole into memory and verified.

use std::io::Read;

use ferry_oci::digest::{self, Digest, Hasher};
use ferry_oci::media_type::{self, Kind};

use super::{Registry, header};
use crate::error::FetchError;

/// Manifests larger than this are refused (containerd uses the same limit).
const MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;

/// A manifest or index exactly as the registry served it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The raw bytes; their digest is the manifest's identity, so they are never re-serialized.
    pub bytes: Vec<u8>,
    /// The media type, from `Content-Type` or, failing that, the document itself.
    pub media_type: String,
    /// What kind of document it is.
    pub kind: Kind,
    /// The digest of `bytes`.
    pub digest: Digest,
}

impl Registry {
    /// Fetches the manifest `reference` (a tag or a digest) of `repo`.
    ///
    /// When `reference` is a digest, the bytes must hash to it. When it is a tag and the
    /// registry sends `Docker-Content-Digest`, the bytes must hash to that.
    pub fn manifest(&self, repo: &str, reference: &str) -> Result<FetchedManifest, FetchError> {
        let what = format!("manifest {repo}:{reference}").replace(":sha256:", "@sha256:");
        let resp = self.get(
            &what,
            repo,
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", media_type::MANIFEST_ACCEPT)],
        )?;
        let content_type = header(&resp, "content-type").unwrap_or_default();
        let header_digest = header(&resp, "docker-content-digest");
        let bytes = read_limited(resp, MANIFEST_LIMIT).map_err(|source| FetchError::Transfer {
            what: what.clone(),
            host: self.host.clone(),
            attempts: 1,
            source: Box::new(source),
        })?;
        let verify_err = |source| FetchError::Verify {
            what: what.clone(),
            host: self.host.clone(),
            source: Box::new(source),
        };
        let expected = match digest::parse(reference) {
            Ok(d) => Some(d),
            Err(_) => header_digest
                .as_deref()
                .and_then(|h| digest::parse(h.trim()).ok()),
        };
        let digest = match &expected {
            Some(expected) => {
                let mut h = Hasher::for_digest(expected).map_err(verify_err)?;
                h.update(&bytes);
                h.clone().verify(expected, None).map_err(verify_err)?;
                if expected.algorithm().as_ref() == "sha256" {
                    h.finish()
                } else {
                    digest::sha256(&bytes)
                }
            }
            None => digest::sha256(&bytes),
        };
        let mut kind = media_type::kind(&content_type);
        let mut media = media_type::essence(&content_type).to_string();
        if kind == Kind::Other {
            let value: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| FetchError::Invalid {
                    what: what.clone(),
                    source: Box::new(e),
                })?;
            kind = media_type::kind_of_json(&value);
            media = value
                .get("mediaType")
                .and_then(|m| m.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| match kind {
                    Kind::Index => media_type::OCI_INDEX.to_string(),
                    _ => media_type::OCI_MANIFEST.to_string(),
                });
        }
        Ok(FetchedManifest {
            bytes,
            media_type: media,
            kind,
            digest,
        })
    }

    /// Fetches a small blob (an image config) whole, verified against `digest` and `size`.
    pub fn small_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        limit: u64,
    ) -> Result<Vec<u8>, FetchError> {
        let what = format!("blob {digest}");
        if size > limit {
            return Err(FetchError::Invalid {
                what,
                source: format!("announced size {size} exceeds the limit of {limit} bytes").into(),
            });
        }
        let resp = self.get(&what, repo, &format!("/v2/{repo}/blobs/{digest}"), &[])?;
        let bytes = read_limited(resp, size).map_err(|source| FetchError::Transfer {
            what: what.clone(),
            host: self.host.clone(),
            attempts: 1,
            source: Box::new(source),
        })?;
        let mut h = Hasher::for_digest(digest).map_err(|source| FetchError::Verify {
            what: what.clone(),
            host: self.host.clone(),
            source: Box::new(source),
        })?;
        h.update(&bytes);
        h.verify(digest, Some(size))
            .map_err(|source| FetchError::Verify {
                what,
                host: self.host.clone(),
                source: Box::new(source),
            })?;
        Ok(bytes)
    }
}

/// Reads a body of at most `limit` bytes; one byte more is an error, not a truncation.
fn read_limited(
    resp: ureq::http::Response<ureq::Body>,
    limit: u64,
) -> Result<Vec<u8>, std::io::Error> {
    let mut bytes = Vec::new();
    resp.into_body()
        .into_reader()
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("response is larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

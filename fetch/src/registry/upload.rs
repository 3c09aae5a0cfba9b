//! The write side of the distribution API, one request per operation: is a blob there (HEAD),
//! mount it from another repository or start an upload (POST), send bytes (PATCH, or PUT for a
//! blob in one piece), ask where an interrupted upload stands (GET), finish it (PUT
//! `?digest=`), and put a manifest under a tag or digest. Recovering from failures (resuming
//! from the offset the registry reports, starting over) is the caller's job, which knows what
//! it sends.

use std::io::Read;

use ferry_oci::Digest;
use ureq::http::Method;

use super::auth::Scope;
use super::request::{Failure, OpenBody, Request, SendBody};
use super::{Registry, header, url};
use crate::error::FetchError;

/// An upload in progress: where to send its next bytes, and how many the registry has.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The URL the registry gave for the next request (absolute, or a path).
    pub location: String,
    /// Bytes the registry holds.
    pub offset: u64,
}

/// What starting an upload gave.
#[derive(Debug)]
pub enum Started {
    /// The blob was mounted from another repository: nothing to send.
    Mounted,
    /// An upload to send the blob to.
    Upload(Upload),
}

impl Registry {
    /// Whether `repo` has blob `digest` (so it need not be sent).
    pub fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<bool, FetchError> {
        self.exists(
            &format!("blob {digest}"),
            &format!("/v2/{repo}/blobs/{digest}"),
            Scope::push(repo),
            &[],
        )
        .map(|d| d.is_some())
    }

    /// The digest `reference` (tag or digest) of `repo` points at; `None` when it does not
    /// exist, or the registry does not say.
    pub fn manifest_digest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<Digest>, FetchError> {
        self.exists(
            &format!("manifest {repo}:{reference}").replace(":sha256:", "@sha256:"),
            &format!("/v2/{repo}/manifests/{reference}"),
            Scope::push(repo),
            &[("Accept", ferry_oci::media_type::MANIFEST_ACCEPT)],
        )
        .map(|found| match found {
            Some(Some(d)) => Some(d),
            Some(None) => ferry_oci::digest::parse(reference).ok(),
            None => None,
        })
    }

    /// HEAD `path`: `None` when absent, else the `Docker-Content-Digest` it reports, if any.
    fn exists(
        &self,
        what: &str,
        path: &str,
        scope: Scope,
        headers: &[(&str, &str)],
    ) -> Result<Option<Option<Digest>>, FetchError> {
        let req = Request {
            headers: headers.to_vec(),
            ..Request::new(Method::HEAD, what, path, vec![scope])
        };
        match self.call(&req) {
            Ok(resp) => Ok(Some(
                header(&resp, "docker-content-digest")
                    .and_then(|d| ferry_oci::digest::parse(d.trim()).ok()),
            )),
            Err(FetchError::Registry { source, .. }) if source.status == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Starts an upload of `digest` to `repo`, asking first to mount it from `from` (another
    /// repository of this registry that has it). A registry that cannot mount starts an
    /// ordinary upload instead, as the spec allows.
    pub fn start_upload(
        &self,
        repo: &str,
        digest: &Digest,
        from: Option<&str>,
    ) -> Result<Started, FetchError> {
        let what = format!("blob {digest}");
        let (target, scopes) = match from {
            Some(from) => (
                format!(
                    "/v2/{repo}/blobs/uploads/?mount={}&from={}",
                    url::encode(digest.as_ref()),
                    url::encode(from)
                ),
                vec![Scope::push(repo), Scope::pull(from)],
            ),
            None => (
                format!("/v2/{repo}/blobs/uploads/"),
                vec![Scope::push(repo)],
            ),
        };
        let resp = self.call(&Request::new(Method::POST, &what, &target, scopes))?;
        if resp.status().as_u16() == 201 && from.is_some() {
            return Ok(Started::Mounted);
        }
        let location = header(&resp, "location").ok_or_else(|| FetchError::Invalid {
            what: format!("upload of {what} to {}", self.host),
            source: "the registry sent no Location for the upload".into(),
        })?;
        Ok(Started::Upload(Upload {
            location: self.absolute(&location),
            offset: 0,
        }))
    }

    /// Sends `len` bytes from `open` as the part of `upload` that starts at its offset
    /// (`PATCH` with `Content-Range`). On success the upload moves on; on failure the caller
    /// asks [`Registry::upload_status`] where it stands.
    pub fn upload_chunk(
        &self,
        repo: &str,
        digest: &Digest,
        upload: &mut Upload,
        len: u64,
        open: &OpenBody<'_>,
    ) -> Result<Result<(), Failure>, FetchError> {
        let what = format!("blob {digest}");
        let range = format!("{}-{}", upload.offset, upload.offset + len - 1);
        let req = Request {
            headers: vec![
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", &range),
            ],
            body: SendBody::Stream(open),
            ..Request::new(
                Method::PATCH,
                &what,
                &upload.location,
                vec![Scope::push(repo)],
            )
        };
        Ok(match self.send_once(&req)? {
            Ok(resp) => {
                if let Some(l) = header(&resp, "location") {
                    upload.location = self.absolute(&l);
                }
                upload.offset = header(&resp, "range")
                    .and_then(|r| range_end(&r))
                    .unwrap_or(upload.offset + len);
                drain(resp);
                Ok(())
            }
            Err(f) => Err(f),
        })
    }

    /// Asks where `upload` stands after a failure: `Some` with its offset (and fresh location)
    /// when the registry still has it, `None` when it forgot or refused it (start over).
    pub fn upload_status(
        &self,
        repo: &str,
        digest: &Digest,
        upload: &mut Upload,
    ) -> Result<Option<u64>, FetchError> {
        let what = format!("blob {digest}");
        let req = Request::new(
            Method::GET,
            &what,
            &upload.location,
            vec![Scope::push(repo)],
        );
        match self.call(&req) {
            Ok(resp) => {
                if let Some(l) = header(&resp, "location") {
                    upload.location = self.absolute(&l);
                }
                let offset = header(&resp, "range")
                    .and_then(|r| range_end(&r))
                    .unwrap_or(0);
                drain(resp);
                upload.offset = offset;
                Ok(Some(offset))
            }
            Err(FetchError::Registry { source, .. })
                if matches!(source.status, 400 | 404 | 416) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Finishes `upload` as blob `digest`, sending the last `len` bytes from `open` with it
    /// (a blob in one piece), or none.
    pub fn finish_upload(
        &self,
        repo: &str,
        digest: &Digest,
        upload: &Upload,
        body: Option<(u64, &OpenBody<'_>)>,
    ) -> Result<Result<(), Failure>, FetchError> {
        let what = format!("blob {digest}");
        let sep = if upload.location.contains('?') {
            '&'
        } else {
            '?'
        };
        let target = format!(
            "{}{sep}digest={}",
            upload.location,
            url::encode(digest.as_ref())
        );
        let req = Request {
            headers: vec![("Content-Type", "application/octet-stream")],
            body: match body {
                Some((_, open)) => SendBody::Stream(open),
                None => SendBody::Empty,
            },
            ..Request::new(Method::PUT, &what, &target, vec![Scope::push(repo)])
        };
        Ok(self.send_once(&req)?.map(drain))
    }

    /// Puts a manifest (or index) under `reference` (a tag or its digest), with its bytes and
    /// media type exactly as given, so its digest stays what it was.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), FetchError> {
        let what = format!("manifest {repo}:{reference}").replace(":sha256:", "@sha256:");
        let target = format!("/v2/{repo}/manifests/{reference}");
        let req = Request {
            headers: vec![("Content-Type", media_type)],
            body: SendBody::Bytes(bytes),
            ..Request::new(Method::PUT, &what, &target, vec![Scope::push(repo)])
        };
        self.call(&req).map(drain)
    }

    /// A `Location` as an absolute URL (registries may send a path).
    fn absolute(&self, location: &str) -> String {
        match self.ping.lock().expect("ping lock").as_ref() {
            Some(p) => url::resolve(&format!("{}/v2/", p.base), location),
            None => location.to_string(),
        }
    }
}

/// The offset after the last byte a `Range: 0-END` header says the registry holds. distribution
/// answers `0-0` for an empty upload, so a one-byte upload is indistinguishable from an empty one:
/// `0-0` counts as empty (re-sending a byte costs nothing).
fn range_end(value: &str) -> Option<u64> {
    let v = value.trim();
    let v = v.strip_prefix("bytes=").unwrap_or(v);
    let (start, end) = v.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    if start != 0 {
        return None;
    }
    Some(if end == 0 { 0 } else { end + 1 })
}

/// Reads what is left of a response, so its connection goes back to the pool.
fn drain(resp: ureq::http::Response<ureq::Body>) {
    let _ = std::io::copy(
        &mut resp.into_body().into_reader().take(64 * 1024),
        &mut std::io::sink(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ranges() {
        assert_eq!(range_end("0-1048575"), Some(1048576));
        assert_eq!(range_end("bytes=0-99"), Some(100));
        assert_eq!(range_end("0-0"), Some(0));
        assert_eq!(range_end("5-9"), None);
        assert_eq!(range_end("garbage"), None);
    }
}

//! Sending one blob's bytes: in one `PUT` when it fits in a chunk, else in `PATCH` chunks and a
//! closing `PUT`. After a failure the registry is asked where the upload stands and the bytes
//! go on from the offset it reports, so a dropped connection costs at most the chunk in flight
//! (nothing at all behind a proxy that buffers request bodies, as nginx does). A registry that
//! forgot or refused the upload (distribution drops one whose last chunk arrived in part) gets
//! a fresh one.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ferry_oci::archive::BlobRef;

use super::{BlobReader, PushError};
use crate::error::FetchError;
use crate::http::retry::RetryPolicy;
use crate::registry::{Failure, Registry, Started, Upload};
use crate::reporter::Reporter;

/// Uploads blobs of one source to one registry.
pub(super) struct Uploader<'a> {
    pub registry: &'a Registry,
    pub source: &'a dyn BlobReader,
    pub chunk: u64,
    pub retry: &'a RetryPolicy,
    pub reporter: Arc<dyn Reporter>,
    /// Bytes sent in all, by every upload of the push.
    pub sent: Arc<AtomicU64>,
}

/// Counts bytes as the HTTP client reads them from the source, for progress and the summary,
/// and keeps an error of the source itself (the HTTP client reports it as one of the request).
struct Counting {
    inner: Box<dyn Read + Send>,
    reporter: Arc<dyn Reporter>,
    id: usize,
    sent: Arc<AtomicU64>,
    in_request: Arc<AtomicU64>,
    failed: Arc<Mutex<Option<std::io::Error>>>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) => {
                let copy = std::io::Error::new(e.kind(), e.to_string());
                *self.failed.lock().expect("source error") = Some(e);
                return Err(copy);
            }
        };
        let n64 = n as u64;
        self.sent.fetch_add(n64, Ordering::Relaxed);
        self.in_request.fetch_add(n64, Ordering::Relaxed);
        self.reporter.on_blob_progress(self.id, n64);
        Ok(n)
    }
}

impl Uploader<'_> {
    /// Sends `blob` into `upload` (of `repo`), until the registry has it whole.
    pub fn upload(&self, repo: &str, blob: &BlobRef, upload: Upload) -> Result<(), PushError> {
        let what = format!("blob {} for {repo}", blob.digest);
        let registry_err = |e: FetchError| PushError::from_fetch(e, &what);
        let id = self.reporter.on_blob_start(blob, 0);
        let mut upload = upload;
        let mut failures = 0;
        let in_request = Arc::new(AtomicU64::new(0));
        let failed: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
        loop {
            let offset = upload.offset;
            let remaining = blob.size - offset;
            in_request.store(0, Ordering::SeqCst);
            let open = |len: u64| {
                let source = self.source;
                let reporter = self.reporter.clone();
                let sent = self.sent.clone();
                let in_request = in_request.clone();
                let failed = failed.clone();
                move || -> std::io::Result<(Box<dyn Read + Send>, u64)> {
                    let inner = match source.open(blob, offset) {
                        Ok(r) => r.take(len),
                        Err(e) => {
                            let copy = std::io::Error::new(e.kind(), e.to_string());
                            *failed.lock().expect("source error") = Some(e);
                            return Err(copy);
                        }
                    };
                    Ok((
                        Box::new(Counting {
                            inner: Box::new(inner),
                            reporter: reporter.clone(),
                            id,
                            sent: sent.clone(),
                            in_request: in_request.clone(),
                            failed: failed.clone(),
                        }),
                        len,
                    ))
                }
            };
            let (result, finishing) = if remaining <= self.chunk {
                // The rest fits in one request: send it with the closing PUT.
                let body = open(remaining);
                let body = (remaining > 0).then_some((remaining, &body as _));
                let r = self
                    .registry
                    .finish_upload(repo, &blob.digest, &upload, body)
                    .map_err(registry_err)?;
                (r, true)
            } else {
                let body = open(self.chunk);
                let r = self
                    .registry
                    .upload_chunk(repo, &blob.digest, &mut upload, self.chunk, &body)
                    .map_err(registry_err)?;
                (r, false)
            };
            let failure = match result {
                Ok(()) if finishing => break,
                Ok(()) => {
                    failures = 0;
                    continue;
                }
                Err(f) => f,
            };
            if let Some(source) = failed.lock().expect("source error").take() {
                return Err(PushError::Read {
                    digest: blob.digest.clone(),
                    source_name: self.source.name(),
                    source,
                });
            }
            if !recoverable(&failure) {
                return Err(self.registry_failure(&what, failures + 1, failure));
            }
            failures += 1;
            if failures >= self.retry.attempts {
                return Err(self.registry_failure(&what, failures, failure));
            }
            let delay = self.retry.delay(failures, None);
            let reason = failure.reason();
            self.reporter.on_retry(&what, failures, delay, &reason);
            tracing::debug!(digest = %blob.digest, failures, ?delay, reason, "asking where the upload stands");
            std::thread::sleep(delay);
            let reached = offset + in_request.load(Ordering::SeqCst);
            let resumed = self
                .registry
                .upload_status(repo, &blob.digest, &mut upload)
                .map_err(registry_err)?;
            match resumed {
                Some(at) => {
                    tracing::debug!(digest = %blob.digest, at, "upload resumes where the registry stands");
                    self.reporter
                        .on_blob_restart(id, reached.saturating_sub(at));
                }
                None => {
                    // The closing PUT may have gone through before its answer was lost.
                    if finishing
                        && self
                            .registry
                            .blob_exists(repo, &blob.digest)
                            .map_err(registry_err)?
                    {
                        break;
                    }
                    tracing::debug!(digest = %blob.digest, "the registry dropped the upload, starting over");
                    self.reporter.on_blob_restart(id, reached);
                    upload = match self
                        .registry
                        .start_upload(repo, &blob.digest, None)
                        .map_err(registry_err)?
                    {
                        Started::Upload(u) => u,
                        Started::Mounted => break,
                    };
                }
            }
        }
        self.reporter.on_blob_done(id);
        Ok(())
    }

    fn registry_failure(&self, what: &str, attempts: u32, failure: Failure) -> PushError {
        PushError::from_fetch(self.registry.failure_error(what, attempts, failure), what)
    }
}

/// Whether asking the registry where the upload stands, and going on, may succeed: after a
/// dropped connection or a server error, or when the registry says the range or the upload
/// is not what was sent (it forgot the upload, or kept part of the last chunk).
fn recoverable(failure: &Failure) -> bool {
    match failure {
        Failure::Status { api, .. } => {
            failure.retryable()
                || api.status == 416
                || (api.status == 404
                    && api.code.as_ref().map(|c| c.as_str()) == Some("BLOB_UPLOAD_UNKNOWN"))
                || (api.status == 400
                    && api.code.as_ref().map(|c| c.as_str()) == Some("BLOB_UPLOAD_INVALID"))
        }
        Failure::Transport(_) => failure.retryable(),
    }
}

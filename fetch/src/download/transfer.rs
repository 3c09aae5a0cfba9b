//! The network side: ranged and whole-blob requests, bytes written straight to their offset in
//! the archive, and resuming after a dropped connection.
//!
//! A connection that drops mid-chunk is resumed with `Range` from the last byte written; a
//! registry that ignores `Range` (answers 200) gets the blob downloaded whole by one worker.
//! Workers only move bytes: nothing counts until the verifier has passed over it.

use std::io::Read;
use std::sync::atomic::Ordering;

use ferry_oci::DigestError;

use super::Transfer;
use crate::error::FetchError;
use crate::registry::header;

impl Transfer<'_> {
    /// Fetches chunk `index` of layer `l`, resuming after drops.
    pub(super) fn fetch_chunk(&self, l: usize, index: u32) -> Result<(), FetchError> {
        let layer = &self.layers[l];
        let (start, end) = layer.chunk_range(index);
        if start == 0 && end == layer.blob.size {
            // A blob of one chunk is asked for without `Range`, which every registry serves.
            return self.fetch_whole(l, None);
        }
        let mut pos = self.resume_at(l, index);
        let mut failures = 0;
        while pos < end {
            let range = format!("bytes={pos}-{}", end - 1);
            let resp = self.request(l, &[("Range", &range)])?;
            let status = resp.status().as_u16();
            if status == 206 {
                if header(&resp, "content-range").and_then(|v| range_start(&v)) != Some(pos) {
                    // A 206 for another range than asked: never trust it.
                    failures += 1;
                    self.backoff(
                        l,
                        &mut failures,
                        "registry answered a different range".into(),
                    )?;
                    continue;
                }
            } else {
                // The registry ignores Range: fall back to one stream for the whole blob,
                // continuing with the response already open.
                tracing::debug!(digest = %layer.blob.digest, "registry ignores Range, fetching the blob whole");
                self.switch_to_whole(l);
                return self.fetch_whole(l, Some(resp));
            }
            let mut body = resp.into_body().into_reader();
            match self.copy_body(l, &mut body, &mut pos, end) {
                Ok(()) if pos == end => {
                    // Read to the end of the body, so the connection goes back to the pool
                    // for the next chunk instead of a new one (a TLS handshake each).
                    let _ = body.read(&mut [0u8; 1]);
                }
                Ok(()) => {
                    failures += 1;
                    self.backoff(
                        l,
                        &mut failures,
                        format!("connection closed at byte {pos} of {}", layer.blob.size),
                    )?;
                }
                Err(e) => {
                    failures += 1;
                    self.backoff(l, &mut failures, e.to_string())?;
                }
            }
            if self.stopped() {
                return Ok(());
            }
        }
        self.chunk_done(l, index)
    }

    /// Fetches a blob as one stream from byte 0 (small blobs, and registries that ignore
    /// `Range`). More bytes than the descriptor announced are refused: the blob would not be
    /// the one named, whatever its prefix hashes to.
    fn fetch_whole(
        &self,
        l: usize,
        open: Option<ureq::http::Response<ureq::Body>>,
    ) -> Result<(), FetchError> {
        let layer = &self.layers[l];
        let size = layer.blob.size;
        let mut open = open;
        let mut failures = 0;
        loop {
            let resp = match open.take() {
                Some(r) => r,
                None => self.request(l, &[])?,
            };
            let mut pos = 0;
            let mut body = resp.into_body().into_reader();
            let result = self.copy_body(l, &mut (&mut body).take(size), &mut pos, size);
            if self.stopped() {
                return Ok(());
            }
            match result {
                Ok(()) if pos == size => {
                    let mut extra = [0u8; 1];
                    if matches!(body.read(&mut extra), Ok(1)) {
                        return Err(FetchError::Verify {
                            what: self.what(l),
                            host: layer.registry.host().to_string(),
                            source: Box::new(DigestError::Size {
                                expected: size,
                                actual: size + 1,
                            }),
                        });
                    }
                    for i in 0..layer.chunks() {
                        self.chunk_done(l, i)?;
                    }
                    return Ok(());
                }
                Ok(()) => {
                    failures += 1;
                    self.reporter.on_blob_restart(self.id(l), pos);
                    self.backoff(
                        l,
                        &mut failures,
                        format!("connection closed at byte {pos} of {size}"),
                    )?;
                }
                Err(e) => {
                    failures += 1;
                    self.reporter.on_blob_restart(self.id(l), pos);
                    self.backoff(l, &mut failures, e.to_string())?;
                }
            }
        }
    }

    fn request(
        &self,
        l: usize,
        headers: &[(&str, &str)],
    ) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
        let layer = &self.layers[l];
        let path = format!("/v2/{}/blobs/{}", layer.repo, layer.blob.digest);
        layer
            .registry
            .get(&self.what(l), &layer.repo, &path, headers)
    }

    /// Copies a response body to the archive at the layer's offset + `pos`, up to `end`,
    /// recording progress as it goes.
    fn copy_body(
        &self,
        l: usize,
        body: &mut dyn Read,
        pos: &mut u64,
        end: u64,
    ) -> std::io::Result<()> {
        let layer = &self.layers[l];
        let id = self.id(l);
        let mut buf = vec![0u8; 1 << 20];
        while *pos < end {
            if self.stopped() {
                return Ok(());
            }
            let want = buf.len().min((end - *pos) as usize);
            let n = match body.read(&mut buf[..want]) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.part
                .write_at(layer.offset + *pos, &buf[..n])
                .map_err(std::io::Error::other)?;
            *pos += n as u64;
            self.downloaded.fetch_add(n as u64, Ordering::Relaxed);
            self.reporter.on_blob_progress(id, n as u64);
            self.chunk_progress(l, *pos)
                .map_err(std::io::Error::other)?;
        }
        Ok(())
    }

    /// Waits before another try, or fails once the policy's tries are used up.
    fn backoff(&self, l: usize, failures: &mut u32, reason: String) -> Result<(), FetchError> {
        let layer = &self.layers[l];
        if *failures >= self.retry.attempts {
            return Err(FetchError::Transfer {
                what: self.what(l),
                host: layer.registry.host().to_string(),
                attempts: *failures,
                source: reason.into(),
            });
        }
        let delay = self.retry.delay(*failures, None);
        self.reporter
            .on_retry(&self.what(l), *failures, delay, &reason);
        tracing::debug!(digest = %layer.blob.digest, failures, ?delay, reason, "resuming after a dropped transfer");
        std::thread::sleep(delay);
        Ok(())
    }
}

/// The first byte position of a `Content-Range: bytes START-END/TOTAL` header.
fn range_start(value: &str) -> Option<u64> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    rest.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_start() {
        assert_eq!(range_start("bytes 100-199/200"), Some(100));
        assert_eq!(range_start("bytes 0-0/1"), Some(0));
        assert_eq!(range_start("bytes */200"), None);
        assert_eq!(range_start("items 1-2/3"), None);
    }
}

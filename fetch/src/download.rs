//! Downloading layers in parallel, each straight to its place in the archive, verified while
//! it streams, resumed with `Range` when a connection drops.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ferry_oci::archive::{BlobRef, Entry};
use ferry_oci::digest::Hasher;

use crate::error::FetchError;
use crate::http::retry::RetryPolicy;
use crate::partial::{PartFile, Resume};
use crate::registry::{Registry, header};
use crate::reporter::Reporter;

/// One blob to download and where from.
pub struct Job<'a> {
    /// The blob's entry in the archive.
    pub entry: &'a Entry,
    /// The blob.
    pub blob: &'a BlobRef,
    /// The registry that has it.
    pub registry: Arc<Registry>,
    /// The repository that has it.
    pub repo: String,
    /// Where to start.
    pub resume: Resume,
}

/// Runs `jobs` on `concurrency` threads; the first error stops the others.
pub fn run_all(
    mut jobs: Vec<Job<'_>>,
    part: &PartFile,
    concurrency: usize,
    retry: &RetryPolicy,
    reporter: &dyn Reporter,
) -> Result<(), FetchError> {
    // Largest first (jobs are popped from the end): with several workers, the long downloads
    // start early and the small ones fill the gaps, so the last one ends soonest.
    jobs.sort_by_key(|j| j.blob.size - j.resume.offset);
    let queue = Mutex::new(jobs);
    let stop = AtomicBool::new(false);
    let first_error: Mutex<Option<FetchError>> = Mutex::new(None);
    let workers = concurrency.max(1).min(queue.lock().expect("queue").len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Some(job) = queue.lock().expect("queue").pop() else {
                        return;
                    };
                    if let Err(e) = download(job, part, retry, reporter, &stop) {
                        stop.store(true, Ordering::Relaxed);
                        first_error.lock().expect("error slot").get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match first_error.into_inner().expect("error slot") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Why reading one response body ended before the blob was complete.
enum Interruption {
    /// The connection dropped or stalled; worth resuming.
    Transport(std::io::Error),
    /// The server closed the body early.
    Short { got: u64 },
}

fn download(
    job: Job<'_>,
    part: &PartFile,
    retry: &RetryPolicy,
    reporter: &dyn Reporter,
    stop: &AtomicBool,
) -> Result<(), FetchError> {
    let Job {
        entry,
        blob,
        registry,
        repo,
        resume,
    } = job;
    let what = format!("blob {}", blob.digest);
    let path = format!("/v2/{repo}/blobs/{}", blob.digest);
    let fresh = || Hasher::for_digest(&blob.digest).expect("digest checked when resolved");
    let Resume {
        mut offset,
        mut hasher,
    } = resume;
    let resumed_from = offset;
    let id = reporter.on_blob_start(blob, offset);
    let mut failures = 0;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if offset < blob.size {
            let range = format!("bytes={offset}-");
            let headers: &[(&str, &str)] = if offset > 0 {
                &[("Range", &range)]
            } else {
                &[]
            };
            let resp = registry.get(&what, &repo, &path, headers)?;
            let status = resp.status().as_u16();
            let accepted_range = status == 206
                && header(&resp, "content-range").and_then(|v| range_start(&v)) == Some(offset);
            if offset > 0 && !accepted_range {
                // A 200 (or a 206 for another range) means the whole blob again: start over.
                tracing::debug!(digest = %blob.digest, status, offset, "range not honoured, restarting blob");
                reporter.on_blob_restart(id, offset);
                offset = 0;
                hasher = fresh();
                if status == 206 {
                    continue;
                }
            }
            let mut body = resp.into_body().into_reader();
            let interruption = loop {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let n = match body.read(&mut buf) {
                    Ok(0) => {
                        break (offset < blob.size).then_some(Interruption::Short { got: offset });
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => break Some(Interruption::Transport(e)),
                };
                if offset + n as u64 > blob.size {
                    // More bytes than the descriptor announced: never write past the blob's
                    // slot, and never trust such a server with a retry.
                    return Err(FetchError::Verify {
                        what,
                        host: registry.host().to_string(),
                        source: ferry_oci::DigestError::Size {
                            expected: blob.size,
                            actual: offset + n as u64,
                        },
                    });
                }
                part.write_at(entry.data_offset() + offset, &buf[..n])?;
                hasher.update(&buf[..n]);
                offset += n as u64;
                reporter.on_blob_progress(id, n as u64);
                part.record_progress(&blob.digest, offset)?;
            };
            if let Some(interruption) = interruption {
                failures += 1;
                let reason = match &interruption {
                    Interruption::Transport(e) => e.to_string(),
                    Interruption::Short { got } => {
                        format!("connection closed after {got} of {} bytes", blob.size)
                    }
                };
                if failures >= retry.attempts {
                    let source: Box<dyn std::error::Error + Send + Sync> = match interruption {
                        Interruption::Transport(e) => Box::new(e),
                        Interruption::Short { .. } => reason.into(),
                    };
                    return Err(FetchError::Transfer {
                        what,
                        host: registry.host().to_string(),
                        attempts: failures,
                        source,
                    });
                }
                let delay = retry.delay(failures, None);
                reporter.on_retry(&what, failures, delay, &reason);
                std::thread::sleep(delay);
                continue;
            }
        }
        match hasher.clone().verify(&blob.digest, Some(blob.size)) {
            Ok(()) => break,
            Err(_) if resumed_from > 0 && offset == blob.size && failures == 0 => {
                // The bytes from an earlier run did not survive (e.g. power loss before they
                // reached the disk). Download the whole blob once more before giving up.
                tracing::debug!(digest = %blob.digest, "resumed blob failed verification, refetching");
                reporter.on_blob_restart(id, offset);
                offset = 0;
                hasher = fresh();
                failures += 1;
            }
            Err(source) => {
                return Err(FetchError::Verify {
                    what,
                    host: registry.host().to_string(),
                    source,
                });
            }
        }
    }
    part.mark_complete(&blob.digest)?;
    reporter.on_blob_done(id);
    Ok(())
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

//! How a fetch or a push tells its caller what it is doing. The library never draws anything: the
//! command line implements this trait with progress bars, plain lines or nothing at all.

use std::time::Duration;

use ferry_oci::archive::BlobRef;
use ferry_oci::{ImageReference, Platform};

/// Receives progress events. Every method has a no-op default; calls come from several
/// download threads at once.
pub trait Reporter: Send + Sync {
    /// An image's platform manifest was chosen; `layers` are its layer blobs.
    fn on_resolved(&self, _image: &ImageReference, _platform: &Platform, _layers: &[BlobRef]) {}
    /// Downloads (or, for a push, uploads) begin: `total` bytes of blobs in all, `present` of
    /// them already on disk.
    fn on_download_start(&self, _total: u64, _present: u64, _blobs: usize) {}
    /// A blob download started (or resumed at `offset`); returns an id for the calls below.
    fn on_blob_start(&self, _blob: &BlobRef, _offset: u64) -> usize {
        0
    }
    /// `bytes` more bytes of blob `id` arrived (negative progress is never reported: a
    /// restarted blob reports [`Reporter::on_blob_restart`]).
    fn on_blob_progress(&self, _id: usize, _bytes: u64) {}
    /// Blob `id` must start over from byte 0; `lost` bytes were thrown away.
    fn on_blob_restart(&self, _id: usize, _lost: u64) {}
    /// Blob `id` arrived and was verified.
    fn on_blob_done(&self, _id: usize) {}
    /// A request failed and will be tried again after `delay`.
    fn on_retry(&self, _what: &str, _attempt: u32, _delay: Duration, _reason: &str) {}
    /// All blobs are in; the archive is being finished (checksummed and renamed), or, for a
    /// push, the manifests are being put.
    fn on_finishing(&self) {}
    /// A push of the image to `target` begins; `blobs` are its configs and layers.
    fn on_push_image(&self, _target: &ImageReference, _blobs: &[BlobRef]) {}
    /// A blob needs no upload: the registry has it, or mounted it `from` another repository.
    fn on_blob_skipped(&self, _blob: &BlobRef, _from: Option<&str>) {}
}

/// A reporter that ignores everything.
pub struct Silent;

impl Reporter for Silent {}

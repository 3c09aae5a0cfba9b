//! How a load tells its caller what it is doing. The library never draws anything: the
//! command line implements this trait with a progress bar, plain lines or nothing.

/// Receives progress events; every method has a no-op default.
pub trait Reporter: Send + Sync {
    /// Reading starts; `total` is the archive's size when it is a file.
    fn on_start(&self, _total: Option<u64>) {}
    /// `read` bytes of the archive (as stored, before decompression) were consumed so far.
    fn on_progress(&self, _read: u64) {}
    /// The archive was read; verification results are being committed to the store.
    fn on_finishing(&self) {}
    /// Something the user should know that is not an error (device nodes skipped, a name
    /// that could not be used).
    fn on_notice(&self, _message: &str) {}
}

/// A reporter that ignores everything.
pub struct Silent;

impl Reporter for Silent {}

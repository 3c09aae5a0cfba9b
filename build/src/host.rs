//! What a build needs from the rest of ferry, as small traits: the store (images, layers, the
//! cache), the runtime (one RUN step in a container) and an HTTP client (`ADD URL`). The
//! binary implements them over `ferry-load`, `ferry-run` and `ferry-fetch`.

use std::path::{Path, PathBuf};

use ferry_oci::Digest;
use ferry_oci::archive::BlobRef;

use crate::config::ImageConfig;
use crate::layer::LayerFile;

/// An error from the store, the runtime or the network, kept opaque.
pub type HostError = Box<dyn std::error::Error + Send + Sync>;

/// One layer of an image.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// The blob as stored.
    pub blob: BlobRef,
    /// The unpacked snapshot directory (a lower directory for overlayfs).
    pub snapshot: PathBuf,
}

/// An image of the store, as a build uses it.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// The image ID (config digest).
    pub id: Digest,
    /// The config blob.
    pub config: Vec<u8>,
    /// The media type of its manifest (a build keeps the base image's flavour).
    pub manifest_media_type: String,
    /// Its layers, bottom first.
    pub layers: Vec<Layer>,
}

/// A layer a step made, ready to be moved into the store.
#[derive(Debug)]
pub struct NewLayer<'a> {
    /// The compressed tar (in the workspace).
    pub blob: &'a LayerFile,
    /// Its media type.
    pub media_type: &'a str,
    /// A directory (in the workspace) holding the layer's changes in overlay form, which the
    /// store may take as the snapshot instead of unpacking the blob again.
    pub tree: Option<&'a Path>,
}

/// The store, as a build uses it.
pub trait ImageStore {
    /// An image by name, ID or ID prefix; `None` when the store has no such image.
    fn image(&self, reference: &str) -> Result<Option<StoredImage>, HostError>;

    /// The image a cache key was recorded for, if it and everything it needs are still there.
    fn cached(&self, key: &Digest) -> Result<Option<StoredImage>, HostError>;

    /// A directory of this build on the store's file system (so results move into the store
    /// by renaming); the store keeps what is in it from being collected while the build runs.
    fn workspace(&self) -> &Path;

    /// A directory where builds may keep what they learn about their sources between runs
    /// (content digests by file metadata); `None`: nothing is kept.
    fn memory_dir(&self) -> Option<PathBuf>;

    /// Whether snapshots may hold overlayfs whiteouts (root); else a changes directory with
    /// deletions in it cannot be taken as a snapshot.
    fn overlay_snapshots(&self) -> bool;

    /// Moves a layer into the store on top of the layers `below` (their diff_ids, bottom
    /// first); returns its snapshot directory.
    fn commit_layer(&self, below: &[Digest], layer: NewLayer<'_>) -> Result<PathBuf, HostError>;

    /// Stores an image's config and manifest; with a key, records it in the build cache, with
    /// the image it was built on (`None` for `FROM scratch`).
    fn commit_image(
        &self,
        config: &[u8],
        manifest: &[u8],
        cache: Option<(&Digest, Option<&Digest>)>,
    ) -> Result<(), HostError>;

    /// Gives a committed image (its manifest) names.
    fn tag(&self, manifest: &[u8], names: &[String]) -> Result<(), HostError>;
}

/// One RUN step to run.
#[derive(Debug)]
pub struct RunStep<'a> {
    /// The image the step starts from (its ID names it in `ferry ps`).
    pub image: &'a Digest,
    /// Its config: Env, User and WorkingDir apply.
    pub config: &'a ImageConfig,
    /// Lower directories, bottom first.
    pub layers: Vec<PathBuf>,
    /// Whether overlayfs can use `layers` as they are.
    pub overlay_ready: bool,
    /// The command line (shell included).
    pub command: Vec<String>,
    /// More environment (build args in scope), `K=V`.
    pub env: Vec<String>,
    /// `--network none`.
    pub network_none: bool,
    /// The image's VOLUMEs: (path in the container, a directory holding what the image has
    /// there). Mounted over their paths as Docker's classic builder does, so what the step
    /// writes into them is not part of the layer.
    pub volumes: Vec<(String, PathBuf)>,
}

/// What a finished step's container left.
#[derive(Debug, Clone)]
pub enum ContainerChanges {
    /// overlayfs was used: its upper directory.
    Upper(PathBuf),
    /// The copy fallback: the container's whole tree.
    Tree(PathBuf),
}

/// A finished step's container; dropping it removes it.
pub trait StepContainer {
    /// Its ID.
    fn id(&self) -> &str;
    /// Where its changes are.
    fn changes(&self) -> ContainerChanges;
}

/// How a step's command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepExit {
    /// The exit status, Docker-style (128+N for signal N).
    pub code: i32,
    /// A signal the user sent (Ctrl-C) that was passed on to the command.
    pub interrupted: Option<i32>,
}

/// What happens while a step runs.
pub trait StepEvents {
    /// The container exists and is starting.
    fn started(&mut self, id: &str);
    /// The command wrote this (stdout and stderr, as they come).
    fn output(&mut self, bytes: &[u8]);
}

/// The runtime, as a build uses it.
pub trait StepRunner {
    /// Runs one step to its end.
    fn run(
        &self,
        step: &RunStep<'_>,
        events: &mut dyn StepEvents,
    ) -> Result<(Box<dyn StepContainer>, StepExit), HostError>;

    /// A signal (Ctrl-C, SIGTERM) the build received since it started, if any: the build
    /// stops at the next step.
    fn interrupted(&self) -> Option<i32>;
}

/// What a download told about its file.
#[derive(Debug, Clone, Default)]
pub struct Downloaded {
    /// The name from `Content-Disposition`, if any.
    pub file_name: Option<String>,
    /// `Last-Modified`, seconds since the epoch.
    pub last_modified: Option<i64>,
}

/// `ADD URL`.
pub trait Downloader {
    /// Downloads `url` into the file `dest`.
    fn download(&self, url: &str, dest: &Path) -> Result<Downloaded, HostError>;
}

/// Everything a build talks to.
pub struct Host<'a> {
    /// The store.
    pub store: &'a dyn ImageStore,
    /// The runtime.
    pub runner: &'a dyn StepRunner,
    /// The HTTP client.
    pub downloader: &'a dyn Downloader,
}

//! `ferry verify` and `ferry inspect`: reading an archive without a store, on any platform.
//!
//! `verify` does everything `load` does except writing: every blob hashed against its name
//! and descriptor, every layer decompressed and its diff_id compared with the config, every
//! layer entry checked by the same rules the loader applies. `inspect` only reads the
//! metadata (blobs are hashed, not decompressed).

use std::io::Read;

use ferry_oci::Platform;

use crate::compression::Format;
use crate::error::LoadError;
use crate::layer::LayerCheck;
use crate::reporter::Reporter;
use crate::resolve::{self, ArchiveImage};
use crate::scan::{self, LayerSink, LayerStats, Stage};

/// What an archive holds.
#[derive(Debug)]
pub struct ArchiveReport {
    /// The images, for the chosen platform.
    pub images: Vec<ArchiveImage>,
    /// The outer compression.
    pub outer: Format,
    /// Unpacked size and entry counts per layer (verify only), in image order.
    pub layer_stats: Vec<Vec<Option<LayerStats>>>,
    /// Things worth telling that are not errors.
    pub notices: Vec<String>,
    /// What a delta archive leaves out (its layers were not checked: the far side has them).
    pub delta: Option<ferry_oci::archive::DeltaInfo>,
}

struct CheckStage {
    unpack: bool,
}

impl Stage for CheckStage {
    fn layer_sink(&mut self, _id: usize) -> Result<Option<Box<dyn LayerSink>>, LoadError> {
        Ok(self
            .unpack
            .then(|| Box::new(LayerCheck::default()) as Box<dyn LayerSink>))
    }
}

/// Reads the whole archive and checks everything; the first problem is the error.
pub fn verify(
    input: &mut dyn Read,
    platform: &Platform,
    reporter: &dyn Reporter,
) -> Result<ArchiveReport, LoadError> {
    read(input, platform, reporter, true)
}

/// Lists what the archive holds, hashing blobs but not unpacking layers.
pub fn inspect(
    input: &mut dyn Read,
    platform: &Platform,
    reporter: &dyn Reporter,
) -> Result<ArchiveReport, LoadError> {
    read(input, platform, reporter, false)
}

fn read(
    input: &mut dyn Read,
    platform: &Platform,
    reporter: &dyn Reporter,
    unpack: bool,
) -> Result<ArchiveReport, LoadError> {
    let mut stage = CheckStage { unpack };
    let mut planner = |c: &scan::Contents| resolve::plan(c, platform);
    let mut contents = scan::scan(input, &mut stage, &mut planner, reporter)?;
    let delta = crate::delta::provide(&mut contents, &|_| true, "")?;
    reporter.on_finishing();
    let mut notices = Vec::new();
    let images = resolve::resolve(&contents, platform, &mut notices)?;
    if unpack {
        resolve::check_layers(&mut contents, &images)?;
    }
    let layer_stats = images
        .iter()
        .map(|img| {
            img.layers
                .iter()
                .map(|l| {
                    contents
                        .files
                        .get(&l.path)
                        .and_then(|f| f.layer.as_ref())
                        .and_then(|o| o.result.as_ref().ok().cloned())
                        .filter(|_| unpack)
                })
                .collect()
        })
        .collect();
    Ok(ArchiveReport {
        images,
        outer: contents.outer.unwrap_or(Format::Tar),
        layer_stats,
        notices,
        delta,
    })
}

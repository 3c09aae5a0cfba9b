//! Showing a fetch's (or a push's) progress: bars on a terminal, plain lines every few seconds
//! where stderr is not one (mintty, Cygwin, CI logs, pipes, wine), or nothing.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry_fetch::Reporter;
use ferry_oci::archive::BlobRef;
use ferry_oci::{ImageReference, Platform};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Bars when stderr is a terminal, plain lines otherwise.
    Auto,
    /// Progress bars.
    Bars,
    /// A plain line per image every few seconds.
    Plain,
    /// Nothing but errors.
    None,
}

impl ProgressMode {
    /// Resolves `Auto` for the current stderr.
    pub fn resolve(self) -> ProgressMode {
        match self {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bars,
            ProgressMode::Auto => ProgressMode::Plain,
            other => other,
        }
    }
}

/// How often plain mode prints.
const PLAIN_INTERVAL: Duration = Duration::from_secs(3);

/// Bytes of one image: its layers, each counted for the first image that lists it (that is
/// the image it is downloaded for).
struct ImageProgress {
    name: String,
    total: u64,
    done: u64,
    /// Bytes present from an earlier run; not part of the rate.
    present: u64,
}

#[derive(Default)]
struct Counts {
    images: Vec<ImageProgress>,
    /// Which image a layer digest counts for.
    owner: HashMap<String, usize>,
    /// Reporter id → (image index, bar).
    blobs: Vec<(usize, Option<ProgressBar>)>,
}

/// The command line's [`Reporter`].
pub struct CliReporter {
    mode: ProgressMode,
    /// `fetch` or `push`, for plain lines.
    verb: &'static str,
    started: Instant,
    counts: Mutex<Counts>,
    bars: Option<(MultiProgress, ProgressBar)>,
    last_line: Mutex<Instant>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("valid progress template")
        .progress_chars("=> ")
}

impl CliReporter {
    /// A reporter for `mode` (already resolved).
    pub fn new(mode: ProgressMode) -> Self {
        let bars = (mode == ProgressMode::Bars).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            let total = multi.add(ProgressBar::new(0));
            total.set_style(style(
                "{prefix:>12} [{bar:30}] {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12} ETA {eta}",
            ));
            total.set_prefix("total");
            (multi, total)
        });
        CliReporter {
            mode,
            verb: "fetch",
            started: Instant::now(),
            counts: Mutex::default(),
            bars,
            last_line: Mutex::new(Instant::now()),
        }
    }

    /// A reporter for a push.
    pub fn for_push(mode: ProgressMode) -> Self {
        CliReporter {
            verb: "push",
            ..CliReporter::new(mode)
        }
    }

    /// Counts `layers` for `image`, each for the first image that lists it.
    fn add_image(&self, image: &ImageReference, layers: &[BlobRef]) {
        let mut counts = self.counts();
        let index = counts.images.len();
        let mut total = 0;
        for l in layers {
            if let std::collections::hash_map::Entry::Vacant(e) =
                counts.owner.entry(l.digest.to_string())
            {
                e.insert(index);
                total += l.size;
            }
        }
        counts.images.push(ImageProgress {
            name: image.to_string(),
            total,
            done: 0,
            present: 0,
        });
    }

    /// Prints a message line without tearing the bars.
    pub fn note(&self, line: &str) {
        match (&self.bars, self.mode) {
            (_, ProgressMode::None) => {}
            (Some((multi, _)), _) => {
                let _ = multi.println(line);
            }
            (None, _) => eprintln!("{line}"),
        }
    }

    /// Removes the bars before the summary is printed.
    pub fn clear(&self) {
        if let Some((multi, total)) = &self.bars {
            total.finish_and_clear();
            let _ = multi.clear();
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().expect("progress lock")
    }

    /// In plain mode, one line per image still downloading, at most every few seconds.
    fn plain_lines(&self, force: bool) {
        if self.mode != ProgressMode::Plain {
            return;
        }
        {
            let mut last = self.last_line.lock().expect("progress lock");
            if !force && last.elapsed() < PLAIN_INTERVAL {
                return;
            }
            *last = Instant::now();
        }
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let counts = self.counts();
        for img in &counts.images {
            if img.total == 0 || (img.done == img.total && !force) {
                continue;
            }
            let rate = img.done.saturating_sub(img.present) as f64 / secs;
            let pct = (img.done * 100).checked_div(img.total).unwrap_or(100);
            let eta = if img.done >= img.total {
                "0s".to_string()
            } else if rate > 0.0 {
                format!("{:.0}s", (img.total - img.done) as f64 / rate)
            } else {
                "?".into()
            };
            eprintln!(
                "{} {}: {} / {} ({pct}%), {}/s, ETA {eta}",
                self.verb,
                img.name,
                human_bytes(img.done),
                human_bytes(img.total),
                human_bytes(rate as u64),
            );
        }
    }
}

impl Reporter for CliReporter {
    fn on_resolved(&self, image: &ImageReference, platform: &Platform, layers: &[BlobRef]) {
        self.note(&format!(
            "resolved {image} for {platform} ({} layers)",
            layers.len()
        ));
        self.add_image(image, layers);
    }

    fn on_push_image(&self, target: &ImageReference, blobs: &[BlobRef]) {
        self.add_image(target, blobs);
    }

    fn on_blob_skipped(&self, blob: &BlobRef, _from: Option<&str>) {
        {
            let mut counts = self.counts();
            let image = counts.owner.get(&blob.digest.to_string()).copied();
            if let Some(img) = image.and_then(|i| counts.images.get_mut(i)) {
                img.done += blob.size;
                img.present += blob.size;
            }
        }
        if let Some((_, total)) = &self.bars {
            total.inc(blob.size);
        }
    }

    fn on_download_start(&self, total: u64, present: u64, _blobs: usize) {
        if present > 0 {
            self.note(&format!(
                "resuming: {} of {} already downloaded",
                human_bytes(present),
                human_bytes(total)
            ));
        }
        if let Some((_, bar)) = &self.bars {
            bar.set_length(total);
            bar.set_position(present);
            bar.reset_eta();
        }
    }

    fn on_blob_start(&self, blob: &BlobRef, offset: u64) -> usize {
        let mut counts = self.counts();
        let image = counts
            .owner
            .get(&blob.digest.to_string())
            .copied()
            .unwrap_or(0);
        if let Some(img) = counts.images.get_mut(image) {
            img.done += offset;
            img.present += offset;
        }
        let bar = self.bars.as_ref().map(|(multi, total)| {
            let bar = multi.insert_before(total, ProgressBar::new(blob.size));
            bar.set_style(style(
                "{prefix:>12} [{bar:30}] {binary_bytes:>10}/{binary_total_bytes:<10}",
            ));
            bar.set_prefix(blob.digest.digest()[..12].to_string());
            bar.set_position(offset);
            bar
        });
        counts.blobs.push((image, bar));
        counts.blobs.len() - 1
    }

    fn on_blob_progress(&self, id: usize, bytes: u64) {
        {
            let mut counts = self.counts();
            let Some((image, bar)) = counts.blobs.get(id) else {
                return;
            };
            let image = *image;
            if let Some(bar) = bar {
                bar.inc(bytes);
            }
            if let Some(img) = counts.images.get_mut(image) {
                img.done += bytes;
            }
        }
        if let Some((_, total)) = &self.bars {
            total.inc(bytes);
        }
        self.plain_lines(false);
    }

    fn on_blob_restart(&self, id: usize, lost: u64) {
        let mut counts = self.counts();
        let Some((image, bar)) = counts.blobs.get(id) else {
            return;
        };
        let image = *image;
        if let Some(bar) = bar {
            bar.set_position(bar.position().saturating_sub(lost));
        }
        if let Some(img) = counts.images.get_mut(image) {
            img.done = img.done.saturating_sub(lost);
        }
        if let Some((_, total)) = &self.bars {
            total.set_position(total.position().saturating_sub(lost));
        }
    }

    fn on_blob_done(&self, id: usize) {
        let mut counts = self.counts();
        if let Some((_, slot)) = counts.blobs.get_mut(id)
            && let Some(bar) = slot.take()
        {
            bar.finish_and_clear();
            if let Some((multi, _)) = &self.bars {
                multi.remove(&bar);
            }
        }
    }

    fn on_retry(&self, what: &str, attempt: u32, delay: Duration, reason: &str) {
        self.note(&format!(
            "retrying {what} in {:.1}s (attempt {attempt} failed: {reason})",
            delay.as_secs_f64(),
        ));
    }

    fn on_finishing(&self) {
        self.plain_lines(true);
    }
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

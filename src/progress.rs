//! Showing a fetch's progress: bars on a terminal, plain lines every few seconds where stderr
//! is not one (mintty, Cygwin, CI logs, pipes), or nothing.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// A plain line every few seconds.
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

/// How often plain mode prints a line.
const PLAIN_INTERVAL: Duration = Duration::from_secs(3);

/// The command line's [`Reporter`].
pub struct CliReporter {
    mode: ProgressMode,
    started: Instant,
    total: AtomicU64,
    done: AtomicU64,
    /// Bytes already present when downloads began (a resumed run); not counted in the rate.
    present: AtomicU64,
    bars: Option<Bars>,
    last_line: Mutex<Instant>,
}

struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    blobs: Mutex<Vec<Option<ProgressBar>>>,
}

impl CliReporter {
    /// A reporter for `mode` (already resolved).
    pub fn new(mode: ProgressMode) -> Self {
        let bars = (mode == ProgressMode::Bars).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            let total = multi.add(ProgressBar::new(0));
            total.set_style(
                ProgressStyle::with_template(
                    "{prefix:>8} [{bar:30}] {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            total.set_prefix("total");
            Bars {
                multi,
                total,
                blobs: Mutex::new(Vec::new()),
            }
        });
        CliReporter {
            mode,
            started: Instant::now(),
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            present: AtomicU64::new(0),
            bars,
            last_line: Mutex::new(Instant::now()),
        }
    }

    /// Prints a message line without tearing the bars.
    pub fn note(&self, line: &str) {
        match (&self.bars, self.mode) {
            (_, ProgressMode::None) => {}
            (Some(b), _) => {
                let _ = b.multi.println(line);
            }
            (None, _) => eprintln!("{line}"),
        }
    }

    /// Removes the bars before the summary is printed.
    pub fn clear(&self) {
        if let Some(b) = &self.bars {
            b.total.finish_and_clear();
            let _ = b.multi.clear();
        }
    }

    fn plain_line(&self, force: bool) {
        if self.mode != ProgressMode::Plain {
            return;
        }
        let mut last = self.last_line.lock().expect("progress lock");
        if !force && last.elapsed() < PLAIN_INTERVAL {
            return;
        }
        *last = Instant::now();
        let total = self.total.load(Ordering::Relaxed);
        let done = self.done.load(Ordering::Relaxed);
        let fresh = done.saturating_sub(self.present.load(Ordering::Relaxed));
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = fresh as f64 / secs;
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        let eta = if rate > 0.0 {
            format!("{:.0}s", total.saturating_sub(done) as f64 / rate)
        } else {
            "?".into()
        };
        eprintln!(
            "fetch: {} / {} ({pct}%), {}/s, ETA {eta}",
            human_bytes(done),
            human_bytes(total),
            human_bytes(rate as u64),
        );
    }
}

impl Reporter for CliReporter {
    fn on_resolved(&self, image: &ImageReference, platform: &Platform, layers: usize) {
        self.note(&format!(
            "resolved {image} for {platform} ({layers} layers)"
        ));
    }

    fn on_download_start(&self, total: u64, present: u64, _blobs: usize) {
        self.total.store(total, Ordering::Relaxed);
        self.done.store(present, Ordering::Relaxed);
        self.present.store(present, Ordering::Relaxed);
        if present > 0 {
            self.note(&format!(
                "resuming: {} of {} already downloaded",
                human_bytes(present),
                human_bytes(total)
            ));
        }
        if let Some(b) = &self.bars {
            b.total.set_length(total);
            b.total.set_position(present);
            b.total.reset_eta();
        }
    }

    fn on_blob_start(&self, blob: &BlobRef, offset: u64) -> usize {
        let Some(b) = &self.bars else { return 0 };
        let bar = b.multi.insert_before(&b.total, ProgressBar::new(blob.size));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>8} [{bar:30}] {binary_bytes:>10}/{binary_total_bytes:<10}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(blob.digest.digest()[..8].to_string());
        bar.set_position(offset);
        let mut blobs = b.blobs.lock().expect("progress lock");
        blobs.push(Some(bar));
        blobs.len() - 1
    }

    fn on_blob_progress(&self, id: usize, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
        if let Some(b) = &self.bars {
            b.total.inc(bytes);
            if let Some(Some(bar)) = b.blobs.lock().expect("progress lock").get(id) {
                bar.inc(bytes);
            }
        }
        self.plain_line(false);
    }

    fn on_blob_restart(&self, id: usize, lost: u64) {
        self.done.fetch_sub(
            lost.min(self.done.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        if let Some(b) = &self.bars {
            b.total
                .set_position(b.total.position().saturating_sub(lost));
            if let Some(Some(bar)) = b.blobs.lock().expect("progress lock").get(id) {
                bar.set_position(0);
            }
        }
    }

    fn on_blob_done(&self, id: usize) {
        if let Some(b) = &self.bars
            && let Some(slot) = b.blobs.lock().expect("progress lock").get_mut(id)
            && let Some(bar) = slot.take()
        {
            bar.finish_and_clear();
            b.multi.remove(&bar);
        }
    }

    fn on_retry(&self, what: &str, attempt: u32, delay: Duration, reason: &str) {
        self.note(&format!(
            "retrying {what} in {:.1}s (attempt {} failed: {reason})",
            delay.as_secs_f64(),
            attempt
        ));
    }

    fn on_finishing(&self) {
        self.plain_line(true);
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

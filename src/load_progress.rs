//! Showing a load's progress: a bar over the archive's bytes on a terminal, a plain line every
//! few seconds elsewhere, or nothing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::{ProgressMode, human_bytes};

/// The command line's [`ferry_load::Reporter`] for load, verify and inspect.
pub struct LoadReporter {
    mode: ProgressMode,
    /// Notices are shown unless the user asked for quiet.
    notices: bool,
    verb: &'static str,
    bar: Option<ProgressBar>,
    total: Mutex<Option<u64>>,
    last: Mutex<Instant>,
}

impl LoadReporter {
    /// A reporter for `mode` (already resolved); `verb` starts plain lines (`load`). Notices
    /// are printed in every mode but `quiet`.
    pub fn new(mode: ProgressMode, verb: &'static str, quiet: bool) -> Self {
        let bar = (mode == ProgressMode::Bars).then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix:>8} [{bar:30}] {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.set_prefix(verb);
            b
        });
        LoadReporter {
            mode,
            notices: !quiet,
            verb,
            bar,
            total: Mutex::new(None),
            last: Mutex::new(Instant::now()),
        }
    }

    /// Removes the bar before results are printed.
    pub fn clear(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl ferry_load::Reporter for LoadReporter {
    fn on_start(&self, total: Option<u64>) {
        *self.total.lock().expect("progress lock") = total;
        if let (Some(b), Some(t)) = (&self.bar, total) {
            b.set_length(t);
        }
    }

    fn on_progress(&self, read: u64) {
        if let Some(b) = &self.bar {
            b.set_position(read);
            return;
        }
        if self.mode != ProgressMode::Plain {
            return;
        }
        let mut last = self.last.lock().expect("progress lock");
        if last.elapsed() < Duration::from_secs(3) {
            return;
        }
        *last = Instant::now();
        match *self.total.lock().expect("progress lock") {
            Some(t) if t > 0 => eprintln!(
                "{}: {} / {} ({}%)",
                self.verb,
                human_bytes(read),
                human_bytes(t),
                read * 100 / t
            ),
            _ => eprintln!("{}: {} read", self.verb, human_bytes(read)),
        }
    }

    fn on_finishing(&self) {
        if let Some(b) = &self.bar {
            b.set_message("verifying");
        }
    }

    fn on_notice(&self, message: &str) {
        if !self.notices {
            return;
        }
        match &self.bar {
            Some(b) => b.println(format!("notice: {message}")),
            None => eprintln!("notice: {message}"),
        }
    }
}

//! Healthchecks: the image's HEALTHCHECK or `--health-cmd` and friends, run by the detached
//! container's monitor every interval with `ferry exec`'s machinery, as Docker runs them:
//! `starting` until the first result, `healthy` after a success, `unhealthy` after `retries`
//! failures in a row (failures in the start period do not count), the last five results kept.
//! `ps` shows `(healthy)`; `inspect` shows `State.Health`.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::{Container, Containers};
use ferry_oci::time::rfc3339_nanos as rfc3339;

/// Docker's `Healthcheck` (durations in nanoseconds, as in image configs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["CMD", args…]`, `["CMD-SHELL", command]` or `["NONE"]`.
    #[serde(default)]
    pub test: Vec<String>,
    /// Between checks (0: default 30 s).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: u64,
    /// For one check (0: default 30 s).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: u64,
    /// Failures in this time after the start do not count (0: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: u64,
    /// Failures in a row that make it unhealthy (0: default 3).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub retries: u32,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

const DEFAULT: Duration = Duration::from_secs(30);

impl HealthConfig {
    fn interval(&self) -> Duration {
        nonzero(self.interval).unwrap_or(DEFAULT)
    }
    fn timeout(&self) -> Duration {
        nonzero(self.timeout).unwrap_or(DEFAULT)
    }
    fn retries(&self) -> u32 {
        if self.retries == 0 { 3 } else { self.retries }
    }
    /// The command to execute in the container.
    pub fn command(&self) -> Option<Vec<String>> {
        match self.test.first().map(String::as_str) {
            Some("CMD") => Some(self.test[1..].to_vec()),
            Some("CMD-SHELL") => Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                self.test[1..].join(" "),
            ]),
            _ => None,
        }
    }
}

fn nonzero(ns: u64) -> Option<Duration> {
    (ns > 0).then(|| Duration::from_nanos(ns))
}

/// `--health-cmd`, `--health-interval`, … and `--no-healthcheck`, with the image's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthOptions {
    /// `--health-cmd` (run with `/bin/sh -c`).
    pub cmd: Option<String>,
    /// `--health-interval`.
    pub interval: Option<Duration>,
    /// `--health-timeout`.
    pub timeout: Option<Duration>,
    /// `--health-start-period`.
    pub start_period: Option<Duration>,
    /// `--health-retries`.
    pub retries: Option<u32>,
    /// `--no-healthcheck`.
    pub disabled: bool,
    /// The image's HEALTHCHECK (filled in by `run` from the image source).
    pub image: Option<HealthConfig>,
}

impl HealthOptions {
    /// The healthcheck the container gets: the image's, with each flag given replacing its
    /// part (as Docker merges them); `None` for no check.
    pub fn resolve(&self) -> Result<Option<HealthConfig>, String> {
        if self.disabled {
            if self.cmd.is_some() {
                return Err("--no-healthcheck conflicts with --health-* options".into());
            }
            return Ok(None);
        }
        for (name, d) in [
            ("--health-interval", self.interval),
            ("--health-timeout", self.timeout),
            ("--health-start-period", self.start_period),
        ] {
            if d.is_some_and(|d| !d.is_zero() && d < Duration::from_millis(1)) {
                return Err(format!("{name} cannot be less than 1ms"));
            }
        }
        let mut h = self.image.clone().unwrap_or_default();
        if let Some(cmd) = &self.cmd {
            h.test = vec!["CMD-SHELL".into(), cmd.clone()];
        }
        let ns = |d: Duration| d.as_nanos().min(u64::MAX as u128) as u64;
        if let Some(d) = self.interval {
            h.interval = ns(d);
        }
        if let Some(d) = self.timeout {
            h.timeout = ns(d);
        }
        if let Some(d) = self.start_period {
            h.start_period = ns(d);
        }
        if let Some(r) = self.retries {
            h.retries = r;
        }
        Ok(h.command().is_some().then_some(h))
    }
}

/// Parses Go's durations as Docker's flags take them: `30s`, `1m30s`, `500ms`, `1.5h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration `{s}` (like 30s, 1m30s, 500ms)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// `State.Health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    /// Failures in a row.
    pub failing_streak: u32,
    /// The last five results, oldest first.
    pub log: Vec<HealthResult>,
}

/// One check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthResult {
    /// When it started (RFC 3339).
    pub start: String,
    /// When it ended.
    pub end: String,
    /// The command's status (-1: it timed out).
    pub exit_code: i32,
    /// Its output, at most 4096 bytes.
    pub output: String,
}

impl Health {
    /// A container just started.
    pub fn starting() -> Self {
        Health {
            status: "starting".into(),
            ..Health::default()
        }
    }

    /// Records a result; `counts` is false for failures in the start period.
    fn record(&mut self, r: HealthResult, retries: u32, counts: bool) {
        if r.exit_code == 0 {
            self.failing_streak = 0;
            self.status = "healthy".into();
        } else if counts {
            self.failing_streak += 1;
            if self.failing_streak >= retries {
                self.status = "unhealthy".into();
            }
        }
        self.log.push(r);
        if self.log.len() > 5 {
            self.log.remove(0);
        }
    }
}

/// The most output a result keeps (Docker's limit).
const MAX_OUTPUT: usize = 4096;

/// A check in progress: a child of the monitor running the command in the container.
struct Running {
    pid: i32,
    out: OwnedFd,
    output: Vec<u8>,
    start: SystemTime,
    deadline: Instant,
    killed: bool,
}

/// Runs a container's healthchecks from its monitor's loop.
pub struct Checker {
    config: HealthConfig,
    container: Container,
    started: Instant,
    next: Instant,
    running: Option<Running>,
}

impl Checker {
    /// For a container started just now (the first check comes after one interval).
    pub fn new(config: HealthConfig, container: Container) -> Self {
        let now = Instant::now();
        let mut s = container.state();
        s.health = Some(Health::starting());
        let _ = container.write_state(&s);
        Checker {
            next: now + config.interval(),
            config,
            container,
            started: now,
            running: None,
        }
    }

    /// The descriptor to poll while a check runs.
    pub fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.running.as_ref().map(|r| r.out.as_fd())
    }

    /// How long the monitor may sleep before [`tick`](Self::tick) has work.
    pub fn timeout(&self) -> Duration {
        let due = match &self.running {
            Some(r) if r.killed => Instant::now() + Duration::from_millis(100),
            Some(r) => r.deadline,
            None => self.next,
        };
        due.saturating_duration_since(Instant::now())
    }

    /// Starts, collects, or times out checks as their time comes.
    pub fn tick(&mut self) {
        let now = Instant::now();
        if let Some(r) = &mut self.running {
            read_some(r);
            if let Some(code) = reap(r.pid) {
                let r = self.running.take().expect("a running check");
                self.finish(r, code);
            } else if now >= r.deadline && !r.killed {
                // SIGTERM reaches the command through the exec process; SIGKILL follows.
                let _ = crate::process::signal::send(r.pid, libc::SIGTERM);
                r.killed = true;
            } else if r.killed && now >= r.deadline + Duration::from_secs(1) {
                let _ = crate::process::signal::send(r.pid, libc::SIGKILL);
            }
            return;
        }
        if now >= self.next {
            self.running = self.spawn();
            if self.running.is_none() {
                self.next = now + self.config.interval();
            }
        }
    }

    /// Stops a check in progress (the container ended).
    pub fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            // Our own child.
            let _ = crate::process::signal::send(r.pid, libc::SIGKILL);
            super::supervise::reap(r.pid);
        }
    }

    fn finish(&mut self, mut r: Running, code: i32) {
        read_some(&mut r);
        let timed_out = r.killed;
        let mut output = String::from_utf8_lossy(&r.output).into_owned();
        if timed_out {
            output = format!(
                "Health check exceeded timeout ({}s)",
                self.config.timeout().as_secs_f64()
            );
        }
        let result = HealthResult {
            start: rfc3339(r.start),
            end: rfc3339(SystemTime::now()),
            exit_code: if timed_out { -1 } else { code },
            output,
        };
        let in_start_period =
            self.started.elapsed() < Duration::from_nanos(self.config.start_period);
        let mut s = self.container.state();
        let mut h = s.health.take().unwrap_or_else(Health::starting);
        h.record(result, self.config.retries(), !in_start_period);
        s.health = Some(h);
        let _ = self.container.write_state(&s);
        self.next = Instant::now() + self.config.interval();
    }

    fn spawn(&self) -> Option<Running> {
        let command = self.config.command()?;
        let (r, w) = crate::process::spawn::pipe().ok()?;
        let start = SystemTime::now();
        // SAFETY: the monitor is single-threaded; the child runs the exec and exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return None;
        }
        if pid == 0 {
            drop(r);
            // The check's output goes to the pipe; the monitor's signal mask is restored by
            // exec's own handling.
            let _ = rustix::stdio::dup2_stdout(&w);
            let _ = rustix::stdio::dup2_stderr(&w);
            drop(w);
            let containers = match self.container.dir.parent() {
                Some(d) => Containers::new(d.to_path_buf()),
                // SAFETY: ends the child.
                None => unsafe { libc::_exit(125) },
            };
            let opts = super::exec::ExecOptions {
                command,
                ..Default::default()
            };
            let code = match super::exec::exec(&containers, &self.container.id, &opts) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}", crate::error_chain(&e));
                    i32::from(e.exit_code())
                }
            };
            // SAFETY: ends the child without the monitor's atexit handlers.
            unsafe { libc::_exit(code.clamp(0, 255)) };
        }
        drop(w);
        // The monitor polls it; reads must not block.
        let _ = rustix::fs::fcntl_setfl(&r, rustix::fs::OFlags::NONBLOCK);
        Some(Running {
            pid,
            out: r,
            output: Vec::new(),
            start,
            deadline: Instant::now() + self.config.timeout(),
            killed: false,
        })
    }
}

fn read_some(r: &mut Running) {
    let mut buf = [0u8; 4096];
    loop {
        match rustix::io::read(&r.out, &mut buf) {
            Ok(n) if n > 0 => {
                let room = MAX_OUTPUT.saturating_sub(r.output.len());
                r.output.extend_from_slice(&buf[..n.min(room)]);
            }
            _ => return,
        }
    }
}

fn reap(pid: i32) -> Option<i32> {
    super::supervise::try_wait(pid)
}

/// The suffix `ps` adds to a running container's status.
pub fn ps_suffix(h: Option<&Health>) -> String {
    match h.map(|h| h.status.as_str()) {
        Some("starting") => " (health: starting)".into(),
        Some(s) if !s.is_empty() => format!(" ({s})"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn flags_replace_parts_of_the_images_check() {
        let image = HealthConfig {
            test: vec!["CMD".into(), "/check".into()],
            interval: 5_000_000_000,
            retries: 5,
            ..HealthConfig::default()
        };
        let opts = HealthOptions {
            interval: Some(Duration::from_secs(1)),
            image: Some(image.clone()),
            ..HealthOptions::default()
        };
        let h = opts.resolve().unwrap().unwrap();
        assert_eq!(h.test, image.test);
        assert_eq!((h.interval, h.retries), (1_000_000_000, 5));
        let opts = HealthOptions {
            cmd: Some("curl -f localhost".into()),
            ..opts
        };
        assert_eq!(
            opts.resolve().unwrap().unwrap().command().unwrap(),
            ["/bin/sh", "-c", "curl -f localhost"]
        );
        let none = HealthOptions {
            disabled: true,
            image: Some(image),
            ..HealthOptions::default()
        };
        assert_eq!(none.resolve().unwrap(), None);
        let nothing = HealthOptions::default();
        assert_eq!(nothing.resolve().unwrap(), None);
    }

    #[test]
    fn status_follows_dockers_rules() {
        let ok = HealthResult::default();
        let bad = HealthResult {
            exit_code: 1,
            ..HealthResult::default()
        };
        let mut h = Health::starting();
        h.record(bad.clone(), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0));
        h.record(bad.clone(), 2, true);
        assert_eq!(h.status, "starting");
        h.record(bad.clone(), 2, true);
        assert_eq!((h.status.as_str(), h.failing_streak), ("unhealthy", 2));
        h.record(ok, 2, true);
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
        for _ in 0..10 {
            h.record(bad.clone(), 2, true);
        }
        assert_eq!(h.log.len(), 5);
        assert_eq!(ps_suffix(Some(&h)), " (unhealthy)");
        assert_eq!(ps_suffix(Some(&Health::starting())), " (health: starting)");
    }
}

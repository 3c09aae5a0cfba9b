//! `state.json`: whether a container runs, its process, and how it ended.

use serde::{Deserialize, Serialize};

use crate::net::ports::PublishedPort;

/// The life of a container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made, not started (or failed to start).
    #[default]
    Created,
    /// Its process runs.
    Running,
    /// Its process ended.
    Exited,
    /// Its process ended and its monitor starts it again after a delay (`--restart`).
    Restarting,
}

/// The changing part of a container.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// The status.
    pub status: Status,
    /// Host pid of the process to signal (the container's PID 1, or the external runtime).
    #[serde(default)]
    pub pid: i32,
    /// That process's start time (field 22 of `/proc/<pid>/stat`), so a reused pid is not
    /// mistaken for the container.
    #[serde(default)]
    pub pid_start: u64,
    /// Start time, seconds since the epoch.
    #[serde(default)]
    pub started: u64,
    /// End time, seconds since the epoch.
    #[serde(default)]
    pub finished: u64,
    /// Docker's exit status (128+N for signal N).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Restarts made by its restart policy since the last `ferry start`.
    #[serde(default)]
    pub restart_count: u32,
    /// The detached monitor watching it (0 in the foreground).
    #[serde(default)]
    pub monitor_pid: i32,
    /// The monitor's start time (see `pid_start`).
    #[serde(default)]
    pub monitor_start: u64,
    /// Ports it holds on the host while it runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PublishedPort>,
    /// The port proxy's pid while it runs (0: none).
    #[serde(default)]
    pub proxy_pid: i32,
    /// Its healthcheck's results, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<super::health::Health>,
}

impl State {
    /// Whether the recorded process still exists and is the same process.
    pub fn alive(&self) -> bool {
        self.pid > 0 && start_time(self.pid) == Some(self.pid_start)
    }

    /// Whether the recorded monitor still exists and is the same process.
    pub fn monitor_alive(&self) -> bool {
        self.monitor_pid > 0 && start_time(self.monitor_pid) == Some(self.monitor_start)
    }
}

/// A process's start time in clock ticks since boot, or `None` if it does not exist.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses; fields resume after the
    // last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // After the name: state is field 3, start time field 22.
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive() {
        let pid = std::process::id() as i32;
        let s = State {
            status: Status::Running,
            pid,
            pid_start: start_time(pid).unwrap(),
            ..Default::default()
        };
        assert!(s.alive());
        assert!(!State { pid_start: 1, ..s }.alive());
    }
}

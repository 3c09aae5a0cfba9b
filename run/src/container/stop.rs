//! `ferry stop [-t N] C`: the stop signal (`--stop-signal`, else the image's StopSignal, else
//! SIGTERM), then SIGKILL after N seconds (`--stop-timeout`, else 10), as Docker does. A
//! stopped container stays stopped: its restart policy no longer applies.

use std::time::{Duration, Instant};

use super::kill::signal_container;
use super::{Container, Containers, Status};
use crate::error::RunError;
use crate::process::signal;

/// Stops the container named `reference`; returns once it has exited. `timeout` `None` is
/// the container's own (`--stop-timeout`, else 10 seconds).
pub fn stop(
    containers: &Containers,
    reference: &str,
    timeout: Option<Duration>,
) -> Result<(), RunError> {
    let (c, meta) = containers.find(reference)?;
    let timeout =
        timeout.unwrap_or_else(|| Duration::from_secs(meta.host.stop_timeout.unwrap_or(10)));
    match c.current_state().status {
        Status::Running => {}
        Status::Restarting => {
            // Between two runs: only the monitor is there to stop.
            signal_container(&c, &meta, libc::SIGTERM)?;
            wait_stopped(&c, Duration::from_secs(10));
            return Ok(());
        }
        _ => return Ok(()),
    }
    let sig = meta
        .stop_signal
        .as_deref()
        .and_then(signal::parse)
        .unwrap_or(libc::SIGTERM);
    signal_container(&c, &meta, sig)?;
    if wait_stopped(&c, timeout) {
        return Ok(());
    }
    let _ = signal_container(&c, &meta, libc::SIGKILL);
    wait_stopped(&c, Duration::from_secs(10));
    Ok(())
}

/// Waits until the container's process has exited and its supervisor recorded it (or is gone).
pub fn wait_stopped(c: &Container, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let s = c.state();
        let done = match s.status {
            Status::Running => !s.alive(),
            Status::Restarting => !s.monitor_alive(),
            _ => true,
        };
        if done {
            // Give the supervisor a moment to record the exit code (and free the ports).
            let grace = Instant::now() + Duration::from_millis(2000);
            while matches!(c.state().status, Status::Running | Status::Restarting)
                && Instant::now() < grace
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

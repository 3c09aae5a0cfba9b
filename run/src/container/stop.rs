//! `ferry stop [-t N] C`: the stop signal (the image's StopSignal, else SIGTERM), then SIGKILL
//! after N seconds (10 by default), as Docker does.

use std::time::{Duration, Instant};

use super::kill::signal_container;
use super::{Container, Containers, Status};
use crate::error::RunError;
use crate::process::signal;

/// Stops the container named `reference`; returns once it has exited.
pub fn stop(containers: &Containers, reference: &str, timeout: Duration) -> Result<(), RunError> {
    let (c, meta) = containers.find(reference)?;
    if c.current_state().status != Status::Running {
        return Ok(());
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
        if s.status != Status::Running || !s.alive() {
            // Give the supervisor a moment to record the exit code.
            let grace = Instant::now() + Duration::from_millis(500);
            while c.state().status == Status::Running && Instant::now() < grace {
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

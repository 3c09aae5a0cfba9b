//! `ferry kill [-s SIG] C`: signal a running container's main process.

use super::{Container, Containers, Meta, Status};
use crate::error::RunError;

/// Sends `signal` to the container named `reference`.
pub fn kill(containers: &Containers, reference: &str, signal: i32) -> Result<(), RunError> {
    let (c, meta) = containers.find(reference)?;
    signal_container(&c, &meta, signal)
}

/// Sends `signal` to `c` if it runs.
pub fn signal_container(c: &Container, meta: &Meta, signal: i32) -> Result<(), RunError> {
    let state = c.current_state();
    if state.status == Status::Restarting {
        // Between two runs: the monitor gives up on restarting (see `request_stop`).
        c.request_stop()?;
        // The monitor, whose identity was checked through its start time.
        let _ = crate::process::signal::send(state.monitor_pid, libc::SIGTERM);
        return Ok(());
    }
    if state.status != Status::Running {
        return Err(RunError::NotRunning(c.short_id().to_string()));
    }
    // Docker's "manually stopped": whatever the signal, the restart policy no longer applies.
    c.request_stop()?;
    signal_process(c, meta, state.pid, signal)
}

/// Sends `signal` to the container whose supervised process is `pid` (ferry's runtime: its
/// first process; an external runtime: the runtime, which is asked to do it).
pub fn signal_process(c: &Container, meta: &Meta, pid: i32, signal: i32) -> Result<(), RunError> {
    if let Some(runtime) = &meta.runtime {
        // The runtime's own process is not the container: SIGKILL to it would orphan the
        // container. Its `kill` reaches the container itself.
        let st = super::external::command(runtime)
            .args(["kill", &c.id, &signal.to_string()])
            .status()
            .map_err(|source| RunError::Runtime {
                runtime: runtime.clone(),
                source,
            })?;
        if !st.success() && c.current_state().status == Status::Running {
            return Err(RunError::Runtime {
                runtime: runtime.clone(),
                source: std::io::Error::other(format!("`kill` exited with {st}")),
            });
        }
        return Ok(());
    }
    // From outside its PID namespace the container's PID 1 receives SIGKILL always, other
    // signals only if it handles them, exactly as under Docker.
    // The pid's identity was checked through its start time.
    crate::process::signal::send(pid, signal).map_err(|source| RunError::Sys {
        action: format!("signal container {}", c.short_id()),
        source,
    })
}

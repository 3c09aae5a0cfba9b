//! `ferry wait C`: block until the container stops for good (a restart policy's restarts do
//! not count), then give its exit status.

use std::time::Duration;

use super::{Container, Containers, State, Status};
use crate::error::RunError;

/// Waits for the container named `reference`; returns its exit status.
pub fn wait(containers: &Containers, reference: &str) -> Result<i32, RunError> {
    let (c, _) = containers.find(reference)?;
    wait_container(&c)
}

/// Waits for `c` to be exited; a container removed meanwhile (`--rm`) gives the status it
/// recorded on its way out.
pub fn wait_container(c: &Container) -> Result<i32, RunError> {
    let removing = c
        .dir
        .with_file_name(format!(".{}.removing", c.id))
        .join("state.json");
    // When the process is gone but nobody has recorded how it ended yet.
    let mut unrecorded_since: Option<std::time::Instant> = None;
    loop {
        let s = if c.dir.exists() {
            let s = c.state();
            let settling = match s.status {
                // Its supervisor records the status in a moment (a monitor that is gone never
                // will; a foreground `ferry run` is given two seconds).
                Status::Running if !s.alive() => {
                    let since = *unrecorded_since.get_or_insert_with(std::time::Instant::now);
                    s.monitor_alive() || since.elapsed() < Duration::from_secs(2)
                }
                _ => false,
            };
            if settling {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            c.current_state()
        } else {
            match super::read_json::<State>(&removing) {
                Ok(s) => s,
                Err(_) => return Err(RunError::NoSuchContainer(c.short_id().to_string())),
            }
        };
        if s.status == Status::Exited {
            // A supervisor that died without recording the status: Docker's "unknown" is -1;
            // shells see 255.
            return Ok(s.exit_code.unwrap_or(255));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

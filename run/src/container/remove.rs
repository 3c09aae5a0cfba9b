//! `ferry rm [-f] C`: remove a stopped container (with `-f`, kill it first).

use std::time::Duration;

use super::kill::signal_container;
use super::stop::wait_stopped;
use super::{Containers, Status};
use crate::error::RunError;
use crate::syscall::{LinuxSyscall, Syscall};

/// Removes the container named `reference`; returns its name for the caller to print.
pub fn remove(containers: &Containers, reference: &str, force: bool) -> Result<String, RunError> {
    let (c, meta) = containers.find(reference)?;
    if c.current_state().status == Status::Running {
        if !force {
            return Err(RunError::Running(c.short_id().to_string()));
        }
        let _ = signal_container(&c, &meta, libc::SIGKILL);
        wait_stopped(&c, Duration::from_secs(10));
    }
    for d in &meta.cgroups {
        let _ = std::fs::remove_dir(d);
    }
    // An external runtime's rootfs is mounted on the host; a dead supervisor may have left it.
    let _ = LinuxSyscall.umount2(&crate::rootfs::rootfs_dir(&c.dir), libc::MNT_DETACH);
    // Taken out of sight in one step before it is deleted: a foreground `--rm` whose container
    // was just killed removes it at the same moment, and whichever renames it first deletes it.
    // Losing that race means the container is gone, which is what was asked.
    let trash = super::run::trash_path(&c.dir);
    match std::fs::rename(&c.dir, &trash) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(reference.to_string()),
        Err(e) => return Err(crate::error::io_err("remove", &c.dir)(e)),
    }
    super::run::remove_dir(&trash).map_err(crate::error::io_err("remove", &c.dir))?;
    Ok(reference.to_string())
}

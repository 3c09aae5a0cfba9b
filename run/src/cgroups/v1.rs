//! cgroup v1: one hierarchy per controller, one file per limit.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::{mkdir, write};
use crate::error::RunError;

/// Makes `<root>/ferry/<id>`.
pub fn make(root: &Path, id: &str) -> Result<PathBuf, RunError> {
    let parent = root.join("ferry");
    mkdir(&parent)?;
    let dir = parent.join(id);
    mkdir(&dir)?;
    Ok(dir)
}

/// Writes `controller`'s limits.
pub fn apply(dir: &Path, controller: &str, r: &LinuxResources) -> Result<(), RunError> {
    match controller {
        "memory" => {
            if let Some(m) = r.memory() {
                if let Some(limit) = m.limit() {
                    write(dir, "memory.limit_in_bytes", &limit.to_string())?;
                }
                // memsw exists only with swap accounting; without it swap is not limited.
                if let Some(swap) = m.swap()
                    && dir.join("memory.memsw.limit_in_bytes").exists()
                {
                    write(dir, "memory.memsw.limit_in_bytes", &swap.to_string())?;
                }
            }
        }
        "cpu" => {
            if let Some(c) = r.cpu() {
                if let Some(p) = c.period() {
                    write(dir, "cpu.cfs_period_us", &p.to_string())?;
                }
                if let Some(q) = c.quota() {
                    write(dir, "cpu.cfs_quota_us", &q.to_string())?;
                }
            }
        }
        "pids" => {
            if let Some(p) = r.pids() {
                write(dir, "pids.max", &super::pids_max(p.limit()))?;
            }
        }
        _ => {}
    }
    Ok(())
}

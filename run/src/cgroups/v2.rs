//! cgroup v2: one hierarchy; controllers are enabled top-down in `cgroup.subtree_control`.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::{mkdir, write};
use crate::error::RunError;

/// Makes `<root>/ferry/<id>` with `controller` enabled for it.
pub fn make(root: &Path, id: &str, controller: &str) -> Result<PathBuf, RunError> {
    let parent = root.join("ferry");
    mkdir(&parent)?;
    let enable = format!("+{controller}");
    write(root, "cgroup.subtree_control", &enable)?;
    write(&parent, "cgroup.subtree_control", &enable)?;
    let dir = parent.join(id);
    mkdir(&dir)?;
    Ok(dir)
}

/// Writes `controller`'s limits.
pub fn apply(dir: &Path, controller: &str, r: &LinuxResources) -> Result<(), RunError> {
    match controller {
        "memory" => {
            if let Some(m) = r.memory()
                && let Some(limit) = m.limit()
            {
                write(dir, "memory.max", &limit.to_string())?;
                // v2 limits swap separately from memory.
                if let Some(swap) = m.swap()
                    && dir.join("memory.swap.max").exists()
                {
                    write(dir, "memory.swap.max", &(swap - limit).max(0).to_string())?;
                }
            }
        }
        "cpu" => {
            if let Some(c) = r.cpu() {
                let quota = c.quota().filter(|q| *q > 0);
                let period = c.period().unwrap_or(100_000);
                let v = match quota {
                    Some(q) => format!("{q} {period}"),
                    None => format!("max {period}"),
                };
                write(dir, "cpu.max", &v)?;
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

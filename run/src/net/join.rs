//! `--network container:NAME`: the container shares NAME's network namespace (a sidecar sees
//! NAME's `lo` and ports). ferry's runtime enters that namespace in the supervisor just for
//! the `clone`, so the container is born in it; an external runtime gets its path in
//! `config.json`. NAME must be running, as with Docker.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use rustix::thread::LinkNameSpaceType;

use crate::container::{Containers, Status};
use crate::error::RunError;

/// `/proc/<pid>/ns/net` of the running container `reference`.
pub fn namespace_of(containers: &Containers, reference: &str) -> Result<PathBuf, RunError> {
    let (c, meta) = containers.find(reference)?;
    let s = c.current_state();
    if s.status != Status::Running {
        return Err(RunError::Invalid(format!(
            "cannot join network of a non running container: {}",
            meta.name
        )));
    }
    let pid = match &meta.runtime {
        Some(runtime) => runtime_pid(runtime, &c.id)?,
        None => s.pid,
    };
    Ok(Path::new("/proc")
        .join(pid.to_string())
        .join("ns")
        .join("net"))
}

/// Names `path` as the network namespace to join in `spec` (replacing a new one).
pub fn set_path(spec: &mut Spec, path: &Path) {
    let Some(linux) = spec.linux_mut() else {
        return;
    };
    let mut nss = linux.namespaces().clone().unwrap_or_default();
    nss.retain(|ns| ns.typ() != LinuxNamespaceType::Network);
    let mut ns = oci_spec::runtime::LinuxNamespace::default();
    ns.set_typ(LinuxNamespaceType::Network);
    ns.set_path(Some(path.to_path_buf()));
    nss.push(ns);
    linux.set_namespaces(Some(nss));
}

/// The path of the network namespace `spec` joins, if it joins one.
pub fn joined_path(spec: &Spec) -> Option<PathBuf> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|ns| ns.typ() == LinuxNamespaceType::Network)?
        .path()
        .clone()
}

/// The caller, moved into another network namespace until dropped.
#[derive(Debug)]
pub struct Entered {
    back: OwnedFd,
}

/// Moves the calling (single-threaded) process into the network namespace at `path`.
pub fn enter(path: &Path) -> Result<Entered, RunError> {
    let sys = |action: String| move |source: std::io::Error| RunError::Sys { action, source };
    let back = std::fs::File::open("/proc/self/ns/net")
        .map(OwnedFd::from)
        .map_err(sys("open this process's network namespace".into()))?;
    let target = std::fs::File::open(path)
        .map(OwnedFd::from)
        .map_err(sys(format!("open {}", path.display())))?;
    rustix::thread::move_into_link_name_space(target.as_fd(), Some(LinkNameSpaceType::Network))
        .map_err(|e| sys(format!("join network namespace {}", path.display()))(e.into()))?;
    Ok(Entered { back })
}

impl Drop for Entered {
    fn drop(&mut self) {
        let _ = rustix::thread::move_into_link_name_space(
            self.back.as_fd(),
            Some(LinkNameSpaceType::Network),
        );
    }
}

/// The host pid of a container run by an external OCI runtime (`RUNTIME state ID`), waiting
/// a little for a container that is still being created.
pub fn runtime_pid(runtime: &Path, id: &str) -> Result<i32, RunError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = std::process::Command::new(runtime)
            .args(["state", id])
            .stderr(std::process::Stdio::null())
            .output()
            .map_err(|source| RunError::Runtime {
                runtime: runtime.to_path_buf(),
                source,
            })?;
        let pid = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v["pid"].as_i64())
            .filter(|p| *p > 0);
        if let Some(pid) = pid {
            return Ok(pid as i32);
        }
        if Instant::now() >= deadline {
            return Err(RunError::Runtime {
                runtime: runtime.to_path_buf(),
                source: std::io::Error::other(format!("`state {id}` names no process")),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

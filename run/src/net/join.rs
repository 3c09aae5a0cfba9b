//! `--network container:NAME`: the container shares NAME's network namespace (a sidecar sees
//! NAME's `lo` and ports). NAME is looked up again at every start (it may have restarted with
//! a new process since): ferry's runtime opens the namespace, checks that the process it
//! belongs to is still NAME's (a pid can be reused), and enters it in the supervisor just for
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
    Ok(open_namespace(containers, reference)?.0)
}

/// The network namespace of the running container `reference`: its path, and a descriptor
/// opened while the process was checked to be that container's.
fn open_namespace(
    containers: &Containers,
    reference: &str,
) -> Result<(PathBuf, OwnedFd), RunError> {
    let (c, meta) = containers.find(reference)?;
    let not_running = || {
        RunError::Invalid(format!(
            "cannot join network of a non running container: {}",
            meta.name
        ))
    };
    let s = c.current_state();
    if s.status != Status::Running || !s.alive() && meta.runtime.is_none() {
        return Err(not_running());
    }
    let pid = match &meta.runtime {
        Some(runtime) => runtime_pid(runtime, &c.id)?,
        None => s.pid,
    };
    let path = Path::new("/proc")
        .join(pid.to_string())
        .join("ns")
        .join("net");
    let fd = std::fs::File::open(&path)
        .map(OwnedFd::from)
        .map_err(|_| not_running())?;
    // Still the same process once its namespace is held open.
    if meta.runtime.is_none() && !c.state().alive() {
        return Err(not_running());
    }
    Ok((path, fd))
}

/// For a container started with `container:NAME`: looks NAME up again, names its namespace
/// in `spec` (rewriting `config.json` for an external runtime), and for ferry's own runtime
/// enters it until the returned guard is dropped. `None` for other networks.
pub fn prepare_start(
    containers: &Containers,
    network: &crate::options::Network,
    spec: &mut Spec,
    bundle: Option<&Path>,
) -> Result<Option<Entered>, RunError> {
    let crate::options::Network::Container(name) = network else {
        return Ok(None);
    };
    let (path, fd) = open_namespace(containers, name)?;
    set_path(spec, &path);
    if let Some(dir) = bundle {
        crate::container::write_json(&dir.join("config.json"), spec)?;
        return Ok(None);
    }
    enter_fd(&fd, &path).map(Some)
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

/// The caller, moved into another network namespace until dropped.
#[derive(Debug)]
pub struct Entered {
    back: OwnedFd,
}

/// Moves the calling (single-threaded) process into the network namespace `target` (opened
/// from `path`, named in messages).
fn enter_fd(target: &OwnedFd, path: &Path) -> Result<Entered, RunError> {
    let sys = |action: String| move |source: std::io::Error| RunError::Sys { action, source };
    let back = std::fs::File::open("/proc/self/ns/net")
        .map(OwnedFd::from)
        .map_err(sys("open this process's network namespace".into()))?;
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

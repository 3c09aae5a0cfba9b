//! `ferry start [-a] [-i] C`: start a stopped container again from its directory, under a
//! monitor as with `run -d`; `-a` follows its output and returns its exit status, `-i`
//! (with `-a`) runs it in the foreground with standard input, as `ferry run -i` does.

use super::run::{self, Prepared};
use super::{Container, Containers, Meta, Status};
use crate::cgroups::{self, Cgroup, Layout};
use crate::error::RunError;
use crate::image::ImageSource;
use crate::options::Runtime;
use crate::rootfs::{self, RootSource, overlay};

/// How `ferry start` attaches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartOptions {
    /// `-a`: follow the output, return the exit status.
    pub attach: bool,
    /// `-i`: standard input too (the container runs in the foreground).
    pub interactive: bool,
}

/// Starts the container named `reference`. Returns its exit status when attached, else
/// `None` once it runs. A running container is left alone, as Docker does.
pub fn start(
    source: &dyn ImageSource,
    containers: &Containers,
    reference: &str,
    opts: StartOptions,
) -> Result<Option<i32>, RunError> {
    let (c, meta) = containers.find(reference)?;
    let state = c.current_state();
    if matches!(state.status, Status::Running | Status::Restarting) {
        return Ok(None);
    }
    // A start by the user: the restart policy applies again, counting from zero.
    c.clear_stop_request();
    let mut s = state;
    s.restart_count = 0;
    s.monitor_pid = 0;
    s.ports.clear();
    c.write_state(&s)?;
    let mut p = reload(source, c, meta)?;
    if opts.attach && opts.interactive {
        p.opts.interactive = true;
        p.opts.detach = false;
        return run::attach(p, source).map(Some);
    }
    let log_start = std::fs::metadata(p.container.log_path()).map_or(0, |m| m.len());
    let c = p.container.clone();
    super::monitor::launch(p, source)?;
    if !opts.attach {
        return Ok(None);
    }
    super::logs::follow_from(&c, log_start)?;
    Ok(Some(super::wait::wait_container(&c)?))
}

/// A container's `Prepared` from its directory: `config.json`, its image's layers, its
/// host config.
pub fn reload(
    source: &dyn ImageSource,
    container: Container,
    meta: Meta,
) -> Result<Prepared, RunError> {
    let spec: oci_spec::runtime::Spec = super::read_json(&container.dir.join("config.json"))?;
    let image = source.image(&meta.image_id).map_err(|e| RunError::Image {
        reference: meta.image.clone(),
        source: e,
    })?;
    let runtime = match &meta.runtime {
        Some(r) => Runtime::External(r.clone()),
        None => Runtime::Ferry,
    };
    let opts = meta.host.options(runtime, meta.auto_remove);
    let source = if meta.rootfs_copy {
        RootSource::Directory
    } else {
        RootSource::Overlay(overlay::plan(
            &image.layers,
            &container.dir.join("upper"),
            &container.dir.join("work"),
        ))
    };
    let mut p = Prepared {
        container,
        meta,
        spec,
        layers: image.layers,
        opts,
        cgroup: Cgroup::default(),
        source,
        host_mounted: false,
        proxy: None,
        published: Vec::new(),
        existing: true,
    };
    rearm(&mut p)?;
    Ok(p)
}

/// Makes again what ending a run removed: the container's cgroups (ferry's runtime), and
/// the mount point of a rootfs an external runtime had mounted.
pub fn rearm(p: &mut Prepared) -> Result<(), RunError> {
    if p.meta.runtime.is_none()
        && let Some(r) = p.spec.linux().as_ref().and_then(|l| l.resources().as_ref())
        && cgroups::limits(r)
    {
        p.cgroup = cgroups::create(&Layout::detect(), &p.container.id, r)?;
    }
    let rootfs = rootfs::rootfs_dir(&p.container.dir);
    if !rootfs.exists() {
        std::fs::create_dir(&rootfs).map_err(crate::error::io_err("create", &rootfs))?;
    }
    Ok(())
}

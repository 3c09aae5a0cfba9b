//! `ferry run`: image + flags → container directory (an OCI bundle) → a running container,
//! watched in the foreground or by a detached monitor.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use super::{Container, Containers, Meta, State, Status, now, supervise, tty};
use crate::cgroups::{self, Cgroup, Layout};
use crate::error::{RunError, io_err};
use crate::image::{Image, ImageSource, SourceLock};
use crate::options::{Network, RootfsMode, RunOptions, Runtime};
use crate::process::init::InitPlan;
use crate::process::spawn::{self, SpawnError, Stdio};
use crate::rootfs::{self, RootSource, overlay};
use crate::seccomp::Program;
use crate::spec::{self, SpecContext};

/// How `ferry run` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The container ran in the foreground and exited with this status.
    Exited(i32),
    /// The container runs detached; its full ID.
    Detached(String),
}

/// A container made and ready to start.
pub struct Prepared {
    /// Its directory.
    pub container: Container,
    /// `ferry.json`.
    pub meta: Meta,
    /// `config.json`.
    pub spec: Spec,
    /// The image's layers.
    pub layers: Vec<PathBuf>,
    /// The flags.
    pub opts: RunOptions,
    /// Its cgroups (ferry's runtime only).
    pub cgroup: Cgroup,
    /// overlayfs or a copy.
    pub source: RootSource,
    /// An overlay mounted on the host for an external runtime, to unmount at the end.
    pub host_mounted: bool,
    /// The port proxy while the container runs.
    pub proxy: Option<crate::net::Proxy>,
    /// The ports it holds while it runs.
    pub published: Vec<crate::net::ports::PublishedPort>,
    /// Made by an earlier `ferry run` (`ferry start`): a failed start leaves it stopped
    /// instead of removing it.
    pub existing: bool,
}

/// Runs `image_ref` as `docker run` would.
pub fn run(
    source: &dyn ImageSource,
    containers: &Containers,
    image_ref: &str,
    opts: RunOptions,
) -> Result<Outcome, RunError> {
    // Docker's client refuses this before anything starts: the container's terminal would wait
    // for keys that never come (a pipe cannot be put in raw mode or give Ctrl-D as EOF).
    if opts.tty && opts.interactive && !opts.detach && !tty::is_terminal(std::io::stdin()) {
        return Err(RunError::NotATty);
    }
    let (p, lock) = prepare_from_store(source, containers, image_ref, opts)?;
    // ferry.json now names the image: the store keeps it. The lock must not reach the
    // container's processes either.
    drop(lock);
    if p.opts.detach {
        return super::monitor::launch(p, source).map(Outcome::Detached);
    }
    attach(p, source).map(Outcome::Exited)
}

/// What `run` and `create` do before anything starts: the image locked and read, the
/// container prepared (with the image's HEALTHCHECK), its root file system copied where
/// overlayfs cannot use the layers, new named volumes filled from the image. The lock comes
/// back to be dropped once `ferry.json` names the image.
pub(crate) fn prepare_from_store(
    source: &dyn ImageSource,
    containers: &Containers,
    image_ref: &str,
    mut opts: RunOptions,
) -> Result<(Prepared, SourceLock), RunError> {
    let (lock, image) = crate::image::locked_image(source, image_ref)?;
    opts.health.image = source.healthcheck(&image);
    let mut p = prepare(containers, &image, image_ref, opts)?;
    if !image.overlay_ready && p.source != RootSource::Directory {
        use_copy(&mut p, Some(source))?;
    }
    crate::volume::fill_new(&p, source)?;
    Ok((p, lock))
}

/// Runs a prepared container in the foreground and cleans up after it; returns its exit
/// status. When its restart policy restarts it, a detached monitor takes over (as Docker's
/// daemon restarts a container after `docker run` returned).
pub fn attach(mut p: Prepared, source: &dyn ImageSource) -> Result<i32, RunError> {
    let started = std::time::Instant::now();
    let result = foreground(&mut p, source);
    finish(&mut p, result.as_ref().ok().copied());
    if let Ok(code) = result {
        super::monitor::adopt(p, source, code, started.elapsed());
    }
    result
}

/// Makes the container directory: `/etc` files, `config.json`, `ferry.json`, overlay dirs and
/// cgroups. On failure nothing is left behind.
pub fn prepare(
    containers: &Containers,
    image: &Image,
    image_ref: &str,
    opts: RunOptions,
) -> Result<Prepared, RunError> {
    let (euid, egid) = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    let rootless = (euid != 0).then_some((euid, egid));
    let has_limits = opts.memory.is_some() || opts.cpus.is_some() || opts.pids_limit.is_some();
    if rootless.is_some() && has_limits {
        return Err(RunError::Unsupported(
            "--memory, --cpus and --pids-limit without root".into(),
        ));
    }
    if opts.init && matches!(opts.runtime, Runtime::External(_)) {
        return Err(RunError::Unsupported("--init with --runtime".into()));
    }
    if opts.rm && !opts.restart.is_no() {
        return Err(RunError::Invalid(
            "Conflicting options: --restart and --rm".into(),
        ));
    }
    let mut opts = opts;
    let config = image.config.config().clone().unwrap_or_default();
    let net = crate::net::plan(
        containers,
        config.exposed_ports().as_deref().unwrap_or_default(),
        &mut opts,
        rootless.is_some(),
    )?;
    let health = opts.health.resolve().map_err(RunError::Invalid)?;
    let stop_signal = match &opts.stop_signal {
        Some(sig) => {
            crate::process::signal::parse(sig)
                .ok_or_else(|| RunError::Invalid(format!("Invalid signal: {sig}")))?;
            Some(sig.clone())
        }
        None => config.stop_signal().clone(),
    };
    let (container, name) = containers.create(opts.name.as_deref())?;
    let guard = RemoveOnDrop(Some(container.dir.clone()));
    let dir = container.dir.clone();
    let hostname = opts
        .hostname
        .clone()
        .or_else(|| net.shared.as_ref().map(|s| s.hostname.clone()))
        .unwrap_or_else(|| container.short_id().to_string());
    write_etc_files(&dir, &hostname, &opts.network)?;
    crate::net::etc::apply(&dir, &opts.add_hosts, &opts.dns)?;
    if let Some(shared) = &net.shared {
        crate::net::copy_shared_files(&dir, shared)?;
    }
    let volumes = crate::volume::Volumes::of(containers);
    let mounts = crate::volume::mounts::plan(
        &volumes,
        &mut opts,
        config.volumes().as_deref().unwrap_or_default(),
    )?;
    let external = matches!(opts.runtime, Runtime::External(_));
    let cgroups_path = has_limits.then(|| cgroups::path_for(&container.id));
    let mut spec = spec::build(
        image,
        &opts,
        &SpecContext {
            container_dir: &dir,
            hostname: &hostname,
            rootless,
            cgroups_path,
            image_name: image_ref,
        },
    )?;
    if let Some(shared) = &net.shared {
        crate::net::join::set_path(&mut spec, &shared.path);
    }
    super::write_json(&dir.join("config.json"), &spec)?;

    let cgroup = match (
        external,
        spec.linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .filter(|r| cgroups::limits(r)),
    ) {
        (false, Some(r)) => cgroups::create(&Layout::detect(), &container.id, r)?,
        _ => Cgroup::default(),
    };
    let meta = Meta {
        image_id: image.id.to_string(),
        id: container.id.clone(),
        name,
        image: image_ref.to_string(),
        command: spec
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default(),
        created: now(),
        runtime: match &opts.runtime {
            Runtime::External(r) => Some(r.clone()),
            Runtime::Ferry => None,
        },
        auto_remove: opts.rm,
        stop_signal,
        rootfs_copy: false,
        cgroups: cgroup.dirs.clone(),
        host: super::host_config::HostConfig::from_options(&opts, net.exposed, mounts, health),
    };
    if let Err(e) = container.write_meta(&meta) {
        cgroup.remove();
        return Err(e);
    }
    let rootfs = rootfs::rootfs_dir(&dir);
    let upper = dir.join("upper");
    let work = dir.join("work");
    for d in [&rootfs, &upper, &work] {
        std::fs::create_dir(d).map_err(io_err("create", d))?;
    }
    let mut p = Prepared {
        container,
        meta,
        spec,
        layers: image.layers.clone(),
        cgroup,
        source: RootSource::Overlay(overlay::plan(&image.layers, &upper, &work)),
        opts,
        host_mounted: false,
        proxy: None,
        published: Vec::new(),
        existing: false,
    };
    if p.opts.rootfs == RootfsMode::Copy {
        use_copy(&mut p, None)?;
    }
    // Volumes (and missing bind directories, as Docker makes them) once nothing can fail.
    crate::volume::mounts::make(&volumes, &p.meta.host.mounts)?;
    std::mem::forget(guard);
    Ok(p)
}

/// Removes a half-made container directory.
struct RemoveOnDrop(Option<PathBuf>);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let _ = remove_dir(&d);
        }
    }
}

/// Removes a container directory; the overlay work dir has a mode-0 subdirectory that a
/// rootless owner must open up first.
pub fn remove_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(
                dir.join("work/work"),
                std::fs::Permissions::from_mode(0o700),
            );
            std::fs::remove_dir_all(dir)
        }
        other => other,
    }
}

/// Where a container directory goes while it is deleted: `.<id>.removing` beside it, which
/// `Containers::all` does not list.
pub fn trash_path(dir: &Path) -> PathBuf {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    dir.with_file_name(format!(".{name}.removing"))
}

/// Removes a finished container's directory without making the caller wait: it is renamed
/// out of the way at once (ferry no longer sees it), and a detached process deletes it.
/// Deleting directories is the slowest part of a short container's life on ext4 with
/// `discard` (about 4 ms per `rmdir` on this project's hosts).
pub fn remove_in_background(dir: &Path) {
    let trash = trash_path(dir);
    let target = match std::fs::rename(dir, &trash) {
        Ok(()) => trash,
        // `ferry rm -f` took it first.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(_) => dir.to_path_buf(),
    };
    // A double fork: the remover is nobody's child once the first one has exited.
    // SAFETY: single-threaded; the children only delete files and exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let _ = rustix::process::setsid();
        // SAFETY: as above; `_exit` skips the parent's atexit handlers.
        unsafe {
            if libc::fork() == 0 {
                let _ = remove_dir(&target);
                libc::_exit(0);
            }
            libc::_exit(0);
        }
    }
    if pid > 0 {
        supervise::reap(pid);
    } else {
        let _ = remove_dir(&target);
    }
}

/// Writes the container's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` into `dir`.
pub(crate) fn write_etc_files(
    dir: &Path,
    hostname: &str,
    network: &Network,
) -> Result<(), RunError> {
    let w = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(io_err("write", p))
    };
    w("hostname", format!("{hostname}\n"))?;
    // As Docker writes them: the host's own file when the container shares the host's network,
    // else the loopback names only (Docker adds no line for the container's hostname).
    let hosts = match network {
        Network::Host | Network::Default => {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        }
        _ => LOOPBACK_HOSTS.to_string(),
    };
    w("hosts", hosts)?;
    // The host's resolver configuration, as Docker copies it (minus nothing: ferry has no
    // bridge, so the host's view is the right one).
    w(
        "resolv.conf",
        std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    )
}

/// `/etc/hosts` of a container with a network of its own, as Docker writes it.
const LOOPBACK_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// Switches to the copy fallback: materialises the layers into `rootfs/`.
pub(crate) fn use_copy(p: &mut Prepared, source: Option<&dyn ImageSource>) -> Result<(), RunError> {
    let rootfs = rootfs::rootfs_dir(&p.container.dir);
    let r = match source {
        Some(s) => s.materialise(&p.layers, &rootfs),
        None => crate::rootfs::copy::materialise(&p.layers, &rootfs).map_err(Into::into),
    };
    r.map_err(|e| RunError::Io {
        action: "copy the image's layers into",
        path: rootfs.clone(),
        source: std::io::Error::other(e),
    })?;
    tracing::info!(
        container = p.container.short_id(),
        "overlayfs unavailable: using a copy of the image"
    );
    p.source = RootSource::Directory;
    p.meta.rootfs_copy = true;
    p.container.write_meta(&p.meta)
}

/// Starts the container's process (ferry's runtime or an external one) with `stdio`, and the
/// proxy of its published ports; returns the pid to watch and signal.
pub fn start(
    p: &mut Prepared,
    source: &dyn ImageSource,
    stdio: Stdio,
    console: Option<&tty::Pty>,
) -> Result<i32, RunError> {
    // Ports first: one that is taken fails the start before anything runs.
    let listeners = crate::net::bind(&p.container, &p.meta.name, &p.meta.host.publish)?;
    let pid = {
        // `container:NAME`: NAME as it runs now; ferry's runtime makes the container in it.
        let containers = super::Containers::new(
            p.container
                .dir
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        );
        let bundle = p.meta.runtime.is_some().then(|| p.container.dir.clone());
        let _joined = crate::net::join::prepare_start(
            &containers,
            &p.meta.host.network,
            &mut p.spec,
            bundle.as_deref(),
        )?;
        spawn_process(p, source, stdio, console)?
    };
    p.published = listeners.iter().map(|l| l.port).collect();
    if !listeners.is_empty() {
        let rootless = p
            .spec
            .linux()
            .as_ref()
            .is_some_and(|l| l.uid_mappings().is_some());
        let target = match &p.opts.runtime {
            Runtime::External(r) => crate::net::join::runtime_pid(r, &p.container.id),
            Runtime::Ferry => Ok(pid),
        };
        match target.and_then(|t| crate::net::start_proxy(&p.container, listeners, t, rootless)) {
            Ok(proxy) => p.proxy = proxy,
            Err(e) => {
                // It must not run without its ports.
                let _ = super::kill::signal_process(&p.container, &p.meta, pid, libc::SIGKILL);
                supervise::reap(pid);
                p.published.clear();
                return Err(e);
            }
        }
    }
    Ok(pid)
}

fn spawn_process(
    p: &mut Prepared,
    source: &dyn ImageSource,
    stdio: Stdio,
    console: Option<&tty::Pty>,
) -> Result<i32, RunError> {
    if let Runtime::External(runtime) = p.opts.runtime.clone() {
        return super::external::start(p, source, &runtime, stdio);
    }
    // Compiled here, in the supervisor, so a profile the compiler refuses is reported before
    // anything runs.
    let seccomp = p
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(Program::compile)
        .transpose()
        .map_err(|source| RunError::Seccomp {
            profile: format!("of container {}", p.container.short_id()),
            source,
        })?;
    let devices = crate::rootfs::device::for_container(&p.opts.devices, p.opts.privileged)?;
    loop {
        let plan = InitPlan {
            spec: p.spec.clone(),
            rootfs: rootfs::rootfs_dir(&p.container.dir),
            source: p.source.clone(),
            cgroup_procs: p.cgroup.procs_files(),
            console: console.map(|t| (t.slave.as_raw_fd(), t.slave_path.clone())),
            privileged: p.opts.privileged,
            rootless: p
                .spec
                .linux()
                .as_ref()
                .is_some_and(|l| l.uid_mappings().is_some()),
            init: p.opts.init,
            seccomp: seccomp.clone(),
            devices: devices.clone(),
        };
        match spawn::spawn(&plan, stdio) {
            Ok(pid) => return Ok(pid),
            Err(SpawnError::Init(e))
                if e.overlay_unavailable && p.opts.rootfs == RootfsMode::Auto =>
            {
                tracing::debug!("{}", e.message);
                use_copy(p, Some(source))?;
            }
            Err(SpawnError::Init(e)) => {
                return Err(RunError::Start {
                    id: p.container.short_id().to_string(),
                    message: e.message,
                    code: e.code,
                });
            }
            Err(SpawnError::Clone {
                source,
                user_namespace: true,
            }) => return Err(crate::userns::diagnose(source)),
            Err(SpawnError::Clone { source, .. }) => {
                return Err(RunError::Sys {
                    action: "create the container's process".into(),
                    source,
                });
            }
            Err(SpawnError::IdMap(source)) => {
                return Err(RunError::Sys {
                    action: "map the user namespace's ids".into(),
                    source,
                });
            }
        }
    }
}

/// Records a started container (keeping its restart count and monitor).
pub fn record_running(p: &Prepared, pid: i32) -> Result<(), RunError> {
    let before = p.container.state();
    p.container.write_state(&State {
        status: Status::Running,
        pid,
        pid_start: super::state::start_time(pid).unwrap_or(0),
        started: now(),
        restart_count: before.restart_count,
        monitor_pid: before.monitor_pid,
        monitor_start: before.monitor_start,
        ports: p.published.clone(),
        proxy_pid: p.proxy.as_ref().map_or(0, |x| x.pid),
        ..State::default()
    })
}

fn foreground(p: &mut Prepared, source: &dyn ImageSource) -> Result<i32, RunError> {
    let signals = supervise::Signals::block().map_err(|source| RunError::Sys {
        action: "block signals".into(),
        source,
    })?;
    let pty = if p.opts.tty {
        Some(tty::open().map_err(|source| RunError::Sys {
            action: "open a pseudo-terminal".into(),
            source,
        })?)
    } else {
        None
    };
    // The size must be right before the command starts, not once the proxy runs.
    if let Some(t) = &pty {
        tty::copy_winsize(std::io::stdin(), &t.master);
    }
    let null: Option<OwnedFd> = if p.opts.interactive || p.opts.tty {
        None
    } else {
        std::fs::File::open("/dev/null").ok().map(OwnedFd::from)
    };
    let stdio = match &pty {
        Some(t) => Stdio {
            fds: [Some(t.slave.as_raw_fd()); 3],
        },
        None => Stdio {
            fds: [null.as_ref().map(|f| f.as_raw_fd()), None, None],
        },
    };
    let pid = start(p, source, stdio, pty.as_ref())?;
    drop(null);
    let _ = record_running(p, pid);
    let code = match pty {
        Some(t) => {
            drop(t.slave);
            supervise::wait_tty(pid, &signals, &t.master, p.opts.interactive)
        }
        None => supervise::wait(pid, &signals),
    };
    Ok(code)
}

/// After the container ended: release its mounts and cgroups; record the exit or remove it.
pub fn finish(p: &mut Prepared, code: Option<i32>) {
    // The ports are free once `ferry stop` sees the container stopped.
    if let Some(proxy) = p.proxy.take() {
        proxy.stop();
    }
    p.published.clear();
    if p.host_mounted {
        super::external::unmount(p);
    }
    p.cgroup.remove();
    let never_ran = code.is_none() && p.container.state().status != Status::Running;
    let remove = p.opts.rm || never_ran && !p.existing;
    let mut s = p.container.state();
    s.status = Status::Exited;
    if !(never_ran && p.existing) {
        s.exit_code = code;
    }
    s.finished = now();
    s.ports.clear();
    s.proxy_pid = 0;
    // Also on the way out with --rm: `ferry wait` reads it from the renamed directory.
    let _ = p.container.write_state(&s);
    if remove {
        remove_in_background(&p.container.dir);
        // Docker's --rm takes the container's anonymous volumes with it.
        crate::volume::release(&p.container, &p.meta);
    }
}

//! One build step's process (`ferry build`'s RUN): a container over given lower directories,
//! with the image config's Env, User and WorkingDir, the command as given (no entrypoint),
//! stdout and stderr streamed to the caller as they come, and the container kept after the
//! command ends so the caller can take its upper directory (or, on the copy fallback, its
//! whole tree) as the step's layer. Dropping the [`StepContainer`] removes it.
//!
//! Ctrl-C and SIGTERM reach the command (as with `ferry run`) and are reported, so the
//! caller can stop the build and clean up instead of dying halfway.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use super::run::{Prepared, prepare, record_running, start, use_copy};
use super::{Containers, Status, now, supervise};
use crate::error::RunError;
use crate::image::{Image, ImageSource};
use crate::options::{Network, RootfsMode, RunOptions, Volume};
use crate::process::spawn::Stdio;
use crate::rootfs::{self, RootSource};

/// What to run.
#[derive(Debug, Clone)]
pub struct StepSpec {
    /// The image the step starts from: its config (Env, User, WorkingDir) and the lower
    /// directories to stack (bottom first).
    pub image: Image,
    /// The command line (the shell included for a shell-form RUN).
    pub command: Vec<String>,
    /// More environment, `K=V` (build args).
    pub env: Vec<String>,
    /// `host` or `none`.
    pub network: Network,
    /// overlayfs, or the copy fallback.
    pub rootfs: RootfsMode,
    /// Bind mounts (the image's VOLUMEs, whose writes must not reach the layer).
    pub volumes: Vec<Volume>,
    /// Directories on the containers' file system where the step's upper directory may be
    /// made instead, when new files are slow to create in the container's (ext4 without a
    /// journal; see the private `container::placement` module).
    pub spare_dirs: Vec<PathBuf>,
}

/// How the step's command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepExit {
    /// Docker's exit status.
    pub code: i32,
    /// A signal the user sent ferry (Ctrl-C, SIGTERM, SIGHUP, SIGQUIT) and ferry passed on.
    pub interrupted: Option<i32>,
}

/// A finished step's container, removed when dropped.
pub struct StepContainer {
    prepared: Prepared,
}

impl StepContainer {
    /// The container ID.
    pub fn id(&self) -> &str {
        &self.prepared.container.id
    }

    /// The overlay upper directory, when overlayfs was used.
    pub fn upper(&self) -> Option<PathBuf> {
        match self.prepared.source {
            RootSource::Overlay(_) => Some(self.prepared.container.dir.join("upper")),
            RootSource::Directory => None,
        }
    }

    /// The container's whole tree (the copy fallback's root).
    pub fn rootfs(&self) -> PathBuf {
        rootfs::rootfs_dir(&self.prepared.container.dir)
    }
}

impl Drop for StepContainer {
    fn drop(&mut self) {
        self.prepared.cgroup.remove();
        super::run::remove_in_background(&self.prepared.container.dir);
    }
}

/// The last of SIGINT, SIGTERM and SIGHUP the process received since [`catch_interrupts`]
/// (0: none).
static INTERRUPTED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn note_interrupt(sig: libc::c_int) {
    INTERRUPTED.store(sig, std::sync::atomic::Ordering::SeqCst);
}

/// From now on Ctrl-C, SIGTERM and SIGHUP do not end the process but are noted, for
/// [`interrupted`]: a build stops at its next step and cleans up instead of dying halfway.
/// (While a step runs, [`run_step`] passes them on to its command.)
pub fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, note_interrupt as *const () as libc::sighandler_t);
        }
    }
}

/// The interrupting signal noted since [`catch_interrupts`] (or passed on by [`run_step`]).
pub fn interrupted() -> Option<i32> {
    match INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Runs one step to its end; `started` hears the container ID before the command runs,
/// `output` gets everything it writes.
pub fn run_step(
    source: &dyn ImageSource,
    containers: &Containers,
    spec: StepSpec,
    started: &mut dyn FnMut(&str),
    output: &mut dyn FnMut(&[u8]),
) -> Result<(StepContainer, StepExit), RunError> {
    // The copy is made here, by the image source (which keeps file times: the caller
    // compares the tree with the layers afterwards), not by `prepare`.
    let copy = spec.rootfs == RootfsMode::Copy || !spec.image.overlay_ready;
    let opts = RunOptions {
        command: spec.command,
        entrypoint: Some(String::new()),
        env: spec.env,
        network: spec.network,
        rootfs: if spec.rootfs == RootfsMode::Copy {
            RootfsMode::Auto
        } else {
            spec.rootfs
        },
        volumes: spec.volumes,
        ..RunOptions::default()
    };
    let lock = source.lock().map_err(|e| RunError::Image {
        reference: spec.image.id.to_string(),
        source: e,
    })?;
    let mut step = StepContainer {
        prepared: prepare(containers, &spec.image, spec.image.id.digest(), opts)?,
    };
    if copy && step.prepared.source != RootSource::Directory {
        use_copy(&mut step.prepared, Some(source))?;
    }
    if let RootSource::Overlay(o) = &mut step.prepared.source {
        volatile(o, crate::seccomp::profile::kernel_version());
        let dir = &step.prepared.container.dir;
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        let time = super::placement::creation_time;
        if let Some(p) = super::placement::place(&upper, &work, &spec.spare_dirs, &time) {
            tracing::debug!(under = %p.display(), "step's upper directory made elsewhere");
        }
    }
    drop(lock);
    let sys = |action: &str| {
        let action = action.to_string();
        move |source| RunError::Sys { action, source }
    };
    let (reader, writer) = pipe().map_err(sys("make the output pipe"))?;
    let null = std::fs::File::open("/dev/null").map_err(sys("open /dev/null"))?;
    let signals = supervise::Signals::block().map_err(sys("block signals"))?;
    started(step.id());
    let stdio = Stdio {
        fds: [
            Some(null.as_raw_fd()),
            Some(writer.as_raw_fd()),
            Some(writer.as_raw_fd()),
        ],
    };
    let pid = start(&mut step.prepared, source, stdio, None)?;
    drop(writer);
    drop(null);
    let _ = record_running(&step.prepared, pid);
    let exit = watch(pid, &signals, &reader, output);
    let mut s = step.prepared.container.state();
    s.status = Status::Exited;
    s.exit_code = Some(exit.code);
    s.finished = now();
    let _ = step.prepared.container.write_state(&s);
    Ok((step, exit))
}

/// Mounts the step's overlay `volatile` where the kernel knows the option (5.10 on): without
/// it, overlayfs fsyncs every file it copies up, and a RUN that touches thousands of files of
/// the image (a recursive chmod) waits for thousands of disk flushes — 8 s instead of 0.4 s
/// for 3,000 files here. Losing a step's upper directory in a crash costs nothing: the build
/// makes the layer from it afterwards, and the store makes what it keeps durable itself.
fn volatile(o: &mut crate::rootfs::overlay::Overlay, kernel: (u32, u32)) {
    const OPTION: &str = ",volatile";
    if kernel >= (5, 10) && o.data.len() + OPTION.len() <= crate::rootfs::overlay::MAX_DATA {
        o.data.push_str(OPTION);
    }
}

/// Forwards signals, copies output, and returns when the command has exited and its output
/// is drained.
fn watch(
    pid: i32,
    signals: &supervise::Signals,
    reader: &OwnedFd,
    output: &mut dyn FnMut(&[u8]),
) -> StepExit {
    let mut code = None;
    let mut interrupted = None;
    let mut open = true;
    let mut buf = vec![0u8; 64 * 1024];
    let mut drain_deadline: Option<std::time::Instant> = None;
    // A shell as PID 1 of its namespace ignores SIGINT; an interrupted build must not wait
    // for the command, so it is killed after a short grace period, as Docker cancels a build.
    let mut kill_at: Option<std::time::Instant> = None;
    loop {
        if code.is_none()
            && let Some(k) = kill_at
            && std::time::Instant::now() >= k
        {
            // SAFETY: signals our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            kill_at = None;
        }
        if code.is_some() && !open {
            break;
        }
        if let Some(d) = drain_deadline
            && std::time::Instant::now() > d
        {
            // Something outside the container holds the pipe; the command is done.
            break;
        }
        let mut fds = [
            libc::pollfd {
                fd: signals.fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if open { reader.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let timeout = if code.is_some() || kill_at.is_some() {
            100
        } else {
            -1
        };
        // SAFETY: polls descriptors we own.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            continue;
        }
        if fds[0].revents & libc::POLLIN != 0 {
            match signals.next() {
                Some(libc::SIGCHLD) | None => {}
                Some(libc::SIGWINCH) => {}
                Some(sig) => {
                    if matches!(
                        sig,
                        libc::SIGINT | libc::SIGTERM | libc::SIGHUP | libc::SIGQUIT
                    ) {
                        interrupted = Some(sig);
                        INTERRUPTED.store(sig, std::sync::atomic::Ordering::SeqCst);
                        kill_at.get_or_insert(
                            std::time::Instant::now() + std::time::Duration::from_secs(2),
                        );
                    }
                    // SAFETY: signals our own child.
                    unsafe { libc::kill(pid, sig) };
                }
            }
        }
        if code.is_none()
            && let Some(c) = supervise::try_wait(pid)
        {
            code = Some(c);
            drain_deadline = Some(std::time::Instant::now() + std::time::Duration::from_secs(5));
        }
        if open && fds[1].revents != 0 {
            // SAFETY: reads into our buffer.
            let r = unsafe { libc::read(reader.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if r > 0 {
                output(&buf[..r as usize]);
            } else if r == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                open = false;
            }
        }
    }
    StepExit {
        code: code.unwrap_or_else(|| supervise::wait(pid, signals)),
        interrupted,
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors from pipe2.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::overlay::{self, MAX_DATA, Overlay};
    use std::path::Path;

    #[test]
    fn volatile_only_where_the_kernel_knows_it_and_the_data_fits() {
        let plan = || overlay::plan(&[PathBuf::from("/s/a")], Path::new("/u"), Path::new("/w"));
        let mut o = plan();
        volatile(&mut o, (6, 1));
        assert!(o.data.ends_with(",workdir=/w,volatile"), "{}", o.data);
        let mut o = plan();
        volatile(&mut o, (5, 4));
        assert_eq!(o, plan());
        let mut full = Overlay {
            data: "x".repeat(MAX_DATA - 3),
            chdir: None,
        };
        volatile(&mut full, (6, 1));
        assert_eq!(full.data.len(), MAX_DATA - 3);
    }
}

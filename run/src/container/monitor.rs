//! `-d`: a monitor process, forked from ferry, stays with the container. It holds the
//! container's output pipes (or pty) and writes them to the log, records the exit status,
//! restarts the container as its `--restart` policy says (with Docker's back-off), and cleans
//! up (`--rm`, cgroups, mounts, the port proxy), while the `ferry run -d` (or `ferry start`)
//! that started it prints the ID and returns.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::logs;
use super::policy::Backoff;
use super::run::{self, Prepared};
use super::supervise::{self, Signals};
use super::{State, Status, now, tty};
use crate::error::RunError;
use crate::image::ImageSource;
use crate::process::exec::InitError;
use crate::process::spawn::Stdio;

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Starts the container under a monitor; returns its ID once the command runs.
pub fn launch(mut p: Prepared, source: &dyn ImageSource) -> Result<String, RunError> {
    let sys = |action: &str| {
        let action = action.to_string();
        move |source| RunError::Sys { action, source }
    };
    let (ready_r, ready_w) = pipe().map_err(sys("create a pipe"))?;
    // SAFETY: ferry is single-threaded here; the child only runs `monitor` and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(sys("start the monitor")(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(ready_r);
        let code = monitor(&mut p, source, Some(std::fs::File::from(ready_w)), None);
        // SAFETY: ends the monitor without the parent's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    drop(ready_w);
    let mut msg = String::new();
    let _ = std::fs::File::from(ready_r).read_to_string(&mut msg);
    // Reap the monitor's first fork only when it failed; a running one is adopted by init
    // (or a subreaper) once ferry exits.
    if msg.trim() == "ok" {
        return Ok(p.container.id.clone());
    }
    let mut st = 0;
    // SAFETY: our own child, which has exited or is exiting.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    let e = InitError::decode(if msg.is_empty() {
        "125\t0\tthe monitor exited before the container started"
    } else {
        &msg
    });
    Err(RunError::Start {
        id: p.container.short_id().to_string(),
        message: e.message,
        code: e.code,
    })
}

/// After a foreground `ferry run` whose container exited with `code` after `ran_for`: when
/// its restart policy restarts it, a detached monitor does so from now on (as Docker's daemon
/// restarts a container after `docker run` returned).
pub fn adopt(mut p: Prepared, source: &dyn ImageSource, code: i32, ran_for: Duration) {
    let policy = p.meta.host.restart;
    let stopped = p.container.stop_requested();
    if Backoff::new(0)
        .next(policy, code, ran_for, stopped)
        .is_none()
    {
        return;
    }
    // SAFETY: ferry is single-threaded here; the child only runs `monitor` and exits.
    if unsafe { libc::fork() } == 0 {
        let code = monitor(&mut p, source, None, Some((code, ran_for)));
        // SAFETY: ends the monitor without the parent's atexit handlers.
        unsafe { libc::_exit(code) };
    }
}

/// The monitor's life: start, watch, decide, wait, start again. Its exit status is the
/// container's last one, or 0 when the user stopped it (what a systemd unit wants to see).
fn monitor(
    p: &mut Prepared,
    source: &dyn ImageSource,
    mut ready: Option<std::fs::File>,
    exited: Option<(i32, Duration)>,
) -> i32 {
    // SAFETY: detach from the caller's session and terminal.
    unsafe { libc::setsid() };
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: replaces the standard streams with /dev/null.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let fail = |ready: &mut Option<std::fs::File>, e: RunError| {
        if let Some(r) = ready {
            let _ = r.write_all(
                InitError {
                    code: e.exit_code(),
                    message: crate::error_chain(&e),
                    overlay_unavailable: false,
                }
                .encode()
                .as_bytes(),
            );
        }
    };
    let signals = match Signals::block() {
        Ok(s) => s,
        Err(e) => {
            fail(
                &mut ready,
                RunError::Sys {
                    action: "block signals".into(),
                    source: e,
                },
            );
            return 125;
        }
    };
    let mut log = match logs::Writer::open(&p.container.log_path()) {
        Ok(l) => l,
        Err(e) => {
            fail(
                &mut ready,
                crate::error::io_err("create", p.container.log_path())(e),
            );
            run::finish(p, None);
            return 125;
        }
    };
    let me = std::process::id() as i32;
    let mut state = p.container.state();
    state.monitor_pid = me;
    state.monitor_start = super::state::start_time(me).unwrap_or(0);
    let _ = p.container.write_state(&state);
    // For a service manager (`ferry generate systemd`'s `PIDFile=`), before `ferry start`
    // returns.
    let _ = std::fs::write(p.container.dir.join("monitor.pid"), format!("{me}\n"));

    let mut backoff = Backoff::new(state.restart_count);
    let mut last;
    let mut terminated = false;
    let mut pending = exited;
    loop {
        if let Some((code, ran_for)) = pending.take() {
            last = code;
            let policy = p.meta.host.restart;
            let stopped = terminated || p.container.stop_requested();
            let Some(delay) = backoff.next(policy, code, ran_for, stopped) else {
                break;
            };
            record_restarting(p, &backoff);
            if !sleep(&signals, delay) || p.container.stop_requested() {
                terminated = true;
                record_exited(p);
                break;
            }
            if let Err(e) = super::start::rearm(p) {
                record_failure(p, &e);
                last = 125;
                break;
            }
        }
        let started = match start_once(p, source) {
            Ok(s) => s,
            Err(e) => {
                if ready.is_some() {
                    fail(&mut ready, e);
                    run::finish(p, None);
                    return 125;
                }
                // A restart that cannot start (a port taken meanwhile): it stays exited.
                run::finish(p, Some(125));
                record_failure(p, &e);
                last = 125;
                break;
            }
        };
        let t0 = Instant::now();
        let (pid, streams) = started;
        let _ = run::record_running(p, pid);
        if let Some(mut r) = ready.take() {
            let _ = r.write_all(b"ok");
        }
        let mut health = p
            .meta
            .host
            .health
            .clone()
            .map(|h| super::health::Checker::new(h, p.container.clone()));
        let (code, term) = pump(pid, &signals, streams, &mut log, health.as_mut());
        if let Some(h) = &mut health {
            h.stop();
        }
        terminated |= term;
        log.flush();
        run::finish(p, Some(code));
        pending = Some((code, t0.elapsed()));
    }
    if terminated || p.container.stop_requested() {
        0
    } else {
        last.clamp(0, 255)
    }
}

/// Starts one run of the container with fresh output pipes (or a pty); returns its pid and
/// the streams to log.
fn start_once(
    p: &mut Prepared,
    source: &dyn ImageSource,
) -> Result<(i32, Vec<(usize, OwnedFd)>), RunError> {
    let sys = |action: &str| {
        let action = action.to_string();
        move |source| RunError::Sys { action, source }
    };
    if p.opts.tty {
        let pty = tty::open().map_err(sys("open a pseudo-terminal"))?;
        let stdio = Stdio {
            fds: [Some(pty.slave.as_raw_fd()); 3],
        };
        let pid = run::start(p, source, stdio, Some(&pty))?;
        drop(pty.slave);
        return Ok((pid, vec![(1, pty.master)]));
    }
    let (out_r, out_w) = pipe().map_err(sys("create a pipe"))?;
    let (err_r, err_w) = pipe().map_err(sys("create a pipe"))?;
    let stdio = Stdio {
        fds: [None, Some(out_w.as_raw_fd()), Some(err_w.as_raw_fd())],
    };
    let pid = run::start(p, source, stdio, None)?;
    Ok((pid, vec![(1, out_r), (2, err_r)]))
}

fn record_restarting(p: &Prepared, backoff: &Backoff) {
    let mut s: State = p.container.state();
    s.status = Status::Restarting;
    s.restart_count = backoff.count;
    let _ = p.container.write_state(&s);
}

fn record_exited(p: &Prepared) {
    let mut s = p.container.state();
    s.status = Status::Exited;
    let _ = p.container.write_state(&s);
}

fn record_failure(p: &Prepared, e: &RunError) {
    let mut s = p.container.state();
    s.status = Status::Exited;
    s.exit_code = Some(e.exit_code().into());
    s.finished = now();
    let _ = p.container.write_state(&s);
    tracing::warn!(
        "cannot restart container {}: {}",
        p.container.short_id(),
        crate::error_chain(e)
    );
}

/// Waits `delay`, or less when told to stop (SIGTERM, SIGINT, SIGHUP, SIGQUIT to the
/// monitor); returns false then.
fn sleep(signals: &Signals, delay: Duration) -> bool {
    let end = Instant::now() + delay;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        let mut fds = [libc::pollfd {
            fd: signals.fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: polls our signalfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, left.as_millis().max(1) as i32) };
        if n > 0 && ends_the_container(signals.next()) {
            return false;
        }
    }
}

/// Signals to the monitor that mean "stop for good" (a service manager stopping it, the
/// system shutting down) rather than "pass this on".
fn ends_the_container(sig: Option<libc::c_int>) -> bool {
    matches!(
        sig,
        Some(libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT)
    )
}

/// Copies the container's output into the log until it exits and its streams are drained.
/// Returns its exit status, and whether the monitor was told to stop it for good.
fn pump(
    pid: i32,
    signals: &Signals,
    mut streams: Vec<(usize, OwnedFd)>,
    log: &mut logs::Writer,
    mut health: Option<&mut super::health::Checker>,
) -> (i32, bool) {
    let mut code = None;
    let mut terminated = false;
    let mut buf = [0u8; 16384];
    loop {
        let mut fds: Vec<libc::pollfd> = std::iter::once(signals.fd())
            .chain(streams.iter().map(|(_, f)| f.as_raw_fd()))
            // Last, so the streams keep their places after the signalfd.
            .chain(health.as_ref().and_then(|h| h.fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if streams.is_empty()
            && let Some(c) = code
        {
            return (c, terminated);
        }
        let timeout = match (&code, &health) {
            (Some(_), _) => 100,
            (None, Some(h)) => h.timeout().as_millis().clamp(1, i32::MAX as u128) as i32,
            (None, None) => -1,
        };
        // SAFETY: polls descriptors we own.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n == 0 && code.is_some() {
            // Ended, and nothing more arrives: something inside still holds the pipe open.
            return (code.unwrap_or(125), terminated);
        }
        if n < 0 {
            continue;
        }
        if fds[0].revents != 0 {
            match signals.next() {
                Some(libc::SIGCHLD) | None => {}
                Some(sig) => {
                    terminated |= ends_the_container(Some(sig));
                    // SAFETY: forwards to our own child.
                    unsafe { libc::kill(pid, sig) };
                }
            }
        }
        if code.is_none() {
            code = supervise::try_wait(pid);
        }
        if code.is_none()
            && let Some(h) = health.as_deref_mut()
        {
            h.tick();
        }
        let mut closed = Vec::new();
        for (i, f) in fds.iter().enumerate().skip(1).take(streams.len()) {
            if f.revents == 0 {
                continue;
            }
            let (stream, fd) = &streams[i - 1];
            // SAFETY: reads into our buffer.
            let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if r > 0 {
                log.write(*stream, &buf[..r as usize]);
            } else {
                closed.push(i - 1);
            }
        }
        for i in closed.into_iter().rev() {
            streams.remove(i);
        }
    }
}

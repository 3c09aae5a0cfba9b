//! `-d`: a monitor process, forked from ferry, stays with the container. It holds the
//! container's output pipes (or pty) and writes them to the log, records the exit status,
//! restarts the container as its `--restart` policy says (with Docker's back-off), and cleans
//! up (`--rm`, cgroups, mounts, the port proxy), while the `ferry run -d` (or `ferry start`)
//! that started it prints the ID and returns.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};

use super::logs;
use super::policy::Backoff;
use super::run::{self, Prepared};
use super::supervise::{self, Signals};
use super::{State, Status, now, tty};
use crate::error::RunError;
use crate::image::ImageSource;
use crate::process::exec::InitError;
use crate::process::spawn::Stdio;

use crate::process::spawn::pipe;

/// Points the standard streams at `/dev/null`: a process that outlives its caller must not
/// hold the caller's terminal or pipes open.
pub(crate) fn null_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = rustix::stdio::dup2_stdin(&null);
        let _ = rustix::stdio::dup2_stdout(&null);
        let _ = rustix::stdio::dup2_stderr(&null);
    }
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
    // Our own child, which has exited or is exiting.
    supervise::reap(pid);
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
    // Detach from the caller's session and terminal.
    let _ = rustix::process::setsid();
    null_stdio();
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
        let mut fds = [PollFd::from_borrowed_fd(signals.fd(), PollFlags::IN)];
        let n = rustix::event::poll(
            &mut fds,
            Some(&timespec(left.max(Duration::from_millis(1)))),
        )
        .unwrap_or(0);
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
        if streams.is_empty()
            && let Some(c) = code
        {
            return (c, terminated);
        }
        let mut fds: Vec<PollFd<'_>> = std::iter::once(signals.fd())
            .chain(streams.iter().map(|(_, f)| f.as_fd()))
            // Last, so the streams keep their places after the signalfd.
            .chain(health.as_ref().and_then(|h| h.fd()))
            .map(|fd| PollFd::from_borrowed_fd(fd, PollFlags::IN))
            .collect();
        let timeout = match (&code, &health) {
            (Some(_), _) => Some(Duration::from_millis(100)),
            (None, Some(h)) => Some(h.timeout().max(Duration::from_millis(1))),
            (None, None) => None,
        }
        .map(timespec);
        let n = match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(n) => n,
            Err(_) => continue,
        };
        if n == 0 && code.is_some() {
            // Ended, and nothing more arrives: something inside still holds the pipe open.
            return (code.unwrap_or(125), terminated);
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        if ready[0] {
            let sig = signals.next();
            if sig != Some(libc::SIGCHLD) {
                terminated |= ends_the_container(sig);
            }
            supervise::forward(pid, sig);
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
        for (i, (stream, fd)) in streams.iter().enumerate() {
            if !ready[i + 1] {
                continue;
            }
            match rustix::io::read(fd, &mut buf) {
                Ok(r) if r > 0 => log.write(*stream, &buf[..r]),
                _ => closed.push(i),
            }
        }
        for i in closed.into_iter().rev() {
            streams.remove(i);
        }
    }
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: d.as_secs() as i64,
        tv_nsec: d.subsec_nanos() as i64,
    }
}

//! `-d`: a monitor process, forked from ferry, stays with the container. It holds the
//! container's output pipes (or pty) and writes them to the log, records the exit status, and
//! cleans up (`--rm`, cgroups, mounts), while the `ferry run -d` that started it prints the ID
//! and returns.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::logs;
use super::run::{self, Prepared};
use super::supervise::{self, Signals};
use super::tty;
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
        let code = monitor(&mut p, source, ready_w);
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

fn monitor(p: &mut Prepared, source: &dyn ImageSource, ready: OwnedFd) -> i32 {
    let mut ready = std::fs::File::from(ready);
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
    let fail = |ready: &mut std::fs::File, e: RunError| {
        let _ = ready.write_all(
            InitError {
                code: e.exit_code(),
                message: crate::error_chain(&e),
                overlay_unavailable: false,
            }
            .encode()
            .as_bytes(),
        );
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
    let outcome = if p.opts.tty {
        let pty = match tty::open() {
            Ok(t) => t,
            Err(e) => {
                fail(
                    &mut ready,
                    RunError::Sys {
                        action: "open a pseudo-terminal".into(),
                        source: e,
                    },
                );
                run::finish(p, None);
                return 125;
            }
        };
        let stdio = Stdio {
            fds: [Some(pty.slave.as_raw_fd()); 3],
        };
        run::start(p, source, stdio, Some(&pty))
            .map(|pid| (pid, vec![(1, pty.master)], Some(pty.slave)))
    } else {
        match (pipe(), pipe()) {
            (Ok((out_r, out_w)), Ok((err_r, err_w))) => {
                let stdio = Stdio {
                    fds: [None, Some(out_w.as_raw_fd()), Some(err_w.as_raw_fd())],
                };
                run::start(p, source, stdio, None)
                    .map(|pid| (pid, vec![(1, out_r), (2, err_r)], None))
            }
            (Err(e), _) | (_, Err(e)) => Err(RunError::Sys {
                action: "create a pipe".into(),
                source: e,
            }),
        }
    };
    let (pid, streams, slave) = match outcome {
        Ok(x) => x,
        Err(e) => {
            fail(&mut ready, e);
            run::finish(p, None);
            return 125;
        }
    };
    drop(slave);
    let _ = run::record_running(p, pid);
    let _ = ready.write_all(b"ok");
    drop(ready);

    let code = pump(pid, &signals, streams, &mut log);
    log.flush();
    run::finish(p, Some(code));
    0
}

/// Copies the container's output into the log until it exits and its streams are drained.
fn pump(
    pid: i32,
    signals: &Signals,
    mut streams: Vec<(usize, OwnedFd)>,
    log: &mut logs::Writer,
) -> i32 {
    let mut code = None;
    let mut buf = [0u8; 16384];
    loop {
        let mut fds: Vec<libc::pollfd> = std::iter::once(signals.fd())
            .chain(streams.iter().map(|(_, f)| f.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if streams.is_empty()
            && let Some(c) = code
        {
            return c;
        }
        let timeout = if code.is_some() { 100 } else { -1 };
        // SAFETY: polls descriptors we own.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n == 0 && code.is_some() {
            // Ended, and nothing more arrives: something inside still holds the pipe open.
            return code.unwrap_or(125);
        }
        if n < 0 {
            continue;
        }
        if fds[0].revents != 0 {
            match signals.next() {
                Some(libc::SIGCHLD) | None => {}
                // SAFETY: forwards to our own child.
                Some(sig) => unsafe {
                    libc::kill(pid, sig);
                },
            }
        }
        if code.is_none() {
            code = supervise::try_wait(pid);
        }
        let mut closed = Vec::new();
        for (i, f) in fds.iter().enumerate().skip(1) {
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

//! `-d`: a monitor process, forked from ferry, stays with the container. It holds the
//! container's output pipes (or pty) and writes them to the log, records the exit status, and
//! cleans up (`--rm`, cgroups, mounts), while the `ferry run -d` that started it prints the ID
//! and returns.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::event::{PollFd, PollFlags, Timespec};

use super::logs;
use super::run::{self, Prepared};
use super::supervise::{self, Signals};
use super::tty;
use crate::error::RunError;
use crate::image::ImageSource;
use crate::process::exec::InitError;
use crate::process::spawn::Stdio;

use crate::process::spawn::pipe;

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

fn monitor(p: &mut Prepared, source: &dyn ImageSource, ready: OwnedFd) -> i32 {
    let mut ready = std::fs::File::from(ready);
    // Detach from the caller's session and terminal.
    let _ = rustix::process::setsid();
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = rustix::stdio::dup2_stdin(&null);
        let _ = rustix::stdio::dup2_stdout(&null);
        let _ = rustix::stdio::dup2_stderr(&null);
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
    let a_moment = Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    loop {
        if streams.is_empty()
            && let Some(c) = code
        {
            return c;
        }
        let mut fds: Vec<PollFd<'_>> = std::iter::once(signals.fd())
            .chain(streams.iter().map(|(_, f)| f.as_fd()))
            .map(|fd| PollFd::from_borrowed_fd(fd, PollFlags::IN))
            .collect();
        let timeout = code.is_some().then_some(&a_moment);
        let n = match rustix::event::poll(&mut fds, timeout) {
            Ok(n) => n,
            Err(_) => continue,
        };
        if n == 0 && code.is_some() {
            // Ended, and nothing more arrives: something inside still holds the pipe open.
            return code.unwrap_or(125);
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        if ready[0] {
            supervise::forward(pid, signals.next());
        }
        if code.is_none() {
            code = supervise::try_wait(pid);
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

//! `--init`: a minimal init as PID 1 that runs the command as its child, forwards signals to
//! it, reaps every orphan, and exits with the command's status (128+N for signal N), like tini.
//!
//! It is ferry's own code, already in memory, so the image needs no init binary. Being a fork of
//! ferry, it would show ferry's command line (host paths) in `/proc/1/cmdline`; it rewrites that
//! to `ferry-init -- COMMAND…`, as `docker-init -- COMMAND…` reads under Docker.

use std::ffi::CString;

use rustix::process::WaitOptions;

use super::exec::{self, InitError};
use super::signal::{self, FORWARDED};
use crate::syscall::Syscall;

/// Becomes the init; returns only if the command could not be started.
pub fn run_init(sys: &dyn Syscall, args: &[String], env: &[String]) -> InitError {
    // Processes in the container must not reach the host's ferry binary through
    // /proc/1/exe and overwrite it (CVE-2019-5736): a non-dumpable process's /proc entries
    // need CAP_SYS_PTRACE, which the default set lacks.
    if let Err(e) = sys.set_dumpable(false) {
        return InitError::setup(format!("cannot protect the init: {e}"));
    }
    let _ = rustix::thread::set_name(c"ferry-init");
    hide_command_line(args);
    // rustix has no sigprocmask outside its runtime feature.
    // SAFETY: blocks the forwarded signals (and SIGCHLD) in a zeroed set this function owns,
    // so they are taken with sigwaitinfo below.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in FORWARDED.iter().chain(&[libc::SIGCHLD]) {
            libc::sigaddset(&mut set, *s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    exec::close_fds_except(ERROR_FD.load(std::sync::atomic::Ordering::SeqCst));
    // SAFETY: single-threaded; the child only resets its signals and executes the command.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return InitError::setup(format!(
            "cannot start the command: {}",
            std::io::Error::last_os_error()
        ));
    }
    if child == 0 {
        exec::reset_signals();
        // The child keeps the supervisor's error pipe (close-on-exec) to report exec failures.
        let err = exec::exec(sys, args, env);
        report_and_exit(&err);
    }
    // The init's own copy of the error pipe must go, or the supervisor would wait for it.
    close_error_pipe();
    loop {
        // SAFETY: waits for one of the signals blocked above; `info` is a zeroed siginfo_t.
        let sig = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::sigwaitinfo(&set, &mut info)
        };
        if sig == libc::SIGCHLD {
            // Reap every exited child without blocking; the command's status is the init's.
            while let Ok(Some((pid, status))) = rustix::process::waitpid(None, WaitOptions::NOHANG)
            {
                if pid.as_raw_nonzero().get() == child {
                    let code = signal::exit_status(status);
                    // SAFETY: ends the init, which ends the container.
                    unsafe { libc::_exit(code) };
                }
            }
        } else if sig > 0 {
            let _ = signal::send(child, sig);
        }
    }
}

/// Rewrites this process's `/proc/self/cmdline` (the memory the kernel reads it from) to
/// `ferry-init -- ARGS…`, and blanks its environment block, which still holds the host's.
///
/// PR_SET_MM would move the kernel's pointers but needs CAP_SYS_RESOURCE; writing over the
/// original strings needs nothing. The kernel shows everything up to the first NUL when the
/// last byte of the block is not NUL (setproctitle's convention), so the text goes first and
/// the block's last byte is set to a space.
fn hide_command_line(args: &[String]) {
    let Some((arg_start, arg_end, env_start, env_end)) = memory_layout() else {
        return;
    };
    let title = std::iter::once("ferry-init --")
        .chain(args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    let len = arg_end.saturating_sub(arg_start);
    if len < 2 {
        return;
    }
    let mut block = vec![0u8; len];
    let n = title.len().min(len - 2);
    block[..n].copy_from_slice(&title.as_bytes()[..n]);
    block[len - 1] = b' ';
    // SAFETY: [arg_start, arg_end) and [env_start, env_end) are this process's argument and
    // environment strings on its own stack, mapped and writable for its whole life (the
    // kernel reports them in /proc/self/stat). Nothing reads them any more: the command's
    // arguments and environment were copied out of the spec, not taken from here.
    unsafe {
        std::ptr::copy_nonoverlapping(block.as_ptr(), arg_start as *mut u8, len);
        if env_end > env_start && env_start >= arg_end {
            std::ptr::write_bytes(env_start as *mut u8, 0, env_end - env_start);
        }
    }
}

/// `arg_start`, `arg_end`, `env_start`, `env_end` from `/proc/self/stat` (fields 48–51, 3.5+).
fn memory_layout() -> Option<(usize, usize, usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; fields resume after the last ')', at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<usize> = rest
        .split_whitespace()
        .skip(45)
        .take(4)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    (f.len() == 4 && f[0] != 0 && f[1] > f[0]).then(|| (f[0], f[1], f[2], f[3]))
}

/// Set by the supervisor before `clone`: the write end of the error pipe.
pub static ERROR_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

fn close_error_pipe() {
    let fd = ERROR_FD.swap(-1, std::sync::atomic::Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: closes a descriptor this process owns and no longer uses.
        unsafe { libc::close(fd) };
    }
}

/// Writes `err` to the supervisor's error pipe and exits with its code.
pub fn report_and_exit(err: &InitError) -> ! {
    let fd = ERROR_FD.load(std::sync::atomic::Ordering::SeqCst);
    if fd >= 0 {
        let msg = CString::new(err.encode().replace('\0', " ")).unwrap_or_default();
        // SAFETY: the descriptor stays open until this process exits, just below.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let _ = rustix::io::write(fd, msg.as_bytes());
    }
    // SAFETY: ends the process without running the parent's destructors or atexit handlers.
    unsafe { libc::_exit(err.code as i32) }
}

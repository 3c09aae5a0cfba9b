//! `--init`: a minimal init as PID 1 that runs the command as its child, forwards signals to
//! it, reaps every orphan, and exits with the command's status (128+N for signal N), like tini.
//!
//! It is ferry's own code, already in memory, so the image needs no init binary.

use std::ffi::CString;

use super::exec::{self, InitError};
use crate::syscall::Syscall;

const FORWARDED: [libc::c_int; 8] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCONT,
];

/// Becomes the init; returns only if the command could not be started.
pub fn run_init(sys: &dyn Syscall, args: &[String], env: &[String]) -> InitError {
    // Processes in the container must not reach the host's ferry binary through
    // /proc/1/exe and overwrite it (CVE-2019-5736): a non-dumpable process's /proc entries
    // need CAP_SYS_PTRACE, which the default set lacks.
    if let Err(e) = sys.set_dumpable(false) {
        return InitError::setup(format!("cannot protect the init: {e}"));
    }
    // SAFETY: prctl with a static NUL-terminated name.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"ferry-init".as_ptr(), 0, 0, 0) };
    // SAFETY: block the forwarded signals (and SIGCHLD) so they are taken with sigwaitinfo.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigemptyset(&mut set);
        for s in FORWARDED.iter().chain(&[libc::SIGCHLD]) {
            libc::sigaddset(&mut set, *s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    exec::close_fds_except(ERROR_FD.load(std::sync::atomic::Ordering::SeqCst));
    // SAFETY: single-threaded; the child only execs.
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
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waits for one of the blocked signals.
        let sig = unsafe { libc::sigwaitinfo(&set, &mut info) };
        if sig == libc::SIGCHLD {
            loop {
                let mut status = 0;
                // SAFETY: reaps any exited child without blocking.
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                if pid == child {
                    let code = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        128 + libc::WTERMSIG(status)
                    };
                    // SAFETY: exits the init, which ends the container.
                    unsafe { libc::_exit(code) };
                }
            }
        } else if sig > 0 {
            // SAFETY: forwards to the command's process.
            unsafe { libc::kill(child, sig) };
        }
    }
}

/// Set by the supervisor before `clone`: the write end of the error pipe.
pub static ERROR_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

fn close_error_pipe() {
    let fd = ERROR_FD.swap(-1, std::sync::atomic::Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: closes a descriptor this process owns.
        unsafe { libc::close(fd) };
    }
}

/// Writes `err` to the supervisor's error pipe and exits with its code.
pub fn report_and_exit(err: &InitError) -> ! {
    let fd = ERROR_FD.load(std::sync::atomic::Ordering::SeqCst);
    if fd >= 0 {
        let msg = CString::new(err.encode().replace('\0', " ")).unwrap_or_default();
        let bytes = msg.as_bytes();
        // SAFETY: writes a buffer this process owns.
        unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    }
    // SAFETY: ends the process without running the parent's destructors or atexit handlers.
    unsafe { libc::_exit(err.code as i32) }
}

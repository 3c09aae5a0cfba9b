//! The last step: find the command the way Docker does (the container's own `PATH`) and
//! `execve` it, turning failures into Docker's exit codes.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use crate::spec::env::DEFAULT_PATH;
use crate::syscall::Syscall;

/// A failure inside the container before its command ran: Docker's exit code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitError {
    /// 125 (setup), 126 (not executable) or 127 (not found).
    pub code: u8,
    /// The message, naming the step and the object.
    pub message: String,
    /// The overlay mount failed in a way the copy fallback can fix.
    pub overlay_unavailable: bool,
}

impl InitError {
    /// A setup failure (exit code 125).
    pub fn setup(message: impl Into<String>) -> Self {
        InitError {
            code: 125,
            message: message.into(),
            overlay_unavailable: false,
        }
    }

    /// The wire form sent to the supervisor: `code \t overlay \t message`.
    pub fn encode(&self) -> String {
        format!(
            "{}\t{}\t{}",
            self.code, self.overlay_unavailable as u8, self.message
        )
    }

    /// Reads [`encode`](Self::encode)'s output.
    pub fn decode(s: &str) -> Self {
        let mut it = s.splitn(3, '\t');
        let code = it.next().and_then(|c| c.parse().ok()).unwrap_or(125);
        let overlay_unavailable = it.next() == Some("1");
        let message = it.next().unwrap_or(s).to_string();
        InitError {
            code,
            message,
            overlay_unavailable,
        }
    }
}

fn cstrings(v: &[String]) -> Result<Vec<CString>, InitError> {
    v.iter()
        .map(|s| {
            CString::new(s.as_bytes()).map_err(|_| {
                InitError::setup(format!("argument or variable contains a NUL byte: {s:?}"))
            })
        })
        .collect()
}

/// Executes `args` with `env`; returns only on failure.
pub fn exec(sys: &dyn Syscall, args: &[String], env: &[String]) -> InitError {
    let (argv, envp) = match (cstrings(args), cstrings(env)) {
        (Ok(a), Ok(e)) => (a, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let prog = &args[0];
    let fail = |code: u8, what: String| InitError {
        code,
        message: what,
        overlay_unavailable: false,
    };
    if prog.contains('/') {
        let err = sys.execve(Path::new(prog), &argv, &envp);
        return match err.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => fail(
                127,
                format!("exec: \"{prog}\": stat {prog}: no such file or directory"),
            ),
            Some(libc::EACCES) | Some(libc::ENOEXEC) | Some(libc::EISDIR) => {
                fail(126, format!("exec: \"{prog}\": {err}"))
            }
            _ => fail(125, format!("exec: \"{prog}\": {err}")),
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let mut denied = None;
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = PathBuf::from(dir).join(prog);
        let err = sys.execve(&candidate, &argv, &envp);
        match err.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => {}
            Some(libc::EACCES) | Some(libc::EISDIR) => denied = Some(err),
            _ => return fail(126, format!("exec: \"{prog}\": {err}")),
        }
    }
    match denied {
        Some(err) => fail(126, format!("exec: \"{prog}\": {err}")),
        None => fail(
            127,
            format!("exec: \"{prog}\": executable file not found in $PATH"),
        ),
    }
}

/// Undoes what the supervisor set up for itself: blocked signals and `SIGPIPE` ignored (Rust
/// ignores it at startup) would otherwise be inherited across `execve`.
pub fn reset_signals() {
    // SAFETY: plain signal-mask and disposition calls on this single-threaded process.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
}

/// Marks every descriptor above stderr close-on-exec, so nothing the caller of ferry leaked
/// (or ferry holds) reaches the container: a leaked directory fd let a container reach the host
/// file system through `/proc/self/fd` (CVE-2024-21626 in runc).
pub fn close_inherited_fds() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: setting a flag on a descriptor number; a stale number just fails.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// Closes every descriptor above stderr except `keep`: for the `--init`, which never executes
/// anything, so close-on-exec never takes effect for it (and a held pipe would keep
/// `ferry run -d` waiting for the container to end).
pub fn close_fds_except(keep: i32) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2 && *fd != keep)
        .collect();
    for fd in fds {
        // SAFETY: closing descriptor numbers; the one used to list them is already gone.
        unsafe { libc::close(fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, RecordingSyscall};

    #[test]
    fn commands_are_searched_in_the_containers_path() {
        let sys = RecordingSyscall::default();
        let err = exec(&sys, &["true".into()], &["PATH=/a:/b".into()]);
        assert_eq!(err.code, 127);
        assert!(err.message.contains("executable file not found in $PATH"));
        let tried: Vec<_> = sys
            .calls()
            .into_iter()
            .map(|c| match c {
                Call::Execve(p, _) => p,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(tried, [PathBuf::from("/a/true"), PathBuf::from("/b/true")]);
    }

    #[test]
    fn permission_denied_is_126() {
        let mut sys = RecordingSyscall::default();
        sys.exec_errno = Some(libc::EACCES);
        assert_eq!(exec(&sys, &["/etc".into()], &[]).code, 126);
        assert_eq!(exec(&sys, &["ls".into()], &[]).code, 126);
    }

    #[test]
    fn errors_survive_the_pipe() {
        let e = InitError {
            code: 127,
            message: "exec: \"x\"\tnot found".into(),
            overlay_unavailable: true,
        };
        assert_eq!(InitError::decode(&e.encode()), e);
    }
}

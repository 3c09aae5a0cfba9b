//! Signal names and numbers (`ferry kill -s TERM`, StopSignal), the signals passed on to a
//! container, sending one, and Docker's exit status.

/// What a foreground `ferry run`/`exec`, a detached container's monitor and the `--init` pass on
/// to the container's process, like `docker run`'s sig-proxy (SIGCHLD is theirs; SIGKILL and
/// SIGSTOP cannot be caught).
pub const FORWARDED: [libc::c_int; 8] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCONT,
];

/// Sends `sig` to the process `pid`.
pub fn send(pid: i32, sig: i32) -> std::io::Result<()> {
    let pid = rustix::process::Pid::from_raw(pid).ok_or(std::io::ErrorKind::InvalidInput)?;
    use rustix::process::Signal;
    let sig = match Signal::from_named_raw(sig) {
        Some(s) => s,
        // rustix names no real-time signal, since libc keeps some for its own threads.
        // SAFETY: that reservation concerns this process's handlers; kill(2) itself takes any
        // number from 1 to 64, and the signal goes to another process.
        None if (1..=64).contains(&sig) => unsafe { Signal::from_raw_unchecked(sig) },
        None => return Err(std::io::ErrorKind::InvalidInput.into()),
    };
    Ok(rustix::process::kill_process(pid, sig)?)
}

/// Parses `TERM`, `SIGTERM`, `sigterm` or `15`.
pub fn parse(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    NAMES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

const NAMES: [(&str, i32); 23] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("WINCH", libc::SIGWINCH),
    ("URG", libc::SIGURG),
];

/// Docker's exit status for a `waitpid` status: the exit code, or 128+N when killed by N.
pub fn exit_status(status: rustix::process::WaitStatus) -> i32 {
    if let Some(code) = status.exit_status() {
        code
    } else if let Some(sig) = status.terminating_signal() {
        128 + sig
    } else {
        125
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("TERM"), Some(15));
        assert_eq!(parse("sigkill"), Some(9));
        assert_eq!(parse("10"), Some(10));
        assert_eq!(parse("NOPE"), None);
        assert_eq!(parse("0"), None);
    }
}

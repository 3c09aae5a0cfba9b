//! What README.md promises of `ferry run` and `ferry exec` beyond the basics in `run.rs`:
//! `-i` (standard input reaches the container only when asked), `exec -e`, the signals ferry
//! forwards, and `--runtime crun` / `--runtime PATH`. Real containers, as root.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{Ran, ferry, run, tempdir};
use crate::require_services;
use crate::run::install;

/// Runs `cmd` with `input` on its standard input.
fn with_stdin(mut cmd: Command, input: &[u8]) -> Ran {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    // The container may not read it all (without -i it reads nothing): ignore broken pipes.
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().unwrap().into()
}

#[test]
fn run_i_gives_the_container_standard_input_and_only_then() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    let mut cmd = ferry(home.path());
    cmd.args(["run", "--rm", "-i", &img, "sh", "-c", "cat; echo end"]);
    let r = with_stdin(cmd, b"line one\nline two\n").ok();
    assert_eq!(r.stdout, "line one\nline two\nend\n");
    // Without -i, as with Docker, the container's standard input is empty.
    let mut cmd = ferry(home.path());
    cmd.args(["run", "--rm", &img, "sh", "-c", "cat; echo end"]);
    let r = with_stdin(cmd, b"not for the container\n").ok();
    assert_eq!(r.stdout, "end\n");
}

#[test]
fn exec_i_and_exec_e_reach_the_running_container() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    let id = run(ferry(home.path()).args(["run", "-d", &img, "sleep", "60"]))
        .ok()
        .stdout
        .trim()
        .to_string();
    let exec = |args: &[&str]| {
        let mut cmd = ferry(home.path());
        cmd.arg("exec").args(args);
        cmd
    };
    let r = with_stdin(
        exec(&["-i", &id, "sh", "-c", "cat; echo end"]),
        b"to exec\n",
    )
    .ok();
    assert_eq!(r.stdout, "to exec\nend\n");
    let r = with_stdin(exec(&[&id, "sh", "-c", "cat; echo end"]), b"not asked\n").ok();
    assert_eq!(r.stdout, "end\n");
    // -e K=V sets, -e K takes K from ferry's own environment (as docker exec -e does).
    let mut cmd = exec(&[
        "-e",
        "GREETING=hello there",
        "-e",
        "FROM_CALLER",
        &id,
        "sh",
        "-c",
        "echo \"$GREETING|$FROM_CALLER\"",
    ]);
    cmd.env("FROM_CALLER", "passed through");
    let r = run(cmd).ok();
    assert_eq!(r.stdout, "hello there|passed through\n");
    // Only that exec sees them.
    let r = run(exec(&[&id, "sh", "-c", "echo \"[$GREETING]\""])).ok();
    assert_eq!(r.stdout, "[]\n");
    run(ferry(home.path()).args(["rm", "-f", &id])).ok();
}

/// Sends `signal` to a foreground `ferry run` whose container traps it; returns what the
/// container printed after `ready` and ferry's exit code.
fn deliver(home: &Path, img: &str, init: bool, name: &str, signal: i32) -> (String, Option<i32>) {
    let script = format!(
        "trap 'echo got {name}; exit 42' {name}; echo ready; while true; do sleep 0.1; done"
    );
    let mut cmd = ferry(home);
    cmd.args(["run", "--rm"]);
    if init {
        cmd.arg("--init");
    }
    let mut child = cmd
        .args([img, "sh", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut ready = [0u8; 6];
    out.read_exact(&mut ready).unwrap();
    assert_eq!(&ready, b"ready\n");
    // SAFETY: signals our own child, which is still running (it waits for this signal).
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let status = child.wait().unwrap();
    // A ferry that died of the signal instead of forwarding it leaves the container running
    // with our pipe: read in a thread, so that this fails instead of waiting forever.
    let (done, rest) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = out.read_to_string(&mut rest);
        let _ = done.send(rest);
    });
    match rest.recv_timeout(Duration::from_secs(20)) {
        Ok(rest) => (rest, status.code()),
        Err(_) => {
            let ids = run(ferry(home).args(["ps", "-aq"])).stdout;
            for id in ids.split_whitespace() {
                run(ferry(home).args(["rm", "-f", id]));
            }
            panic!(
                "SIG{name} (--init: {init}): ferry ended ({status:?}) and left its container running"
            );
        }
    }
}

#[test]
fn int_hup_quit_usr1_and_usr2_are_forwarded_to_the_container() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    for init in [false, true] {
        for (name, signal) in [
            ("INT", libc::SIGINT),
            ("HUP", libc::SIGHUP),
            ("QUIT", libc::SIGQUIT),
            ("USR1", libc::SIGUSR1),
            ("USR2", libc::SIGUSR2),
        ] {
            let (out, code) = deliver(home.path(), &img, init, name, signal);
            assert_eq!(
                (out.as_str(), code),
                (format!("got {name}\n").as_str(), Some(42)),
                "SIG{name} (--init: {init}) did not reach the container's trap"
            );
        }
    }
}

#[test]
fn runtime_crun_runs_the_same_bundle() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/multilayer:oci");
    let expect = s.expected_stdout("ferry/multilayer:oci");
    let r = run(ferry(home.path()).args(["run", "--rm", "--runtime", "crun", &img])).ok();
    assert_eq!(r.stdout.trim(), expect);
    let r = run(ferry(home.path()).args([
        "run",
        "--rm",
        "--runtime",
        "crun",
        &img,
        "sh",
        "-c",
        "id -u; exit 3",
    ]));
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert_eq!(r.stdout, "1000\n");
}

#[test]
fn runtime_path_runs_that_program() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    // A runtime of our own: it notes how it was called, then hands over to runc.
    let calls = home.path().join("calls");
    let wrapper = home.path().join("my-runtime");
    let runc = which("runc").expect("runc is installed by scripts/services-up");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nexec '{}' \"$@\"\n",
            calls.display(),
            runc.display()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&wrapper).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&wrapper, perms).unwrap();
    let r = run(ferry(home.path())
        .args(["run", "--rm", "--runtime"])
        .arg(&wrapper)
        .args([&img, "sh", "-c", "echo from the path; exit 4"]));
    assert_eq!(r.code, Some(4), "{}", r.stderr);
    assert_eq!(r.stdout, "from the path\n");
    let log = std::fs::read_to_string(&calls).expect("the runtime at PATH was not run");
    assert!(log.starts_with("run --bundle "), "{log}");
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

//! `ferry run` and the container verbs against real containers (these tests run as root).
//!
//! Images come from the local test registry through `ferry fetch` and `ferry load`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Ran, Services, ferry, run, tempdir, tempdir_for_any_user};
use crate::require_services;

/// Fetches `repo_tag` from the test registry with `ferry fetch` and loads it into `home`'s
/// store with `ferry load`; returns the name to pass to `ferry run`.
pub fn install(s: &Services, home: &Path, repo_tag: &str) -> String {
    let reference = s.image(repo_tag);
    let archive = home.join(format!("{}.tar", repo_tag.replace(['/', ':'], "_")));
    run(crate::harness::fetch_cmd(
        home,
        s.registry(),
        &reference,
        &archive,
    ))
    .ok();
    run(ferry(home).args(["load", "-q", "-i"]).arg(&archive)).ok();
    reference
}

/// `ferry run ARGS…` in `home`.
fn ferry_run(home: &Path, args: &[&str]) -> Ran {
    run(ferry(home).arg("run").args(args))
}

#[test]
fn run_echo_prints_and_exits_zero() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    let r = ferry_run(home.path(), &["--rm", &img]).ok();
    assert_eq!(r.stdout.trim(), s.expected_stdout("ferry/busybox:oci"));
    let r = ferry_run(home.path(), &["--rm", &img, "echo", "hi", "there"]).ok();
    assert_eq!(r.stdout, "hi there\n");
}

#[test]
fn run_exit_codes_follow_docker() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    let code = |args: &[&str]| {
        let mut a = vec!["--rm", img.as_str()];
        a.extend_from_slice(args);
        ferry_run(home.path(), &a)
    };
    assert_eq!(code(&["sh", "-c", "exit 3"]).code, Some(3));
    // Killed by a signal: 128+N. (PID 1 cannot SIGKILL itself; under --init the command is PID 2.)
    // (Options go before the image: after it, everything is the container's.)
    let killed = ferry_run(
        home.path(),
        &["--rm", "--init", &img, "sh", "-c", "kill -9 $$"],
    );
    assert_eq!(killed.code, Some(137));
    let mut child = ferry(home.path())
        .args(["run", "--name", "victim", &img, "sleep", "30"])
        .spawn()
        .unwrap();
    let state = wait_for(|| {
        let (c, _) = std::fs::read_dir(home.path().join("store/containers"))
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| (e.path(), ()))
            .next()?;
        let v: Value = serde_json::from_slice(&std::fs::read(c.join("state.json")).ok()?).ok()?;
        (v["status"] == "running").then_some(v)
    });
    // SAFETY: SIGKILL to the container's PID 1 from outside its namespace.
    unsafe { libc::kill(state["pid"].as_i64().unwrap() as i32, libc::SIGKILL) };
    assert_eq!(child.wait().unwrap().code(), Some(137));
    run(ferry(home.path()).args(["rm", "victim"])).ok();
    let missing = code(&["no-such-command"]);
    assert_eq!(missing.code, Some(127), "{}", missing.stderr);
    missing.assert_stderr("executable file not found");
    assert_eq!(code(&["/no/such/path"]).code, Some(127));
    let dir = code(&["/etc"]);
    assert_eq!(dir.code, Some(126), "{}", dir.stderr);
    // Failed starts leave no container behind, with or without --rm.
    let r = run(ferry(home.path()).args(["run", &img, "nope"]));
    assert_eq!(r.code, Some(127));
    let ps = run(ferry(home.path()).args(["ps", "-a", "-q"])).ok();
    assert_eq!(ps.stdout, "", "{}", ps.stdout);
}

#[test]
fn run_failures_are_clear_with_docker_codes() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/multilayer:oci");
    let r = ferry_run(home.path(), &["--rm", "ferry/nothing-here"]);
    assert_eq!(r.code, Some(125));
    assert!(
        r.stderr
            .contains("error: cannot find image `ferry/nothing-here`"),
        "{}",
        r.stderr
    );
    let r = ferry_run(home.path(), &["--no-such-flag", &img]);
    assert_eq!(r.code, Some(125), "{}", r.stderr);
    let r = ferry_run(home.path(), &["--rm", "-u", "nobody-here", &img, "id"]);
    assert_eq!(r.code, Some(125));
    r.assert_stderr("unable to find user nobody-here");
    let r = ferry_run(home.path(), &["--rm", "-w", "relative", &img, "pwd"]);
    assert_eq!(r.code, Some(125));
    r.assert_stderr("absolute path");
    let r = ferry_run(home.path(), &["--rm", "--network", "bridge", &img]);
    assert_eq!(r.code, Some(125));
}

#[test]
fn run_image_config_user_workdir_env_and_whiteouts() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/multilayer:oci");
    let expect = s.expected_stdout("ferry/multilayer:oci");
    // Default command: USER app with group extra, WORKDIR /app, ENV, a whiteout and an opaque dir.
    let r = ferry_run(home.path(), &["--rm", &img]).ok();
    assert_eq!(r.stdout.trim(), expect);
    // The same through the copy fallback.
    let r = run(ferry(home.path())
        .env("FERRY_ROOTFS", "copy")
        .args(["run", "--rm", &img]))
    .ok();
    assert_eq!(r.stdout.trim(), expect);

    let sh = |args: &[&str], script: &str| {
        let mut a = vec!["--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&[img.as_str(), "sh", "-c", script]);
        ferry_run(home.path(), &a).ok().stdout.trim().to_string()
    };
    // Users by name and id, with supplementary groups; an explicit group replaces them.
    assert_eq!(
        sh(&["-u", "1000"], "id"),
        "uid=1000(app) gid=1000(app) groups=1000(app),1001(extra)"
    );
    assert_eq!(
        sh(&["-u", "app:extra"], "id -u; id -g; id -G"),
        "1000\n1001\n1001"
    );
    assert_eq!(sh(&["-u", "0"], "id -u; echo $HOME"), "0\n/root");
    assert_eq!(
        sh(&["-u", "4242:4343"], "id -u; id -g; echo $HOME"),
        "4242\n4343\n/"
    );
    // Env: image, then --env-file, then -e; PATH and HOME defaulted.
    let envf = home.path().join("env.list");
    std::fs::write(&envf, "# comment\nFROM_FILE=1\nGREETING=file\n").unwrap();
    assert_eq!(
        sh(
            &[
                "--env-file",
                envf.to_str().unwrap(),
                "-e",
                "GREETING=flag",
                "-e",
                "EMPTY="
            ],
            "echo $GREETING $FROM_FILE [$EMPTY] $HOME $PATH"
        ),
        "flag 1 [] /home/app /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    assert_eq!(sh(&[], "echo $GREETING"), "hello");
    // -e KEY takes ferry's own value.
    let r = run(ferry(home.path()).env("PASSED", "through").args([
        "run",
        "--rm",
        "-e",
        "PASSED",
        &img,
        "sh",
        "-c",
        "echo $PASSED",
    ]))
    .ok();
    assert_eq!(r.stdout.trim(), "through");
    // Working directory: the image's, -w, created when missing.
    assert_eq!(sh(&[], "pwd"), "/app");
    assert_eq!(sh(&["-w", "/new/dir"], "pwd"), "/new/dir");
    // --entrypoint replaces Entrypoint and clears Cmd.
    let r = ferry_run(
        home.path(),
        &["--rm", "--entrypoint", "echo", &img, "from", "entrypoint"],
    )
    .ok();
    assert_eq!(r.stdout, "from entrypoint\n");
    let r = ferry_run(home.path(), &["--rm", "--entrypoint", "pwd", &img]).ok();
    assert_eq!(r.stdout, "/app\n");
}

#[test]
fn run_isolation_defaults() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    let sh = |args: &[&str], script: &str| {
        let mut a = vec!["--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&[img.as_str(), "sh", "-c", script]);
        ferry_run(home.path(), &a).ok().stdout.trim().to_string()
    };
    // PID 1 is the command; with --init it is ferry's init and the command is its child.
    assert_eq!(sh(&[], "echo $$"), "1");
    let init = sh(&["--init"], "echo $$; cat /proc/1/comm");
    assert_eq!(init.lines().nth(1), Some("ferry-init"), "{init}");
    assert_ne!(init.lines().next(), Some("1"));
    // Hostname: the short ID by default, --hostname, and /etc/hostname agrees.
    assert_eq!(
        sh(&["--hostname", "boat"], "hostname; cat /etc/hostname"),
        "boat\nboat"
    );
    assert_eq!(sh(&[], "hostname").len(), 12);
    // --network none: only lo.
    assert_eq!(sh(&["--network", "none"], "ls /sys/class/net"), "lo");
    assert!(sh(&[], "ls /sys/class/net").lines().count() > 1);
    // Docker's capability set (0xa80425fb), its seccomp filter without no_new_privs, masked
    // and read-only /proc.
    let status = sh(
        &[],
        "grep -E '^(CapEff|CapBnd|CapInh|NoNewPrivs|Seccomp)' /proc/self/status",
    );
    assert!(status.contains("CapEff:\t00000000a80425fb"), "{status}");
    assert!(status.contains("CapBnd:\t00000000a80425fb"), "{status}");
    assert!(status.contains("CapInh:\t0000000000000000"), "{status}");
    assert!(status.contains("NoNewPrivs:\t0"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    let added = sh(
        &["--cap-add", "SYS_TIME", "--cap-drop", "CHOWN"],
        "grep CapEff /proc/self/status",
    );
    assert!(added.ends_with("00000000aa0425fa"), "{added}");
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let own_prm = own
        .lines()
        .find_map(|l| l.strip_prefix("CapPrm:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        sh(&["--privileged"], "grep CapEff /proc/self/status"),
        format!("CapEff:\t{own_prm}")
    );
    assert_eq!(sh(&[], "cat /proc/keys | wc -c"), "0");
    assert_eq!(
        sh(
            &[],
            "echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo writable || echo ro"
        ),
        "ro"
    );
    assert_eq!(
        sh(&[], "touch /sys/x 2>/dev/null && echo writable || echo ro"),
        "ro"
    );
    // A minimal /dev; nodes the container makes are unusable (nodev).
    assert_eq!(
        sh(&[], "ls /dev | xargs"),
        "core fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero"
    );
    assert_eq!(
        sh(
            &[],
            "mknod /tmp/mem c 1 1 && (head -c1 /tmp/mem >/dev/null 2>&1 && echo open || echo denied)"
        ),
        "denied"
    );
    // /etc files supplied; the mount namespace is private: the container sees its own mounts
    // and none of the host's (whatever the host has mounted, wherever the checkout lives).
    assert!(sh(&[], "cat /etc/hosts").contains("localhost"));
    let own = |p: &str| {
        p == "/"
            || ["/proc", "/dev", "/sys"]
                .iter()
                .any(|d| p == *d || p.starts_with(&format!("{d}/")))
            || ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"].contains(&p)
    };
    let mount_points = |table: &str| -> Vec<String> {
        table
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .collect()
    };
    let host_only: Vec<String> =
        mount_points(&std::fs::read_to_string("/proc/self/mounts").unwrap())
            .into_iter()
            .filter(|p| !own(p))
            .collect();
    assert!(
        !host_only.is_empty(),
        "the host has no mount the container could wrongly show: this check would prove nothing"
    );
    let inside = mount_points(&sh(&[], "cat /proc/mounts"));
    let strange: Vec<&String> = inside.iter().filter(|p| !own(p)).collect();
    assert!(
        strange.is_empty(),
        "mounts in the container beyond its own: {strange:?} (the host has {host_only:?})"
    );
}

#[test]
fn run_volumes_tmpfs_and_read_only() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    let host = home.path().join("shared");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("in.txt"), "from host\n").unwrap();
    let rw = format!("{}:/data", host.display());
    let ro = format!("{}:/ro:ro", host.display());
    let r = ferry_run(home.path(), &["--rm", "-v", &rw, "-v", &ro, &img, "sh", "-c",
        "cat /data/in.txt; echo out > /data/out.txt; echo x > /ro/y 2>/dev/null || echo ro-refused"]).ok();
    assert_eq!(r.stdout, "from host\nro-refused\n");
    assert_eq!(
        std::fs::read_to_string(host.join("out.txt")).unwrap(),
        "out\n"
    );
    assert!(!host.join("y").exists());
    // --read-only: the rootfs refuses writes, volumes and tmpfs still take them.
    let r = ferry_run(home.path(), &["--rm", "--read-only", "--tmpfs", "/scratch", "-v", &rw, &img, "sh", "-c",
        "touch /file 2>/dev/null && echo rootfs-writable; touch /scratch/a && echo tmpfs-ok; touch /data/b && echo volume-ok"]).ok();
    assert_eq!(r.stdout, "tmpfs-ok\nvolume-ok\n");
    // Without --read-only the rootfs is writable but changes stay in the container.
    let r = ferry_run(
        home.path(),
        &[
            "--rm",
            &img,
            "sh",
            "-c",
            "echo x > /bin/new && cat /bin/new",
        ],
    )
    .ok();
    assert_eq!(r.stdout, "x\n");
    let r = ferry_run(
        home.path(),
        &[
            "--rm",
            &img,
            "sh",
            "-c",
            "test -e /bin/new && echo leaked || echo fresh",
        ],
    )
    .ok();
    assert_eq!(r.stdout, "fresh\n");
}

#[test]
fn run_limits_memory_pids_and_cpus() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    // Touching 64 MiB under a 16 MiB limit: the OOM killer ends it, exit 137 like Docker.
    let r = ferry_run(
        home.path(),
        &[
            "--rm",
            "--memory",
            "16m",
            &img,
            "dd",
            "if=/dev/zero",
            "of=/dev/null",
            "bs=64M",
            "count=1",
        ],
    );
    assert_eq!(r.code, Some(137), "{r:?}");
    // The same without a limit succeeds.
    ferry_run(
        home.path(),
        &[
            "--rm",
            &img,
            "sh",
            "-c",
            "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null",
        ],
    )
    .ok();
    // pids: the sixth process cannot be forked.
    let forks = "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait; echo done";
    let r = ferry_run(
        home.path(),
        &["--rm", "--pids-limit", "5", &img, "sh", "-c", forks],
    );
    assert!(r.stderr.contains("fork") && r.stdout.is_empty(), "{r:?}");
    let r = ferry_run(home.path(), &["--rm", &img, "sh", "-c", forks]).ok();
    assert_eq!(r.stdout, "done\n");
    let r = ferry_run(
        home.path(),
        &[
            "-d",
            "--pids-limit",
            "5",
            "--cpus",
            "0.5",
            "--memory",
            "32m",
            &img,
            "sleep",
            "30",
        ],
    )
    .ok();
    let id = r.stdout.trim().to_string();
    let meta: Value = serde_json::from_slice(
        &std::fs::read(
            home.path()
                .join("store/containers")
                .join(&id)
                .join("ferry.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let dirs: Vec<String> = meta["cgroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    let read = |file: &str| {
        dirs.iter()
            .find_map(|d| std::fs::read_to_string(Path::new(d).join(file)).ok())
            .unwrap_or_default()
    };
    assert_eq!(read("pids.max").trim(), "5");
    let cpu = format!(
        "{}{}",
        read("cpu.cfs_quota_us").trim(),
        read("cpu.max").trim()
    );
    assert!(cpu.starts_with("50000"), "{cpu}");
    let mem = format!(
        "{}{}",
        read("memory.limit_in_bytes").trim(),
        read("memory.max").trim()
    );
    assert_eq!(mem, (32u64 << 20).to_string());
    run(ferry(home.path()).args(["rm", "-f", &id])).ok();
    assert!(
        dirs.iter().all(|d| !Path::new(d).exists()),
        "cgroups left behind"
    );
}

#[test]
fn run_detached_logs_exec_stop_rm() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/multilayer:oci");
    let script = "echo started; echo to-stderr >&2; trap 'echo got TERM; exit 7' TERM; while true; do sleep 0.1; done";
    let r = ferry_run(
        home.path(),
        &["-d", "--name", "web", &img, "sh", "-c", script],
    )
    .ok();
    let id = r.stdout.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    let ps = run(ferry(home.path()).arg("ps")).ok();
    assert!(
        ps.stdout.contains("web") && ps.stdout.contains(&id[..12]),
        "{}",
        ps.stdout
    );
    // The name is taken while it exists.
    let dup = ferry_run(home.path(), &["-d", "--name", "web", &img, "true"]);
    assert_eq!(dup.code, Some(125));
    dup.assert_stderr("already in use");
    // exec joins its namespaces, user and working directory.
    let e = run(ferry(home.path()).args([
        "exec",
        "web",
        "sh",
        "-c",
        "id -un; pwd; echo $GREETING; cat /proc/1/cmdline | tr '\\0' ' '",
    ]))
    .ok();
    assert!(
        e.stdout.starts_with("app\n/app\nhello\nsh -c"),
        "{}",
        e.stdout
    );
    let e = run(ferry(home.path()).args([
        "exec",
        "-u",
        "0",
        "-w",
        "/",
        "web",
        "sh",
        "-c",
        "id -u; pwd; exit 4",
    ]));
    assert_eq!(e.code, Some(4));
    assert_eq!(e.stdout, "0\n/\n");
    // Docker's exec codes: 126 for any process that cannot start in the container.
    assert_eq!(
        run(ferry(home.path()).args(["exec", "web", "nope"])).code,
        Some(126)
    );
    // rm without -f refuses a running container (exit 1, as Docker's daemon refusal).
    let r = run(ferry(home.path()).args(["rm", "web"]));
    assert_eq!(r.code, Some(1));
    // logs keep stdout and stderr apart.
    let logs = wait_for(|| {
        let l = run(ferry(home.path()).args(["logs", "web"])).ok();
        l.stdout.contains("started").then_some(l)
    });
    assert_eq!(logs.stdout, "started\n");
    assert_eq!(logs.stderr, "to-stderr\n");
    // stop: SIGTERM reaches the trap; the exit code is recorded.
    run(ferry(home.path()).args(["stop", "-t", "5", "web"])).ok();
    let ps = run(ferry(home.path()).args(["ps", "-a"])).ok();
    assert!(ps.stdout.contains("Exited (7)"), "{}", ps.stdout);
    let logs = run(ferry(home.path()).args(["logs", "web"])).ok();
    assert_eq!(logs.stdout, "started\ngot TERM\n");
    assert_eq!(
        run(ferry(home.path()).args(["exec", "web", "true"])).code,
        Some(1)
    );
    run(ferry(home.path()).args(["rm", "web"])).ok();
    assert!(!home.path().join("store/containers").join(&id).exists());
    assert_eq!(run(ferry(home.path()).args(["rm", "web"])).code, Some(1));

    // stop escalates to SIGKILL when the container ignores SIGTERM (PID 1 without a handler),
    // after the grace period: the container ends killed (137), not by the TERM.
    let r = ferry_run(home.path(), &["-d", &img, "sleep", "60"]).ok();
    let id = r.stdout.trim().to_string();
    let t = Instant::now();
    run(ferry(home.path()).args(["stop", "-t", "1", &id])).ok();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(8),
        "stop -t 1 took {took:?}"
    );
    let ps = run(ferry(home.path()).args(["ps", "-a"])).ok();
    let line = ps
        .stdout
        .lines()
        .find(|l| l.starts_with(&id[..12]))
        .unwrap_or_else(|| panic!("{id} not listed:\n{}", ps.stdout));
    assert!(line.contains("Exited (137)"), "{line}");
    run(ferry(home.path()).args(["rm", &id])).ok();
    // kill -s with a name; logs -f ends when the container does.
    let r = ferry_run(
        home.path(),
        &["-d", &img, "sh", "-c", "echo one; sleep 1; echo two"],
    )
    .ok();
    let id = r.stdout.trim().to_string();
    let f = run(ferry(home.path()).args(["logs", "-f", &id])).ok();
    assert_eq!(f.stdout, "one\ntwo\n");
    let r = ferry_run(home.path(), &["-d", &img, "sleep", "60"]).ok();
    let id2 = r.stdout.trim().to_string();
    run(ferry(home.path()).args(["kill", "-s", "KILL", &id2])).ok();
    wait_for(|| {
        let ps = run(ferry(home.path()).args(["ps", "-a"])).ok();
        ps.stdout.contains("Exited (137)").then_some(())
    });
    run(ferry(home.path()).args(["rm", &id, &id2])).ok();
}

#[test]
fn run_forwards_signals_to_the_container() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    for init in [false, true] {
        let mut cmd = ferry(home.path());
        cmd.args(["run", "--rm"]);
        if init {
            cmd.arg("--init");
        }
        cmd.args([
            &img,
            "sh",
            "-c",
            "trap 'echo got TERM; exit 5' TERM; echo ready; while true; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut buf = [0u8; 6];
        std::io::Read::read_exact(&mut out, &mut buf).unwrap();
        assert_eq!(&buf, b"ready\n");
        // SAFETY: signals our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let st = child.wait().unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        assert_eq!(rest, "got TERM\n", "init={init}");
        assert_eq!(st.code(), Some(5), "init={init}");
    }
}

#[test]
fn run_with_runc_gives_the_same_output() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/multilayer:oci");
    let expect = s.expected_stdout("ferry/multilayer:oci");
    let r = ferry_run(home.path(), &["--rm", "--runtime", "runc", &img]).ok();
    assert_eq!(r.stdout.trim(), expect);
    let r = ferry_run(
        home.path(),
        &["--rm", "--runtime", "runc", &img, "sh", "-c", "exit 3"],
    );
    assert_eq!(r.code, Some(3));
    // The bundle `ferry bundle` writes runs under runc directly.
    let bundle = home.path().join("bundle");
    run(ferry(home.path()).args(["bundle", &img]).arg(&bundle)).ok();
    let config: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["user"]["uid"], 1000);
    assert_eq!(config["process"]["cwd"], "/app");
    let id = format!("ferry-it-{}", std::process::id());
    let out = Command::new("runc")
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        expect,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `f` for up to 10 seconds.
fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn run_tty_gives_a_terminal_of_the_callers_size() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    let (mut master, slave) = open_pty(33, 77);
    let st = on_terminal(ferry(home.path()), slave)
        .args([
            "run",
            "--rm",
            "-t",
            &img,
            "sh",
            "-c",
            "[ -t 0 ] && [ -t 1 ] && echo is-tty; stty size; echo $TERM",
        ])
        .status()
        .unwrap();
    // The caller's terminal is restored from raw mode and the output is all there.
    let mut out = Vec::new();
    read_what_is_left(&mut master, &mut out);
    let out = String::from_utf8_lossy(&out);
    assert_eq!(st.code(), Some(0), "{out}");
    assert!(out.contains("is-tty\r\n33 77\r\nxterm"), "{out:?}");
}

/// Runs ferry as `nobody` (a rootless user) on a store that user can write.
fn rootless(home: &Path, args: &[&str]) -> Ran {
    run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_ferry"))
        .env("FERRY_ROOT", home.join("store"))
        .env("HOME", home)
        .arg("run")
        .args(args))
}

#[test]
fn run_rootless_maps_the_user_to_root() {
    let s = require_services!();
    let home = tempdir_for_any_user();
    let img = install(s, home.path(), "ferry/busybox:oci");
    // A rootless user's own store: every file is theirs, root inside the container. (Loaded
    // by root here, so its snapshots are in overlayfs format.)
    let st = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(home.path().join("store"))
        .status()
        .unwrap();
    assert!(st.success());
    let r = rootless(
        home.path(),
        &[
            "--rm",
            &img,
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map | xargs; echo $$; hostname | wc -c",
        ],
    )
    .ok();
    assert_eq!(r.stdout, "0\n0 65534 1\n1\n13\n");
    // Only root is mapped; limits need cgroups ferry cannot write.
    let r = rootless(home.path(), &["--rm", "-u", "1000", &img, "id"]);
    assert_eq!(r.code, Some(125));
    let r = rootless(home.path(), &["--rm", "--memory", "64m", &img, "true"]);
    assert_eq!(r.code, Some(125));
    r.assert_stderr("without root");
}

#[test]
fn run_rootless_without_user_namespaces_names_the_setting() {
    let s = require_services!();
    let home = tempdir_for_any_user();
    let img = install(s, home.path(), "ferry/busybox:oci");
    // One user namespace allowed under a private one, and already used by the one ferry runs
    // in as a non-root user: its own is refused (ENOSPC), as on a host where the limit is 0.
    let ferry_bin = env!("CARGO_BIN_EXE_ferry");
    let script = format!(
        "echo 1 > /proc/sys/user/max_user_namespaces && exec unshare --user --map-user=65534 --map-group=65534 {ferry_bin} run --rm {img} true"
    );
    let r = run(Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c", &script])
        .env("FERRY_ROOT", home.path().join("store")));
    assert_eq!(r.code, Some(125), "{r:?}");
    r.assert_stderr("user.max_user_namespaces");
    assert!(
        r.stderr
            .contains("hint: as root, run `sysctl -w user.max_user_namespaces="),
        "{}",
        r.stderr
    );
}

#[test]
fn run_init_reaps_orphans_and_hides_its_binary() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    // An orphan is re-parented to PID 1: `sleep 5` (exec'd by sh) never reaps it, the init does.
    let zombies = |init: bool| {
        let mut args = vec!["-d"];
        if init {
            args.push("--init");
        }
        args.extend_from_slice(&[&img, "sh", "-c", "(sleep 0.1 &); exec sleep 5"]);
        let id = ferry_run(home.path(), &args).ok().stdout.trim().to_string();
        std::thread::sleep(Duration::from_millis(800));
        let ps = run(ferry(home.path()).args(["exec", &id, "ps", "-o", "stat,comm"])).ok();
        run(ferry(home.path()).args(["rm", "-f", &id])).ok();
        ps.stdout.lines().filter(|l| l.starts_with('Z')).count()
    };
    assert_eq!(zombies(false), 1);
    assert_eq!(zombies(true), 0);
    // The init is ferry's own code: processes in the container cannot reach the host's ferry
    // binary through /proc/1/exe (CVE-2019-5736).
    let r = ferry_run(
        home.path(),
        &[
            "--rm",
            "--init",
            &img,
            "sh",
            "-c",
            "cat /proc/1/exe > /dev/null 2>&1 && echo readable || echo protected",
        ],
    )
    .ok();
    assert_eq!(r.stdout, "protected\n");
}

#[test]
fn run_exec_with_a_terminal() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    let id = ferry_run(home.path(), &["-d", &img, "sleep", "30"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let (mut master, slave) = open_pty(20, 50);
    let st = on_terminal(ferry(home.path()), slave)
        .args([
            "exec",
            "-t",
            &id,
            "sh",
            "-c",
            "[ -t 1 ] && echo is-tty; stty size; exit 6",
        ])
        .status()
        .unwrap();
    let mut out = Vec::new();
    read_what_is_left(&mut master, &mut out);
    let out = String::from_utf8_lossy(&out);
    assert_eq!(st.code(), Some(6), "{out}");
    assert!(out.contains("is-tty\r\n20 50\r\n"), "{out:?}");
    run(ferry(home.path()).args(["rm", "-f", &id])).ok();
}

#[test]
fn run_tty_follows_window_size_changes() {
    use std::os::fd::AsRawFd;
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    let (mut master, slave) = open_pty(33, 77);
    let mut child = on_terminal(ferry(home.path()), slave)
        .args([
            "run",
            "--rm",
            "-t",
            &img,
            "sh",
            "-c",
            "trap 'stty size; exit 0' WINCH; echo ready; while true; do sleep 0.1; done",
        ])
        .spawn()
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&out).contains("ready") {
        let n = std::io::Read::read(&mut master, &mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
    }
    // The user resizes the terminal: the terminal's size changes and ferry gets SIGWINCH.
    let bigger = libc::winsize {
        ws_row: 40,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: sets the size of our own pty and signals our own child.
    unsafe {
        libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &bigger);
        libc::kill(child.id() as i32, libc::SIGWINCH);
    }
    let st = child.wait().unwrap();
    read_what_is_left(&mut master, &mut out);
    let out = String::from_utf8_lossy(&out);
    assert_eq!(st.code(), Some(0), "{out:?}");
    assert!(out.contains("40 100"), "{out:?}");
}

/// `cmd` with a pseudo-terminal's slave as its standard input, output and error, as in a
/// terminal session.
fn on_terminal(mut cmd: Command, slave: std::os::fd::OwnedFd) -> Command {
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    cmd
}

/// Appends to `out` what a pseudo-terminal's master still holds, without waiting for more.
fn read_what_is_left(master: &mut std::fs::File, out: &mut Vec<u8>) {
    rustix::fs::fcntl_setfl(&*master, rustix::fs::OFlags::NONBLOCK).expect("a non-blocking pty");
    let mut buf = [0u8; 4096];
    while let Ok(n) = std::io::Read::read(master, &mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// A pseudo-terminal of `rows` × `cols`: its master as a file, its slave as a descriptor.
fn open_pty(rows: u16, cols: u16) -> (std::fs::File, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty fills two descriptors we own.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        )
    };
    assert_eq!(rc, 0, "openpty failed");
    // SAFETY: fresh descriptors, each wrapped once.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::os::fd::OwnedFd::from_raw_fd(slave),
        )
    }
}

//! Protections side by side with Docker 20.10 on the same image: the seccomp table (system calls
//! and operations made from inside a container, under the same flags in `docker run` and
//! `ferry run`, outcomes equal row by row), and each difference issue 11 listed (`-it` with a
//! pipe, exec into limited containers, `/sys/fs/cgroup`, `--privileged`'s `/dev`, `--init`'s
//! command line, `/etc/hosts`, exit codes, `rm -f` against `--rm`), plus `--ulimit`,
//! `--group-add`, `--device`, `--shm-size` and `--runtime crun|runc`. These tests run as root.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Ran, Services, ferry, run, tempdir, workspace};
use crate::require_services;
use crate::run::install;

/// The busybox image in ferry's store and, loaded from ferry's own archive, in Docker.
struct Setup {
    home: tempfile::TempDir,
    img: String,
    /// A directory holding the static probe, bind-mounted read-only at /probe.
    probe_dir: PathBuf,
}

fn setup(s: &Services) -> Setup {
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    let archive = home.path().join("ferry_busybox_oci.tar");
    run(s.docker().arg("load").arg("-i").arg(&archive)).ok();
    let probe_dir = home.path().join("probe");
    std::fs::create_dir(&probe_dir).unwrap();
    run(Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(probe_dir.join("probe"))
        .arg(workspace().join("testdata/seccomp/probe.c")))
    .ok();
    Setup {
        home,
        img,
        probe_dir,
    }
}

impl Setup {
    fn ferry(&self, args: &[&str]) -> Ran {
        run(ferry(self.home.path()).arg("run").args(args))
    }

    fn docker(&self, s: &Services, args: &[&str]) -> Ran {
        run(s.docker().arg("run").args(args))
    }

    fn probe_mount(&self) -> String {
        format!("{}:/probe:ro", self.probe_dir.display())
    }

    /// The probe's rows under `flags` in both engines.
    fn probe(&self, s: &Services, flags: &[&str]) -> (Rows, Rows) {
        let mount = self.probe_mount();
        let mut args = vec!["--rm", "-v", &mount];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[&self.img, "/probe/probe"]);
        let ours = self.ferry(&args).ok();
        let theirs = self.docker(s, &args).ok();
        (rows(&ours.stdout), rows(&theirs.stdout))
    }
}

type Rows = BTreeMap<String, String>;

fn rows(out: &str) -> Rows {
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Rows where Docker 20.10's built-in profile is older than moby's current one, which ferry
/// reproduces: (row, ferry's outcome, Docker 20.10's outcome). Docker 25 blocks io_uring and
/// AF_VSOCK, allows name_to_handle_at and knows cachestat (Linux 6.5).
const NEWER_PROFILE: [(&str, &str, &str); 4] = [
    ("io_uring_setup", "EPERM", "EFAULT"),
    ("socket-vsock", "EPERM", "ok"),
    ("name_to_handle_at", "EOPNOTSUPP", "EPERM"),
    ("cachestat", "EBADF", "ENOSYS"),
];

/// Every row equal, except `allowed` differences, which must be exactly those.
#[track_caller]
fn assert_same(what: &str, ours: &Rows, theirs: &Rows, allowed: &[(&str, &str, &str)]) {
    assert!(ours.len() >= 30, "{what}: the probe printed {ours:?}");
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "{what}: not the same rows"
    );
    let mut diffs = Vec::new();
    for (row, o) in ours {
        let t = &theirs[row];
        match allowed.iter().find(|(r, _, _)| r == row) {
            Some((_, want_ours, want_theirs))
                if (o.as_str(), t.as_str()) != (*want_ours, *want_theirs) =>
            {
                diffs.push(format!(
                    "{row}: ferry {o}, docker {t} (expected {want_ours} / {want_theirs})"
                ))
            }
            None if o != t => diffs.push(format!("{row}: ferry {o}, docker {t}")),
            _ => {}
        }
    }
    assert!(diffs.is_empty(), "{what}:\n{}", diffs.join("\n"));
}

#[test]
fn security_seccomp_outcomes_match_docker_row_by_row() {
    let s = require_services!();
    let t = setup(s);

    // Docker's default profile: the escape routes are closed in both, the rest open.
    let (ours, theirs) = t.probe(s, &[]);
    assert_same("default", &ours, &theirs, &NEWER_PROFILE);
    for (row, want) in [
        ("unshare-user", "EPERM"),
        ("keyctl", "EPERM"),
        ("add_key", "EPERM"),
        ("mount", "EPERM"),
        ("open_by_handle_at", "EPERM"),
        ("personality-no-aslr", "EPERM"),
        ("clone3", "ENOSYS"),
        ("syscall-499", "ENOSYS"),
        ("i386-unshare", "EPERM"),
        ("x32-unshare", "EPERM"),
        ("ptrace-child", "ok"),
        ("raw-socket", "ok"),
        ("raw-socket-without-net-raw", "EPERM"),
        ("getpid", "ok"),
    ] {
        assert_eq!(ours[row], want, "{row} under the default profile");
    }

    // --cap-add SYS_ADMIN opens what that capability governs, and only that.
    let (ours, theirs) = t.probe(s, &["--cap-add", "SYS_ADMIN"]);
    // (name_to_handle_at is open to CAP_SYS_ADMIN in both profiles.)
    let newer: Vec<_> = NEWER_PROFILE
        .into_iter()
        .filter(|(row, _, _)| *row != "name_to_handle_at")
        .collect();
    assert_same("--cap-add SYS_ADMIN", &ours, &theirs, &newer);
    assert_eq!(ours["unshare-user"], "ok");
    assert_eq!(ours["mount"], "ok");
    assert_eq!(ours["clone3"], "EINVAL");
    assert_eq!(ours["keyctl"], "EPERM");

    // No filter: only the kernel and the capabilities decide.
    let (ours, theirs) = t.probe(s, &["--security-opt", "seccomp=unconfined"]);
    assert_same("seccomp=unconfined", &ours, &theirs, &[]);
    assert_eq!(ours["keyctl"], "ok");
    assert_eq!(ours["personality-no-aslr"], "ok");

    // A profile of the user's, with arguments, capability conditions and the old `name`.
    let custom = workspace().join("testdata/seccomp/custom-profile.json");
    let opt = format!("seccomp={}", custom.display());
    let (ours, theirs) = t.probe(s, &["--security-opt", &opt]);
    assert_same("custom profile", &ours, &theirs, &[]);
    for (row, want) in [
        ("mkdir", "EACCES"),
        ("keyctl", "ENOENT"),
        ("chroot", "ENOSYS"),
        ("unshare-user", "EPERM"),
        ("raw-socket", "EAFNOSUPPORT"),
        ("personality-linux", "ok"),
        ("personality-no-aslr", "EPERM"),
        ("io_uring_setup", "EFAULT"),
    ] {
        assert_eq!(ours[row], want, "{row} under the custom profile");
    }

    // ferry's default profile, as `ferry bundle` writes it for runc, given to Docker as a
    // profile: runc's libseccomp filter and ferry's own compiler agree on every row.
    let bundle = t.home.path().join("bundle");
    run(ferry(t.home.path()).args(["bundle", &t.img]).arg(&bundle)).ok();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    let ours_json = t.home.path().join("ferry-default.json");
    std::fs::write(
        &ours_json,
        serde_json::to_vec(&config["linux"]["seccomp"]).unwrap(),
    )
    .unwrap();
    let opt = format!("seccomp={}", ours_json.display());
    let mount = t.probe_mount();
    let theirs = rows(
        &t.docker(
            s,
            &[
                "--rm",
                "-v",
                &mount,
                "--security-opt",
                &opt,
                &t.img,
                "/probe/probe",
            ],
        )
        .ok()
        .stdout,
    );
    let (ours, _) = t.probe(s, &[]);
    assert_same("ferry's profile under runc", &ours, &theirs, &[]);
}

#[test]
fn security_no_new_privileges_and_privileged_like_docker() {
    let s = require_services!();
    let t = setup(s);
    let script = "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status";
    for flags in [
        &[][..],
        &["--security-opt", "no-new-privileges"][..],
        &["--security-opt", "no-new-privileges:false"][..],
    ] {
        let mut a = vec!["--rm"];
        a.extend_from_slice(flags);
        a.extend_from_slice(&[&t.img, "sh", "-c", script]);
        let ours = t.ferry(&a).ok().stdout;
        let theirs = t.docker(s, &a).ok().stdout;
        assert_eq!(ours, theirs, "{flags:?}");
    }
    let status = |flags: &[&str]| {
        let mut a = vec!["--rm"];
        a.extend_from_slice(flags);
        a.extend_from_slice(&[&t.img, "sh", "-c", script]);
        t.ferry(&a).ok().stdout
    };
    assert_eq!(status(&[]), "NoNewPrivs:\t0\nSeccomp:\t2\n");
    assert_eq!(
        status(&["--security-opt", "no-new-privileges"]),
        "NoNewPrivs:\t1\nSeccomp:\t2\n"
    );
    // --privileged: no filter, and the host's devices. (Docker 20.10's --privileged cannot
    // start on this host: runc fails to raise CAP_SYS_RESOURCE, which root here lacks. So
    // the expectation is what Docker builds it from: the device nodes of the host's /dev,
    // minus the mounts of its own and the console, plus the usual links and mounts.)
    assert_eq!(status(&["--privileged"]), "NoNewPrivs:\t0\nSeccomp:\t0\n");
    let mut want: Vec<String> = [
        "core", "fd", "mqueue", "ptmx", "pts", "shm", "stderr", "stdin", "stdout",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for e in std::fs::read_dir("/dev").unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if ["pts", "shm", "fd", "mqueue", "console"].contains(&name.as_str()) {
            continue;
        }
        if has_device(&e.path()) && !want.contains(&name) {
            want.push(name);
        }
    }
    want.sort();
    let ours = t
        .ferry(&["--rm", "--privileged", &t.img, "sh", "-c", "ls /dev | sort"])
        .ok()
        .stdout;
    let mut ours: Vec<&str> = ours.lines().collect();
    ours.sort();
    assert_eq!(ours, want);
    assert!(ours.len() > 30, "{ours:?}");
    // Block devices are there and open, as with Docker's --privileged.
    let r = t.ferry(&[
        "--rm",
        "--privileged",
        &t.img,
        "sh",
        "-c",
        "head -c 0 /dev/loop0 && echo ok",
    ]);
    assert_eq!(r.ok().stdout, "ok\n");

    // A bad flag or profile is refused before anything runs.
    let r = t.ferry(&[
        "--rm",
        "--security-opt",
        "seccomp=/no/such.json",
        &t.img,
        "true",
    ]);
    assert_eq!(r.code, Some(125));
    r.assert_stderr("/no/such.json");
    let r = t.ferry(&[
        "--rm",
        "--security-opt",
        "apparmor=docker-default",
        &t.img,
        "true",
    ]);
    assert_eq!(r.code, Some(125));
}

/// A device node, or a directory with one somewhere below.
fn has_device(p: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return false;
    };
    let ft = m.file_type();
    if ft.is_dir() {
        return std::fs::read_dir(p)
            .map(|d| d.filter_map(|e| e.ok()).any(|e| has_device(&e.path())))
            .unwrap_or(false);
    }
    ft.is_char_device() || ft.is_block_device() || ft.is_fifo()
}

#[test]
fn security_tty_with_a_pipe_is_refused_like_docker() {
    let s = require_services!();
    let t = setup(s);
    let piped = |mut cmd: Command| -> Ran {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let _ = child.stdin.take().unwrap().write_all(b"hi\n");
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{cmd:?} hangs with a pipe on stdin");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap().into()
    };
    let mut d = s.docker();
    d.args(["run", "--rm", "-it", &t.img, "cat"]);
    let theirs = piped(d);
    let mut f = ferry(t.home.path());
    f.args(["run", "--rm", "-it", &t.img, "cat"]);
    let ours = piped(f);
    assert_eq!(theirs.code, Some(1), "{theirs:?}");
    assert_eq!(ours.code, theirs.code, "{ours:?}");
    ours.assert_stderr("the input device is not a TTY");
    theirs.assert_stderr("the input device is not a TTY");
    // The same for exec into a running container.
    let c = Pair::start(s, &t, &[]);
    let mut d = s.docker();
    d.args(["exec", "-it", &c.theirs, "cat"]);
    let theirs = piped(d);
    let mut f = ferry(t.home.path());
    f.args(["exec", "-it", &c.ours, "cat"]);
    let ours = piped(f);
    assert_eq!(
        (ours.code, theirs.code),
        (Some(1), Some(1)),
        "{ours:?} {theirs:?}"
    );
    ours.assert_stderr("the input device is not a TTY");
    drop(c);
    // -i alone takes the pipe.
    let mut f = ferry(t.home.path());
    f.args(["run", "--rm", "-i", &t.img, "cat"]);
    let ours = piped(f);
    assert_eq!(ours.stdout, "hi\n");
    // No container is left behind by the refusal.
    let ps = run(ferry(t.home.path()).args(["ps", "-aq"])).ok();
    assert_eq!(ps.stdout, "");
}

/// A running container in both engines, removed at the end.
struct Pair<'a> {
    s: &'a Services,
    t: &'a Setup,
    ours: String,
    theirs: String,
}

impl<'a> Pair<'a> {
    fn start(s: &'a Services, t: &'a Setup, flags: &[&str]) -> Self {
        let mut a = vec!["-d"];
        a.extend_from_slice(flags);
        a.extend_from_slice(&[&t.img, "sleep", "60"]);
        let ours = t.ferry(&a).ok().stdout.trim().to_string();
        let theirs = t.docker(s, &a).ok().stdout.trim().to_string();
        Pair { s, t, ours, theirs }
    }

    fn exec(&self, args: &[&str]) -> (Ran, Ran) {
        let ours = run(ferry(self.t.home.path())
            .arg("exec")
            .args(with_container(args, &self.ours)));
        let theirs = run(self
            .s
            .docker()
            .arg("exec")
            .args(with_container(args, &self.theirs)));
        (ours, theirs)
    }
}

/// `args` with the container's ID put where `{}` stands.
fn with_container(args: &[&str], id: &str) -> Vec<String> {
    args.iter()
        .map(|a| {
            if *a == "{}" {
                id.to_string()
            } else {
                a.to_string()
            }
        })
        .collect()
}

impl Drop for Pair<'_> {
    fn drop(&mut self) {
        let _ = ferry(self.t.home.path())
            .args(["rm", "-f", &self.ours])
            .output();
        let _ = self.s.docker().args(["rm", "-f", &self.theirs]).output();
    }
}

#[test]
fn security_exec_and_cgroups_in_limited_containers_like_docker() {
    let s = require_services!();
    let t = setup(s);
    let c = Pair::start(
        s,
        &t,
        &["--memory", "32m", "--cpus", "0.5", "--pids-limit", "50"],
    );
    // exec works in a container with limits, and sees them read-only at /sys/fs/cgroup.
    let script = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; \
                  cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us; \
                  touch /sys/fs/cgroup/memory/x 2>/dev/null && echo writable || echo read-only";
    let (ours, theirs) = c.exec(&["{}", "sh", "-c", script]);
    let (ours, theirs) = (ours.ok(), theirs.ok());
    assert_eq!(ours.stdout, theirs.stdout);
    assert_eq!(ours.stdout, "33554432\n50\n50000\nread-only\n");
    // The process exec starts is in the container's cgroups, under its seccomp filter.
    let (ours, _) = c.exec(&["{}", "sh", "-c", "grep Seccomp: /proc/self/status"]);
    assert_eq!(ours.ok().stdout, "Seccomp:\t2\n");
    // Same in a fresh container.
    let limit = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes";
    let a = ["--rm", "--memory", "32m", &t.img, "sh", "-c", limit];
    assert_eq!(t.ferry(&a).ok().stdout, t.docker(s, &a).ok().stdout);
}

#[test]
fn security_exit_codes_and_rm_race_like_docker() {
    let s = require_services!();
    let t = setup(s);
    let c = Pair::start(s, &t, &[]);
    for args in [
        &["{}", "no-such-command"][..],
        &["-w", "/missing", "{}", "true"][..],
        &["-u", "nobody-here", "{}", "true"][..],
        &["{}", "/etc"][..],
    ] {
        let (ours, theirs) = c.exec(args);
        assert_eq!(theirs.code, Some(126), "docker exec {args:?}: {theirs:?}");
        assert_eq!(ours.code, theirs.code, "ferry exec {args:?}: {ours:?}");
    }
    // rm of a running container, then exec into a stopped one: 1.
    let ours = run(ferry(t.home.path()).args(["rm", &c.ours]));
    let theirs = run(s.docker().args(["rm", &c.theirs]));
    assert_eq!(
        (ours.code, theirs.code),
        (Some(1), Some(1)),
        "{ours:?} {theirs:?}"
    );
    run(ferry(t.home.path()).args(["stop", "-t", "0", &c.ours])).ok();
    run(s.docker().args(["stop", "-t", "0", &c.theirs])).ok();
    let (ours, theirs) = c.exec(&["{}", "true"]);
    assert_eq!(
        (ours.code, theirs.code),
        (Some(1), Some(1)),
        "{ours:?} {theirs:?}"
    );

    // rm -f of a foreground --rm container: the name printed, exit 0, nothing left behind.
    let name = format!("ferry-it-race-{}", std::process::id());
    let mut ours_fg = ferry(t.home.path())
        .args(["run", "--rm", "--name", &name, &t.img, "sleep", "30"])
        .spawn()
        .unwrap();
    let mut theirs_fg = s
        .docker()
        .args(["run", "--rm", "--name", &name, &t.img, "sleep", "30"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The only running container of this store.
    wait_running(|| run(ferry(t.home.path()).args(["ps", "-q"])));
    wait_running(|| run(s.docker().args(["ps", "-q", "-f", &format!("name={name}")])));
    let ours = run(ferry(t.home.path()).args(["rm", "-f", &name]));
    let theirs = run(s.docker().args(["rm", "-f", &name]));
    assert_eq!(theirs.code, Some(0), "{theirs:?}");
    assert_eq!(ours.code, theirs.code, "{ours:?}");
    assert_eq!(ours.stdout, theirs.stdout);
    assert_eq!(ours.stderr, "", "{ours:?}");
    assert_eq!(ours_fg.wait().unwrap().code(), Some(137));
    let _ = theirs_fg.wait();
    // Gone from the list at once, and from the disk soon after (its directory is deleted in
    // the background).
    let ps = run(ferry(t.home.path()).args(["ps", "-a"])).ok();
    assert!(!ps.stdout.contains(&name), "{}", ps.stdout);
    let deadline = Instant::now() + Duration::from_secs(10);
    let containers = t.home.path().join("store/containers");
    let removing = || {
        std::fs::read_dir(&containers)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
                    .count()
            })
            .unwrap_or(0)
    };
    while removing() > 0 {
        assert!(
            Instant::now() < deadline,
            "a container directory is left behind"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_running(ps: impl Fn() -> Ran) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while ps().stdout.trim().is_empty() {
        assert!(Instant::now() < deadline, "the container did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn security_init_hosts_and_resource_flags_like_docker() {
    let s = require_services!();
    let t = setup(s);
    // --init: PID 1 shows the init and the command, not ferry's host command line.
    let a = ["--rm", "--init", &t.img, "cat", "/proc/1/cmdline"];
    let ours = t.ferry(&a).ok().stdout.replace('\0', " ");
    let theirs = t.docker(s, &a).ok().stdout.replace('\0', " ");
    assert_eq!(theirs.trim(), "/sbin/docker-init -- cat /proc/1/cmdline");
    assert_eq!(ours.trim(), "ferry-init -- cat /proc/1/cmdline");

    // /etc/hosts: the host's with the host's network, the loopback names with none.
    for net in ["host", "none"] {
        let a = ["--rm", "--network", net, &t.img, "cat", "/etc/hosts"];
        assert_eq!(
            t.ferry(&a).ok().stdout,
            t.docker(s, &a).ok().stdout,
            "{net}"
        );
    }

    // --ulimit, --group-add, --shm-size, --device.
    let script = "ulimit -n; ulimit -Hn; ulimit -c; id -G; df -k /dev/shm | awk 'NR==2 {print $2}'; \
                  ls -l /dev/fuse /dev/xloop | awk '{print $1, $5, $6}'; \
                  head -c 0 /dev/xloop && echo readable";
    let a = [
        "--rm",
        "--ulimit",
        "nofile=100:200",
        "--ulimit",
        "core=0",
        "--group-add",
        "10",
        "--group-add",
        "nobody",
        "--shm-size",
        "1m",
        "--device",
        "/dev/fuse",
        "--device",
        "/dev/loop0:/dev/xloop:rw",
        &t.img,
        "sh",
        "-c",
        script,
    ];
    let ours = t.ferry(&a).ok();
    let theirs = t.docker(s, &a).ok();
    assert_eq!(ours.stdout, theirs.stdout);
    assert!(
        ours.stdout.starts_with("100\n200\n0\n0 10 65534\n1024\n"),
        "{}",
        ours.stdout
    );
    assert!(ours.stdout.ends_with("readable\n"), "{}", ours.stdout);
    // A device that is not there, a bad limit: refused with the object named.
    let r = t.ferry(&["--rm", "--device", "/dev/no-such-device", &t.img, "true"]);
    assert_eq!(r.code, Some(125));
    r.assert_stderr("/dev/no-such-device");
    let r = t.ferry(&["--rm", "--ulimit", "nofile=20:10", &t.img, "true"]);
    assert_eq!(r.code, Some(125));
    let r = t.ferry(&["--rm", "--group-add", "no-such-group", &t.img, "true"]);
    assert_eq!(r.code, Some(125));
    r.assert_stderr("no-such-group");
}

#[test]
fn security_runc_and_crun_apply_the_same_protections() {
    let s = require_services!();
    let t = setup(s);
    let mount = t.probe_mount();
    let (ours, _) = t.probe(s, &[]);
    for runtime in ["runc", "crun"] {
        // The same profile, from the bundle: every probe row as under ferry's runtime.
        let a = [
            "--rm",
            "--runtime",
            runtime,
            "-v",
            &mount,
            &t.img,
            "/probe/probe",
        ];
        let theirs = rows(&t.ferry(&a).ok().stdout);
        // crun 1.8 has no ENOSYS answer for calls newer than the profile (runc and ferry do).
        let crun_enosys: &[(&str, &str, &str)] = if runtime == "crun" {
            &[("syscall-499", "ENOSYS", "EPERM")]
        } else {
            &[]
        };
        assert_same(runtime, &ours, &theirs, crun_enosys);
        // Limits on this hybrid-cgroup host, visible inside; exec into it.
        let a = [
            "-d",
            "--runtime",
            runtime,
            "--memory",
            "32m",
            &t.img,
            "sleep",
            "30",
        ];
        let id = t.ferry(&a).ok().stdout.trim().to_string();
        let e = run(ferry(t.home.path()).args([
            "exec",
            &id,
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; grep Seccomp: /proc/self/status",
        ]));
        run(ferry(t.home.path()).args(["rm", "-f", &id])).ok();
        assert_eq!(e.ok().stdout, "33554432\nSeccomp:\t2\n", "{runtime}");
        // A node the container makes with CAP_MKNOD stays closed (the runtime's devices
        // cgroup), as in Docker.
        let r = t.ferry(&[
            "--rm",
            "--runtime",
            runtime,
            &t.img,
            "sh",
            "-c",
            "mknod /tmp/disk b 7 0 && head -c 1 /tmp/disk >/dev/null 2>&1 && echo opened || echo refused",
        ]);
        assert_eq!(r.ok().stdout, "refused\n", "{runtime}");
    }
}

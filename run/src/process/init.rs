//! What the container's first process does between `clone` and `execve`, in this order:
//! join cgroups, build the rootfs and `pivot_root` into it, set the hostname, create the working
//! directory, start a session, then [`privileges::drop_privileges`] (limits, capabilities, user,
//! no_new_privs, seccomp), then execute the command (or, with `--init`, become a small init that
//! runs it).

use std::os::fd::{BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use super::exec::{self, InitError};
use super::privileges::{self, Privileges};
use crate::rootfs::device::Node;
use crate::rootfs::{self, RootSource};
use crate::seccomp::Program;
use crate::syscall::Syscall;

/// Everything the first process needs, computed by the supervisor before `clone`.
#[derive(Debug, Clone)]
pub struct InitPlan {
    /// The runtime config.
    pub spec: Spec,
    /// The rootfs directory (a mount point once prepared).
    pub rootfs: PathBuf,
    /// overlayfs or a ready directory.
    pub source: RootSource,
    /// `cgroup.procs` files to join (written with `0`: the caller itself).
    pub cgroup_procs: Vec<PathBuf>,
    /// With `-t`: the pty slave's descriptor and path.
    pub console: Option<(RawFd, PathBuf)>,
    /// `--privileged`.
    pub privileged: bool,
    /// Running in a user namespace of our own (rootless).
    pub rootless: bool,
    /// `--init`.
    pub init: bool,
    /// The compiled `linux.seccomp` of the spec.
    pub seccomp: Option<Program>,
    /// `--device` nodes (or the host's with `--privileged`).
    pub devices: Vec<Node>,
}

fn sys_err(what: impl std::fmt::Display, e: std::io::Error) -> InitError {
    InitError::setup(format!("cannot {what}: {e}"))
}

/// Runs the plan; returns only on failure (the caller reports it and exits).
pub fn run(sys: &dyn Syscall, plan: &InitPlan) -> InitError {
    match setup(sys, plan) {
        Err(e) => e,
        Ok(()) => {
            let process = plan.spec.process().clone().unwrap_or_default();
            let args = process.args().clone().unwrap_or_default();
            let env = process.env().clone().unwrap_or_default();
            if plan.init {
                return super::reaper::run_init(sys, &args, &env);
            }
            exec::close_inherited_fds();
            exec::reset_signals();
            exec::exec(sys, &args, &env)
        }
    }
}

fn setup(sys: &dyn Syscall, plan: &InitPlan) -> Result<(), InitError> {
    let spec = &plan.spec;
    for procs in &plan.cgroup_procs {
        sys.write_file(procs, "0")
            .map_err(|e| sys_err(format_args!("join cgroup {}", procs.display()), e))?;
    }

    // A network namespace of its own starts with `lo` down (Docker's containers have it up).
    if crate::net::loopback::wanted(spec) {
        sys.loopback_up()
            .map_err(|e| sys_err("bring up the loopback interface", e))?;
    }

    let cgroups: Vec<PathBuf> = plan
        .cgroup_procs
        .iter()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    let extras = rootfs::Extras {
        console: plan.console.as_ref().map(|(_, p)| p.as_path()),
        privileged: plan.privileged,
        devices: &plan.devices,
        // A user namespace may not make device nodes; its nodes are bound instead.
        mknod: plan.privileged && !plan.rootless,
        cgroups: &cgroups,
    };
    rootfs::prepare(sys, spec, &plan.rootfs, &plan.source, &extras).map_err(|e| {
        let overlay_unavailable = matches!(plan.source, RootSource::Overlay(_))
            && e.step.starts_with("mount overlay")
            && matches!(
                e.source.raw_os_error(),
                Some(libc::EINVAL | libc::ENODEV | libc::EPERM | libc::EOPNOTSUPP)
            );
        InitError {
            code: 125,
            message: format!("cannot {}: {}", e.step, e.source),
            overlay_unavailable,
        }
    })?;

    if let Some(h) = spec.hostname() {
        sys.sethostname(h)
            .map_err(|e| sys_err(format_args!("set hostname {h}"), e))?;
    }

    let process = spec.process().clone().unwrap_or_default();
    let cwd = process.cwd().clone();
    // Docker creates a missing WorkingDir, owned by root.
    sys.mkdir_all(&cwd, 0o755).map_err(|e| {
        sys_err(
            format_args!("create working directory {}", cwd.display()),
            e,
        )
    })?;

    // A session of its own: without it the container shares the caller's terminal session
    // and can push input into the host shell with TIOCSTI (CVE-2017-5226 in bubblewrap).
    sys.setsid().map_err(|e| sys_err("start a session", e))?;
    if let Some((fd, _)) = plan.console {
        // SAFETY: the supervisor keeps the pty slave open until this process has executed.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        sys.set_controlling_tty(fd)
            .map_err(|e| sys_err("attach the terminal", e))?;
    }
    privileges::drop_privileges(
        sys,
        &Privileges::of(&process, plan.rootless, plan.seccomp.as_ref()),
    )
}

/// `/proc/<pid>/…` of a host pid, for the supervisor.
pub fn proc_path(pid: i32, rest: &str) -> PathBuf {
    Path::new("/proc").join(pid.to_string()).join(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Image;
    use crate::options::{Network, RunOptions};
    use crate::rootfs::overlay;
    use crate::spec::{self, SpecContext};
    use crate::syscall::{Call, RecordingSyscall};

    fn plan(opts: &RunOptions) -> (tempfile::TempDir, InitPlan) {
        let dir = tempfile::tempdir().unwrap();
        let layer = dir.path().join("layer");
        std::fs::create_dir_all(layer.join("etc")).unwrap();
        std::fs::write(
            layer.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(layer.join("etc/group"), "app:x:1000:\nextra:x:1001:app\n").unwrap();
        let config = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"],"User":"app","WorkingDir":"/app"},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        let image = Image {
            id: ferry_oci::digest::sha256(b"x"),
            names: vec![],
            config,
            layers: vec![layer.clone()],
            overlay_ready: true,
        };
        let cdir = dir.path().join("c");
        let spec = spec::build(
            &image,
            opts,
            &SpecContext {
                container_dir: &cdir,
                hostname: "abc",
                rootless: None,
                cgroups_path: None,
                image_name: "test",
            },
        )
        .unwrap();
        let seccomp = spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref())
            .map(|s| Program::compile(s).unwrap());
        let plan = InitPlan {
            spec,
            rootfs: cdir.join("rootfs"),
            source: RootSource::Overlay(overlay::plan(
                &[layer],
                &cdir.join("upper"),
                &cdir.join("work"),
            )),
            cgroup_procs: vec![PathBuf::from(
                "/sys/fs/cgroup/memory/ferry/abc/cgroup.procs",
            )],
            console: None,
            privileged: false,
            rootless: false,
            init: false,
            seccomp,
            devices: vec![],
        };
        (dir, plan)
    }

    fn index(calls: &[Call], pred: impl Fn(&Call) -> bool) -> usize {
        calls.iter().position(pred).expect("call not made")
    }

    fn mount_at(target_suffix: &'static str) -> impl Fn(&Call) -> bool {
        move |c| matches!(c, Call::Mount { target, .. } if target.ends_with(target_suffix))
    }

    #[test]
    fn namespace_mount_and_credential_steps_come_in_order() {
        let opts = RunOptions {
            network: Network::None,
            ..RunOptions::default()
        };
        let (_d, plan) = plan(&opts);
        assert_eq!(
            crate::process::spawn::clone_flags(&plan.spec),
            libc::CLONE_NEWPID
                | libc::CLONE_NEWIPC
                | libc::CLONE_NEWUTS
                | libc::CLONE_NEWNS
                | libc::CLONE_NEWNET
        );
        let sys = RecordingSyscall::default();
        setup(&sys, &plan).unwrap();
        let calls = sys.calls();
        let cgroup = index(
            &calls,
            |c| matches!(c, Call::WriteFile(p, v) if p.ends_with("cgroup.procs") && v == "0"),
        );
        let lo = index(&calls, |c| matches!(c, Call::LoopbackUp));
        let slave = index(
            &calls,
            |c| matches!(c, Call::Mount { target, flags, .. } if target == Path::new("/") && *flags == libc::MS_REC | libc::MS_SLAVE),
        );
        let overlay = index(
            &calls,
            |c| matches!(c, Call::Mount { fstype: Some(t), .. } if t == "overlay"),
        );
        let proc_ = index(&calls, mount_at("rootfs/proc"));
        let dev = index(&calls, mount_at("rootfs/dev"));
        let null = index(&calls, mount_at("rootfs/dev/null"));
        let pivot = index(&calls, |c| matches!(c, Call::PivotRoot(..)));
        let detach = index(
            &calls,
            |c| matches!(c, Call::Umount2(p, f) if p == Path::new(".") && *f == libc::MNT_DETACH),
        );
        let masked = index(
            &calls,
            |c| matches!(c, Call::Mount { target, .. } if target.starts_with("/proc/")),
        );
        let host = index(&calls, |c| matches!(c, Call::Sethostname(h) if h == "abc"));
        let workdir = index(
            &calls,
            |c| matches!(c, Call::MkdirAll(p) if p == Path::new("/app")),
        );
        let setsid = index(&calls, |c| matches!(c, Call::Setsid));
        // Without no_new_privs (Docker's default) the filter needs CAP_SYS_ADMIN: it goes on
        // before the capabilities go.
        let seccomp = index(&calls, |c| matches!(c, Call::Seccomp(_)));
        let bounding = index(&calls, |c| matches!(c, Call::CapbsetDrop(_)));
        let groups = index(
            &calls,
            |c| matches!(c, Call::Setgroups(g) if g == &[1000, 1001]),
        );
        let gid = index(&calls, |c| matches!(c, Call::Setgid(1000)));
        let uid = index(&calls, |c| matches!(c, Call::Setuid(1000)));
        let capset = index(&calls, |c| matches!(c, Call::Capset(0, 0, 0)));
        let chdir = index(
            &calls,
            |c| matches!(c, Call::Chdir(p) if p == Path::new("/app")),
        );
        let order = [
            cgroup, lo, slave, overlay, proc_, dev, null, pivot, detach, masked, host, workdir,
            setsid, seccomp, bounding, groups, gid, uid, capset, chdir,
        ];
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "steps out of order: {order:?}\n{calls:#?}"
        );
        assert!(!calls.iter().any(|c| matches!(c, Call::SetNoNewPrivs)));
        // With no_new_privs the filter is the very last step.
        let (_d2, nnp_plan) = self::plan(&RunOptions {
            no_new_privileges: true,
            ulimits: vec!["nofile=10:20".parse().unwrap()],
            ..RunOptions::default()
        });
        let sys_nnp = RecordingSyscall::default();
        setup(&sys_nnp, &nnp_plan).unwrap();
        let nnp_calls = sys_nnp.calls();
        let tail: Vec<&Call> = nnp_calls[nnp_calls.len() - 4..].iter().collect();
        assert!(
            matches!(
                tail.as_slice(),
                [Call::Capset(..), Call::SetNoNewPrivs, Call::Chdir(_), Call::Seccomp(n)] if *n > 100
            ),
            "{tail:#?}"
        );
        // Limits are set first, while CAP_SYS_RESOURCE is held.
        let rlimit = index(&nnp_calls, |c| {
            matches!(c, Call::Setrlimit(crate::syscall::Resource::Nofile, 10, 20))
        });
        assert!(rlimit < index(&nnp_calls, |c| matches!(c, Call::CapbsetDrop(_))));
        // Nothing is mounted after credentials are dropped.
        assert!(!calls[gid..].iter().any(|c| matches!(c, Call::Mount { .. })));
        // Every mount but devpts and the device binds is nodev.
        let overlay_flags = match &calls[overlay] {
            Call::Mount { flags, .. } => *flags,
            _ => unreachable!(),
        };
        assert_ne!(overlay_flags & libc::MS_NODEV, 0);
    }

    #[test]
    fn a_refused_overlay_asks_for_the_copy_fallback() {
        let (_d, plan) = plan(&RunOptions::default());
        let mut sys = RecordingSyscall::default();
        sys.fail_fstype = Some("overlay".into());
        let err = setup(&sys, &plan).unwrap_err();
        assert!(err.overlay_unavailable, "{err:?}");
        assert!(err.message.contains("mount overlay"));
        assert!(!sys.calls().iter().any(|c| matches!(c, Call::PivotRoot(..))));
    }

    #[test]
    fn read_only_and_privileged_change_the_steps() {
        let (_d, plan_ro) = plan(&RunOptions {
            read_only: true,
            ..RunOptions::default()
        });
        let sys = RecordingSyscall::default();
        setup(&sys, &plan_ro).unwrap();
        // The host's network: its loopback is not ferry's to touch.
        assert!(!sys.calls().contains(&Call::LoopbackUp));
        assert!(sys.calls().iter().any(|c| matches!(c,
            Call::Mount { target, flags, .. } if target == Path::new("/") && flags & libc::MS_REMOUNT != 0 && flags & libc::MS_RDONLY != 0)));

        let (_d, mut plan_p) = plan(&RunOptions {
            privileged: true,
            ..RunOptions::default()
        });
        plan_p.privileged = true;
        let sys = RecordingSyscall::default();
        setup(&sys, &plan_p).unwrap();
        let calls = sys.calls();
        // Only what ferry itself does not hold is dropped.
        let held = crate::process::caps::held();
        assert!(
            !calls
                .iter()
                .any(|c| matches!(c, Call::CapbsetDrop(n) if held & (1 << n) != 0))
        );
        assert!(!calls.iter().any(|c| matches!(c, Call::SetNoNewPrivs)));
        assert!(
            !calls
                .iter()
                .any(|c| matches!(c, Call::Mount { target, .. } if target.starts_with("/proc/"))),
            "{calls:#?}"
        );
    }
}

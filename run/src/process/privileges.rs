//! The one sequence that turns a process of ferry's (root, every capability) into a container
//! process: resource limits, capability bounding set, groups, ids, capabilities,
//! `no_new_privs`, working directory and the seccomp filter, in that order. The container's
//! first process and `ferry exec` both end their setup with [`drop_privileges`].

use std::path::Path;

use oci_spec::runtime::{PosixRlimitType, Process};

use super::caps;
use super::exec::InitError;
use crate::seccomp::Program;
use crate::syscall::{Resource, Syscall};

/// Who the process becomes and what it keeps.
#[derive(Debug, Clone)]
pub struct Privileges<'a> {
    /// The user.
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// The capabilities kept (bounding; also permitted and effective for root).
    pub keep: u64,
    /// Running in a user namespace of its own (rootless).
    pub rootless: bool,
    /// `no_new_privs`.
    pub no_new_privs: bool,
    /// `setrlimit` calls: resource, soft, hard (`u64::MAX` unlimited).
    pub rlimits: Vec<(Resource, u64, u64)>,
    /// The seccomp filter, if any.
    pub seccomp: Option<&'a Program>,
    /// The working directory.
    pub cwd: &'a Path,
}

impl<'a> Privileges<'a> {
    /// What `process` (from the container's config) asks for.
    pub fn of(process: &'a Process, rootless: bool, seccomp: Option<&'a Program>) -> Self {
        let user = process.user();
        Privileges {
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            keep: caps::bounding_to_keep(process),
            rootless,
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            rlimits: process
                .rlimits()
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|r| (resource(r.typ()), r.soft(), r.hard()))
                .collect(),
            seccomp,
            cwd: process.cwd(),
        }
    }
}

/// The rustix resource of an OCI rlimit type.
pub fn resource(t: PosixRlimitType) -> Resource {
    use PosixRlimitType as T;
    match t {
        T::RlimitCpu => Resource::Cpu,
        T::RlimitFsize => Resource::Fsize,
        T::RlimitData => Resource::Data,
        T::RlimitStack => Resource::Stack,
        T::RlimitCore => Resource::Core,
        T::RlimitRss => Resource::Rss,
        T::RlimitNproc => Resource::Nproc,
        T::RlimitNofile => Resource::Nofile,
        T::RlimitMemlock => Resource::Memlock,
        T::RlimitAs => Resource::As,
        T::RlimitLocks => Resource::Locks,
        T::RlimitSigpending => Resource::Sigpending,
        T::RlimitMsgqueue => Resource::Msgqueue,
        T::RlimitNice => Resource::Nice,
        T::RlimitRtprio => Resource::Rtprio,
        T::RlimitRttime => Resource::Rttime,
    }
}

fn fail(what: impl std::fmt::Display, e: std::io::Error) -> InitError {
    InitError::setup(format!("cannot {what}: {e}"))
}

/// Drops to `p`. On success the process has its final identity, its working directory is
/// `p.cwd` and, with a filter, seccomp is on: only `execve` (and what the caller does to
/// prepare it: closing descriptors, resetting signals) follows.
pub fn drop_privileges(sys: &dyn Syscall, p: &Privileges<'_>) -> Result<(), InitError> {
    // While root still holds CAP_SYS_RESOURCE, so a hard limit can also be raised.
    for (res, soft, hard) in &p.rlimits {
        sys.setrlimit(*res, *soft, *hard)
            .map_err(|e| fail(format_args!("set the {res:?} limit to {soft}:{hard}"), e))?;
    }
    // Without no_new_privs a filter may only be installed with CAP_SYS_ADMIN, so it goes on
    // now, while it is held, as runc does; everything after it is in every profile's reach
    // (prctl, setgroups, setresgid/uid, capset, chdir).
    if let Some(prog) = p.seccomp.filter(|_| !p.no_new_privs) {
        sys.seccomp(prog)
            .map_err(|e| fail("install the seccomp filter", e))?;
    }
    caps::drop_bounding(sys, p.keep).map_err(|e| fail("drop capabilities", e))?;
    if !p.rootless {
        // A rootless user namespace has setgroups denied (CVE-2014-8989 made it so); its
        // only group is the mapped one.
        sys.setgroups(&p.additional_gids)
            .map_err(|e| fail("set supplementary groups", e))?;
    }
    sys.setgid(p.gid)
        .map_err(|e| fail(format_args!("set gid {}", p.gid), e))?;
    sys.setuid(p.uid)
        .map_err(|e| fail(format_args!("set uid {}", p.uid), e))?;
    // Root keeps the set in permitted/effective; inheritable is emptied (CVE-2022-24769: a
    // non-empty inheritable set let file capabilities grant privileges to non-root programs).
    // For any other uid setuid already cleared them and execve would anyway.
    let (eff, perm) = if p.uid == 0 { (p.keep, p.keep) } else { (0, 0) };
    sys.capset(eff, perm, 0)
        .map_err(|e| fail("set capabilities", e))?;
    if p.no_new_privs {
        sys.set_no_new_privs()
            .map_err(|e| fail("set no_new_privs", e))?;
    }
    sys.chdir(p.cwd).map_err(|e| {
        fail(
            format_args!("enter working directory {}", p.cwd.display()),
            e,
        )
    })?;
    if let Some(prog) = p.seccomp.filter(|_| p.no_new_privs) {
        sys.seccomp(prog)
            .map_err(|e| fail("install the seccomp filter", e))?;
    }
    Ok(())
}

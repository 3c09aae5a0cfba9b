//! Capabilities: names, numbers, Docker's default set, and dropping the rest.

use std::io;

use crate::syscall::Syscall;

/// Every capability the kernel headers name, by number. Kernels older than the last entry
/// simply lack the higher numbers (3.10 stops at `CAP_BLOCK_SUSPEND`, 36).
pub const ALL: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's default set for a container that is not `--privileged` (moby `oci/caps/defaults.go`).
pub const DOCKER_DEFAULT: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The number of a capability named `CAP_*`.
pub fn number(name: &str) -> Option<u32> {
    ALL.iter().position(|n| *n == name).map(|n| n as u32)
}

/// The default set with `--cap-add`/`--cap-drop` applied, Docker's way: `ALL` in add starts from
/// everything, `ALL` in drop from nothing, then the individual names.
pub fn effective_set(privileged: bool, add: &[String], drop: &[String]) -> Vec<String> {
    let mut set: Vec<String> = if privileged || add.iter().any(|a| a == "ALL") {
        ALL.iter().map(|s| s.to_string()).collect()
    } else {
        DOCKER_DEFAULT.iter().map(|s| s.to_string()).collect()
    };
    if privileged {
        return set;
    }
    if drop.iter().any(|d| d == "ALL") {
        set.clear();
    }
    set.retain(|c| !drop.contains(c));
    for a in add.iter().filter(|a| *a != "ALL") {
        if !set.contains(a) {
            set.push(a.clone());
        }
    }
    set.sort_by_key(|c| number(c));
    set
}

/// A bit mask of the named capabilities.
pub fn mask(names: &[String]) -> u64 {
    names
        .iter()
        .filter_map(|n| number(n))
        .fold(0, |m, n| m | (1u64 << n))
}

/// The bounding set a process of the spec keeps: what it asks for, narrowed to what ferry
/// holds (a set can only shrink).
pub fn bounding_to_keep(process: &oci_spec::runtime::Process) -> u64 {
    let names: Vec<String> = process
        .capabilities()
        .as_ref()
        .and_then(|c| c.bounding().clone())
        .unwrap_or_default()
        .iter()
        .map(|c| format!("CAP_{c}"))
        .collect();
    mask(&names) & held()
}

/// Drops every capability outside `keep` from the bounding set, so no later `execve` (of a
/// set-uid or file-capability binary) can regain it.
pub fn drop_bounding(sys: &dyn Syscall, keep: u64) -> io::Result<()> {
    let last = last_cap();
    for cap in 0..=last {
        if keep & (1 << cap) == 0 {
            match sys.capbset_drop(cap) {
                // A capability this kernel does not know cannot be held.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                other => other?,
            }
        }
    }
    Ok(())
}

/// The capabilities this process holds (`CapPrm` of `/proc/self/status`): a set can only be
/// narrowed, so a container asking for more (`--privileged` where ferry itself lacks some)
/// gets what there is.
pub fn held() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapPrm:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

/// The highest capability number this kernel knows (`/proc/sys/kernel/cap_last_cap`, 3.2+).
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(ALL.len() as u32 - 1)
        .min(63)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_and_drop_follow_docker() {
        let s = effective_set(false, &["CAP_SYS_TIME".into()], &["CAP_KILL".into()]);
        assert!(s.contains(&"CAP_SYS_TIME".to_string()));
        assert!(!s.contains(&"CAP_KILL".to_string()));
        assert!(s.contains(&"CAP_CHOWN".to_string()));
        let s = effective_set(false, &["CAP_CHOWN".into()], &["ALL".into()]);
        assert_eq!(s, vec!["CAP_CHOWN".to_string()]);
        assert_eq!(effective_set(true, &[], &["ALL".into()]).len(), ALL.len());
        assert_eq!(mask(&["CAP_CHOWN".into(), "CAP_KILL".into()]), 1 | 1 << 5);
    }
}

//! Rootless containers need a user namespace; when the kernel refuses one, say which setting
//! to change instead of printing an errno.

use std::io;

use crate::error::RunError;

/// Turns a failed `clone(CLONE_NEWUSER)` into an error naming the sysctl that forbids it.
pub fn diagnose(err: io::Error) -> RunError {
    diagnose_with(err, |path| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_string())
    })
}

/// [`diagnose`] with the sysctl reader given (for tests).
pub fn diagnose_with(err: io::Error, read: impl Fn(&str) -> Option<String>) -> RunError {
    let is = |path: &str, value: &str| read(path).as_deref() == Some(value);
    let (reason, setting) = if is("/proc/sys/user/max_user_namespaces", "0") {
        (
            "user namespaces are disabled (user.max_user_namespaces = 0, the CentOS/RHEL 7 default)".to_string(),
            "user.max_user_namespaces=28633",
        )
    } else if is("/proc/sys/kernel/unprivileged_userns_clone", "0") {
        (
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)"
                .to_string(),
            "kernel.unprivileged_userns_clone=1",
        )
    } else if is(
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        "1",
    ) {
        (
            "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)".to_string(),
            "kernel.apparmor_restrict_unprivileged_userns=0",
        )
    } else if err.raw_os_error() == Some(libc::ENOSPC) {
        (
            "the limit on user namespaces is reached (user.max_user_namespaces, here or in an enclosing namespace)".to_string(),
            "user.max_user_namespaces=28633",
        )
    } else if err.raw_os_error() == Some(libc::EINVAL) {
        (
            "the kernel has no user namespace support (CONFIG_USER_NS); on RHEL 7 also boot with namespace.unpriv_enable=1".to_string(),
            "user.max_user_namespaces=28633",
        )
    } else {
        (
            format!("the kernel refused: {err}"),
            "user.max_user_namespaces=28633",
        )
    };
    RunError::UserNamespaces {
        reason,
        setting: setting.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_names_the_sysctl() {
        let e = diagnose_with(io::Error::from_raw_os_error(libc::ENOSPC), |p| {
            (p == "/proc/sys/user/max_user_namespaces").then(|| "0".to_string())
        });
        assert!(
            e.to_string().contains("user.max_user_namespaces = 0"),
            "{e}"
        );
        assert!(
            e.hint()
                .unwrap()
                .contains("sysctl -w user.max_user_namespaces=28633")
        );
        let e = diagnose_with(io::Error::from_raw_os_error(libc::EPERM), |p| {
            (p == "/proc/sys/kernel/unprivileged_userns_clone").then(|| "0".to_string())
        });
        assert!(
            e.hint()
                .unwrap()
                .contains("kernel.unprivileged_userns_clone=1")
        );
    }
}

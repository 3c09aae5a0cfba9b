//! The architectures a filter can name: their `AUDIT_ARCH_*` value (what the kernel puts in
//! `seccomp_data.arch`), their syscall numbers, and which one this build of ferry runs on.
//!
//! Syscall numbers come from the `syscalls` crate's tables (generated from the kernel's
//! `syscall_*.tbl`). x32 has no table of its own: it is x86_64's numbers with bit 30 set,
//! except for the calls whose x32 ABI differs, which live at 512–547.

use std::str::FromStr;

use oci_spec::runtime::Arch;

/// Bit 30 of the syscall number marks an x32 call; x32 shares `AUDIT_ARCH_X86_64`.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
const AUDIT_ARCH_ARM: u32 = 0x4000_0028;

/// The x32 calls numbered 512 and up, in order (the kernel's `syscall_64.tbl`, ABI `x32`).
const X32_OWN: [&str; 36] = [
    "rt_sigaction",
    "rt_sigreturn",
    "ioctl",
    "readv",
    "writev",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "execve",
    "ptrace",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigqueueinfo",
    "sigaltstack",
    "timer_create",
    "mq_notify",
    "kexec_load",
    "waitid",
    "set_robust_list",
    "get_robust_list",
    "vmsplice",
    "move_pages",
    "preadv",
    "pwritev",
    "rt_tgsigqueueinfo",
    "recvmmsg",
    "sendmmsg",
    "process_vm_readv",
    "process_vm_writev",
    "setsockopt",
    "getsockopt",
    "io_setup",
    "io_submit",
    "execveat",
    "preadv2",
    "pwritev2",
];

/// One architecture a filter can be compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The OCI/libseccomp name.
    pub arch: Arch,
    /// `seccomp_data.arch` for its calls.
    pub audit: u32,
    /// Its arguments are 32-bit: only the low word of each is compared (as libseccomp does).
    pub args_32bit: bool,
}

impl Target {
    /// The target for an OCI architecture, if ferry can compile for it.
    pub fn of(arch: Arch) -> Option<Target> {
        let (audit, args_32bit) = match arch {
            Arch::ScmpArchX86_64 => (AUDIT_ARCH_X86_64, false),
            Arch::ScmpArchX32 => (AUDIT_ARCH_X86_64, true),
            Arch::ScmpArchX86 => (AUDIT_ARCH_I386, true),
            Arch::ScmpArchAarch64 => (AUDIT_ARCH_AARCH64, false),
            Arch::ScmpArchArm => (AUDIT_ARCH_ARM, true),
            _ => return None,
        };
        Some(Target {
            arch,
            audit,
            args_32bit,
        })
    }

    /// The number of `name` on this architecture, as the filter sees it (x32 with bit 30).
    pub fn number(&self, name: &str) -> Option<u32> {
        use syscalls::{aarch64, arm, x86, x86_64};
        match self.arch {
            Arch::ScmpArchX86_64 => x86_64::Sysno::from_str(name).ok().map(|s| s.id() as u32),
            Arch::ScmpArchX32 => X32_OWN
                .iter()
                .position(|n| *n == name)
                .map(|i| 512 + i as u32)
                .or_else(|| x86_64::Sysno::from_str(name).ok().map(|s| s.id() as u32))
                .map(|n| n | X32_SYSCALL_BIT),
            Arch::ScmpArchX86 => x86::Sysno::from_str(name).ok().map(|s| s.id() as u32),
            Arch::ScmpArchAarch64 => aarch64::Sysno::from_str(name).ok().map(|s| s.id() as u32),
            Arch::ScmpArchArm => arm::Sysno::from_str(name).ok().map(|s| s.id() as u32),
            _ => None,
        }
    }
}

/// The architecture ferry itself runs on.
pub fn native() -> Option<Arch> {
    if cfg!(target_arch = "x86_64") {
        Some(Arch::ScmpArchX86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(Arch::ScmpArchAarch64)
    } else {
        None
    }
}

/// Docker's name for the native architecture in a profile's `includes.arches`.
pub fn native_docker_name() -> &'static str {
    if cfg!(target_arch = "x86_64") {
        "amd64"
    } else if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        std::env::consts::ARCH
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_per_architecture() {
        let t = |a| Target::of(a).unwrap();
        assert_eq!(t(Arch::ScmpArchX86_64).number("unshare"), Some(272));
        assert_eq!(t(Arch::ScmpArchX86).number("unshare"), Some(310));
        assert_eq!(
            t(Arch::ScmpArchX32).number("unshare"),
            Some(272 | X32_SYSCALL_BIT)
        );
        assert_eq!(
            t(Arch::ScmpArchX32).number("execve"),
            Some(520 | X32_SYSCALL_BIT)
        );
        assert_eq!(t(Arch::ScmpArchAarch64).number("unshare"), Some(97));
        assert_eq!(t(Arch::ScmpArchX86_64).number("no_such_call"), None);
        // Not on x86_64, only on 32-bit x86.
        assert_eq!(t(Arch::ScmpArchX86_64).number("socketcall"), None);
        assert_eq!(t(Arch::ScmpArchX86).number("socketcall"), Some(102));
    }
}

//! Seccomp: which system calls a container may make.
//!
//! A profile in Docker's format ([`profile`], the built-in one in [`default`]) is resolved for
//! one container into the OCI `linux.seccomp` written to its `config.json` — so runc and crun
//! apply exactly what ferry applies — and ferry's runtime compiles that into a BPF program
//! ([`bpf`]) and installs it as the last step before the command runs (before the credential
//! switch when `no_new_privs` is off: installing a filter then needs `CAP_SYS_ADMIN`).

pub mod arch;
pub mod bpf;
pub mod default;
pub mod profile;

use oci_spec::runtime::LinuxSeccomp;

pub use profile::Profile;

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeccompError {
    /// Not JSON in Docker's profile format.
    #[error("not a seccomp profile in Docker's format")]
    Parse(#[source] serde_json::Error),
    /// Well-formed but contradictory or out of range.
    #[error("invalid seccomp profile: {0}")]
    Invalid(String),
    /// Something ferry does not implement.
    #[error("{0} is not supported")]
    Unsupported(String),
    /// The compiled filter exceeds the kernel's 4096 instructions.
    #[error("the seccomp filter has {0} instructions, more than the kernel's 4096")]
    TooLong(usize),
    /// A bug in the compiler.
    #[error("seccomp compiler error: {0}")]
    Internal(&'static str),
}

/// One BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct SockFilter {
    /// The opcode.
    pub code: u16,
    /// Instructions to skip when a condition holds.
    pub jt: u8,
    /// Instructions to skip when it does not.
    pub jf: u8,
    /// The operand.
    pub k: u32,
}

/// A compiled filter, ready to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    insns: Vec<SockFilter>,
    flags: u32,
}

impl Program {
    /// Compiles `profile` for this machine's architecture (and the ABIs it lists).
    pub fn compile(profile: &LinuxSeccomp) -> Result<Program, SeccompError> {
        let native = arch::native().ok_or_else(|| {
            SeccompError::Unsupported(format!(
                "seccomp on {} (use --security-opt seccomp=unconfined)",
                std::env::consts::ARCH
            ))
        })?;
        bpf::compile(profile, native)
    }

    /// Its length in instructions.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// Whether it has no instructions (never, once compiled).
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// Installs it on the calling thread: `prctl(PR_SET_SECCOMP)` (Linux 3.5), or `seccomp(2)`
    /// (3.17) when the profile sets filter flags.
    pub fn install(&self) -> std::io::Result<()> {
        #[repr(C)]
        struct SockFprog {
            len: u16,
            filter: *const SockFilter,
        }
        let prog = SockFprog {
            len: u16::try_from(self.insns.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?,
            filter: self.insns.as_ptr(),
        };
        const SECCOMP_MODE_FILTER: libc::c_ulong = 2;
        const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
        // rustix has no seccomp call.
        // SAFETY: `prog` points at `insns`, which outlive the call; the kernel copies the
        // program and keeps no pointer to it.
        let rc = unsafe {
            if self.flags == 0 {
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    SECCOMP_MODE_FILTER,
                    &prog as *const SockFprog,
                    0,
                    0,
                ) as libc::c_long
            } else {
                libc::syscall(
                    libc::SYS_seccomp,
                    SECCOMP_SET_MODE_FILTER,
                    self.flags as libc::c_ulong,
                    &prog as *const SockFprog,
                )
            }
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::Arch;

    const X86_64: u32 = 0xc000_003e;
    const I386: u32 = 0x4000_0003;
    const ALLOW: u32 = 0x7fff_0000;
    const EPERM: u32 = 0x0005_0001;
    const ENOSYS: u32 = 0x0005_0026;

    fn default_for(caps: &[&str]) -> Program {
        let caps: Vec<String> = caps.iter().map(|s| s.to_string()).collect();
        let s = default::profile()
            .resolve(&profile::Container {
                capabilities: &caps,
                kernel: (6, 1),
            })
            .unwrap();
        bpf::compile(&s, Arch::ScmpArchX86_64).unwrap()
    }

    #[test]
    fn dockers_default_profile_row_by_row() {
        let docker_caps = crate::process::caps::DOCKER_DEFAULT;
        let p = default_for(&docker_caps);
        let e = |nr: u32, a0: u64| bpf::tests::eval(&p.insns, X86_64, nr, [a0, 0, 0, 0, 0, 0]);
        assert_eq!(e(0, 0), ALLOW, "read");
        assert_eq!(e(272, 0), EPERM, "unshare");
        assert_eq!(e(250, 0), EPERM, "keyctl");
        assert_eq!(e(248, 0), EPERM, "add_key");
        assert_eq!(e(165, 0), EPERM, "mount");
        assert_eq!(e(167, 0), EPERM, "swapon");
        assert_eq!(e(246, 0), EPERM, "kexec_load");
        assert_eq!(e(304, 0), EPERM, "open_by_handle_at");
        assert_eq!(e(135, 0), ALLOW, "personality(PER_LINUX)");
        assert_eq!(e(135, 0x40000), EPERM, "personality(ADDR_NO_RANDOMIZE)");
        assert_eq!(e(101, 0), ALLOW, "ptrace");
        assert_eq!(e(41, 2), ALLOW, "socket(AF_INET)");
        assert_eq!(e(41, 40), EPERM, "socket(AF_VSOCK)");
        assert_eq!(e(56, 0x11), ALLOW, "clone (fork)");
        assert_eq!(e(56, 0x1000_0011), EPERM, "clone(CLONE_NEWUSER)");
        assert_eq!(e(435, 0), ENOSYS, "clone3");
        assert_eq!(e(425, 0), EPERM, "io_uring_setup");
        assert_eq!(e(161, 0), ALLOW, "chroot with CAP_SYS_CHROOT");
        assert_eq!(e(999, 0), ENOSYS, "a call newer than the profile");
        let i386 = |nr: u32| bpf::tests::eval(&p.insns, I386, nr, [0; 6]);
        assert_eq!(i386(20), ALLOW, "i386 getpid");
        assert_eq!(i386(310), EPERM, "i386 unshare");
        assert_eq!(i386(102), ALLOW, "i386 socketcall");

        let admin = default_for(&["CAP_SYS_ADMIN"]);
        let e = |nr: u32, a0: u64| bpf::tests::eval(&admin.insns, X86_64, nr, [a0, 0, 0, 0, 0, 0]);
        assert_eq!(e(272, 0), ALLOW, "unshare with CAP_SYS_ADMIN");
        assert_eq!(e(165, 0), ALLOW, "mount with CAP_SYS_ADMIN");
        assert_eq!(e(435, 0), ALLOW, "clone3 with CAP_SYS_ADMIN");
        assert_eq!(
            e(56, 0x1000_0011),
            ALLOW,
            "clone(CLONE_NEWUSER) with CAP_SYS_ADMIN"
        );
        assert_eq!(e(250, 0), EPERM, "keyctl stays out");
        assert_eq!(e(161, 0), EPERM, "chroot without CAP_SYS_CHROOT");
    }
}

//! Seccomp profiles as Docker writes them (`--security-opt seccomp=PROFILE.json`, and ferry's
//! built-in default), and their resolution for one container into the OCI `linux.seccomp` that
//! runc, crun and ferry's own runtime apply.
//!
//! A profile's rules may depend on the container: `includes`/`excludes` name architectures,
//! capabilities and a minimum kernel. Resolution keeps the rules that apply, as Docker's daemon
//! does before it hands the config to the runtime: a rule with `includes.caps` needs every
//! capability listed, one with `excludes.caps` is dropped if any is held.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompBuilder,
    LinuxSeccompFilterFlag, LinuxSyscall, LinuxSyscallBuilder,
};
use serde::Deserialize;

use super::SeccompError;
use super::arch;

const EPERM: u32 = 1;

/// A seccomp profile in Docker's format.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// What happens to a call no rule matches.
    pub default_action: LinuxSeccompAction,
    /// The errno of an `SCMP_ACT_ERRNO` default (EPERM when absent).
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    /// Architectures, the old way (`["SCMP_ARCH_X86_64", …]`).
    #[serde(default)]
    pub architectures: Vec<Arch>,
    /// Architectures, the current way: each native one with the ABIs it also runs.
    #[serde(default)]
    pub arch_map: Vec<ArchMap>,
    /// `SECCOMP_FILTER_FLAG_*`.
    #[serde(default)]
    pub flags: Vec<LinuxSeccompFilterFlag>,
    /// A seccomp agent's socket (unsupported by ferry).
    #[serde(default)]
    pub listener_path: Option<String>,
    /// The rules.
    #[serde(default)]
    pub syscalls: Vec<Rule>,
}

/// A native architecture and the others its processes may use.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    /// The native architecture.
    pub architecture: Arch,
    /// Its other ABIs (x86 and x32 for x86_64).
    #[serde(default)]
    pub sub_architectures: Option<Vec<Arch>>,
}

/// One rule: calls, an action, conditions on arguments, and when the rule applies.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// One call (old profiles).
    #[serde(default)]
    pub name: Option<String>,
    /// The calls.
    #[serde(default)]
    pub names: Vec<String>,
    /// The action when the conditions hold.
    pub action: LinuxSeccompAction,
    /// The errno of `SCMP_ACT_ERRNO` (EPERM when absent).
    #[serde(default)]
    pub errno_ret: Option<u32>,
    /// Conditions on arguments.
    #[serde(default)]
    pub args: Option<Vec<LinuxSeccompArg>>,
    /// Applies only if all of these hold.
    #[serde(default)]
    pub includes: Option<Filter>,
    /// Applies only if none of these holds.
    #[serde(default)]
    pub excludes: Option<Filter>,
}

/// When a rule applies.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Docker's architecture names (`amd64`, `x86`, `arm64`, …).
    #[serde(default)]
    pub arches: Vec<String>,
    /// Capabilities (`CAP_SYS_ADMIN`).
    #[serde(default)]
    pub caps: Vec<String>,
    /// `MAJOR.MINOR`.
    #[serde(default)]
    pub min_kernel: Option<String>,
}

/// What a profile is resolved against.
#[derive(Debug, Clone)]
pub struct Container<'a> {
    /// The container's bounding set (`CAP_*` names).
    pub capabilities: &'a [String],
    /// The running kernel's `(major, minor)`.
    pub kernel: (u32, u32),
}

impl Profile {
    /// Parses Docker's JSON format.
    pub fn from_json(text: &str) -> Result<Profile, SeccompError> {
        serde_json::from_str(text).map_err(SeccompError::Parse)
    }

    /// The rules that apply to `c`, as an OCI `linux.seccomp`.
    pub fn resolve(&self, c: &Container<'_>) -> Result<LinuxSeccomp, SeccompError> {
        if !self.architectures.is_empty() && !self.arch_map.is_empty() {
            return Err(SeccompError::Invalid(
                "both 'architectures' and 'archMap' are specified, use one of them".into(),
            ));
        }
        if self.listener_path.as_deref().is_some_and(|p| !p.is_empty()) {
            return Err(SeccompError::Unsupported(
                "a seccomp agent (listenerPath)".into(),
            ));
        }
        let mut architectures = self.architectures.clone();
        if let Some(native) = arch::native() {
            for m in self.arch_map.iter().filter(|m| m.architecture == native) {
                architectures.push(m.architecture);
                architectures.extend(m.sub_architectures.iter().flatten().copied());
            }
        }
        let native_name = arch::native_docker_name();
        let mut syscalls: Vec<LinuxSyscall> = Vec::new();
        for rule in &self.syscalls {
            let names = match (&rule.name, rule.names.is_empty()) {
                (Some(_), false) => {
                    return Err(SeccompError::Invalid(
                        "both 'name' and 'names' are specified in a rule, use one of them".into(),
                    ));
                }
                (Some(n), true) => vec![n.clone()],
                (None, _) => rule.names.clone(),
            };
            if let Some(ex) = &rule.excludes
                && (ex.arches.iter().any(|a| a == native_name)
                    || ex.caps.iter().any(|cap| c.capabilities.contains(cap))
                    || at_least(c.kernel, ex.min_kernel.as_deref())? == Some(true))
            {
                continue;
            }
            if let Some(inc) = &rule.includes
                && (!inc.arches.is_empty() && !inc.arches.iter().any(|a| a == native_name)
                    || !inc.caps.iter().all(|cap| c.capabilities.contains(cap))
                    || at_least(c.kernel, inc.min_kernel.as_deref())? == Some(false))
            {
                continue;
            }
            let mut b = LinuxSyscallBuilder::default()
                .names(names)
                .action(rule.action);
            if let Some(e) = rule.errno_ret {
                b = b.errno_ret(e);
            }
            if let Some(args) = rule.args.as_ref().filter(|a| !a.is_empty()) {
                b = b.args(args.clone());
            }
            syscalls.push(
                b.build()
                    .map_err(|e| SeccompError::Invalid(e.to_string()))?,
            );
        }
        let mut b = LinuxSeccompBuilder::default()
            .default_action(self.default_action)
            .architectures(architectures)
            .syscalls(syscalls);
        // EPERM is what SCMP_ACT_ERRNO returns anyway; saying so explicitly makes runc before
        // 1.1.6 skip its ENOSYS answer for calls newer than the profile, which ferry (and newer
        // runc) give.
        if let Some(e) = self.default_errno_ret.filter(|e| *e != EPERM) {
            b = b.default_errno_ret(e);
        }
        if !self.flags.is_empty() {
            b = b.flags(self.flags.clone());
        }
        b.build().map_err(|e| SeccompError::Invalid(e.to_string()))
    }
}

/// Whether `kernel` is at least `min` (`None` when there is no minimum).
fn at_least(kernel: (u32, u32), min: Option<&str>) -> Result<Option<bool>, SeccompError> {
    let Some(min) = min else { return Ok(None) };
    let parsed = parse_version(min)
        .ok_or_else(|| SeccompError::Invalid(format!("invalid minKernel `{min}`")))?;
    Ok(Some(kernel >= parsed))
}

fn parse_version(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(['.', '-', '+']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next().unwrap_or("0").parse().ok()?;
    Some((major, minor))
}

/// The running kernel's `(major, minor)`, from `uname`.
pub fn kernel_version() -> (u32, u32) {
    let u = rustix::system::uname();
    parse_version(&u.release().to_string_lossy()).unwrap_or((0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rules_follow_capabilities_kernel_and_architecture() {
        let p = Profile::from_json(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,
            "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86","SCMP_ARCH_X32"]},
                       {"architecture":"SCMP_ARCH_AARCH64","subArchitectures":["SCMP_ARCH_ARM"]}],
            "syscalls":[
              {"names":["read"],"action":"SCMP_ACT_ALLOW"},
              {"names":["ptrace"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"4.8"}},
              {"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}},
              {"names":["clone3"],"action":"SCMP_ACT_ERRNO","errnoRet":38,"excludes":{"caps":["CAP_SYS_ADMIN"]}},
              {"names":["arch_prctl"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["amd64","x32"]}},
              {"name":"old_style","action":"SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap();
        let names = |s: &LinuxSeccomp| -> Vec<String> {
            s.syscalls()
                .as_deref()
                .unwrap_or_default()
                .iter()
                .flat_map(|r| r.names().clone())
                .collect()
        };
        let plain = caps(&["CAP_CHOWN"]);
        let s = p
            .resolve(&Container {
                capabilities: &plain,
                kernel: (3, 10),
            })
            .unwrap();
        let n = names(&s);
        assert!(n.contains(&"read".into()) && n.contains(&"clone3".into()));
        assert!(!n.contains(&"ptrace".into()) && !n.contains(&"mount".into()));
        assert!(n.contains(&"old_style".into()));
        // EPERM is the default errno: left out, for older runc's sake.
        assert_eq!(s.default_errno_ret(), None);
        if cfg!(target_arch = "x86_64") {
            assert!(n.contains(&"arch_prctl".into()));
            assert_eq!(
                s.architectures().as_deref(),
                Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
            );
        }
        let admin = caps(&["CAP_SYS_ADMIN"]);
        let s = p
            .resolve(&Container {
                capabilities: &admin,
                kernel: (6, 1),
            })
            .unwrap();
        let n = names(&s);
        assert!(n.contains(&"ptrace".into()) && n.contains(&"mount".into()));
        assert!(!n.contains(&"clone3".into()));
    }

    #[test]
    fn bad_profiles_are_refused() {
        assert!(matches!(
            Profile::from_json("{\"defaultAction\": \"SCMP_ACT_SOMETIMES\"}"),
            Err(SeccompError::Parse(_))
        ));
        let p = Profile::from_json(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
                "archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#,
        )
        .unwrap();
        let none: Vec<String> = vec![];
        assert!(
            p.resolve(&Container {
                capabilities: &none,
                kernel: (6, 1)
            })
            .is_err()
        );
        assert_eq!(parse_version("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse_version("3.10.0-1160.el7.x86_64"), Some((3, 10)));
    }
}

//! What the user asked for on the command line, in the library's terms: `docker run`'s flags,
//! parsed and checked, before they are turned into an OCI runtime config.

use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::container::health::HealthOptions;
use crate::container::policy::RestartPolicy;
use crate::net::etc::{Dns, HostEntry};
use crate::net::ports::{ContainerPort, PortSpec};

/// Everything `ferry run` (and `ferry bundle`) takes besides the image.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `COMMAND [ARG…]`: replaces the image's Cmd when not empty.
    pub command: Vec<String>,
    /// `--entrypoint`: replaces the image's Entrypoint and clears its Cmd (`""` clears both).
    pub entrypoint: Option<String>,
    /// `-e`/`--env-file` entries in order, each `KEY=VALUE` (the CLI resolves bare `KEY`s).
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u USER[:GROUP]`, names or ids.
    pub user: Option<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `-v`.
    pub volumes: Vec<Volume>,
    /// `--tmpfs`.
    pub tmpfs: Vec<Tmpfs>,
    /// `--network`.
    pub network: Network,
    /// `--read-only`.
    pub read_only: bool,
    /// `--memory`, in bytes.
    pub memory: Option<u64>,
    /// `--cpus`.
    pub cpus: Option<f64>,
    /// `--pids-limit`.
    pub pids_limit: Option<i64>,
    /// `--init`.
    pub init: bool,
    /// `--cap-add`, normalised to `CAP_*` (or `ALL`).
    pub cap_add: Vec<String>,
    /// `--cap-drop`, normalised to `CAP_*` (or `ALL`).
    pub cap_drop: Vec<String>,
    /// `--privileged`.
    pub privileged: bool,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
    /// `-d`.
    pub detach: bool,
    /// `--rm`.
    pub rm: bool,
    /// `--name`.
    pub name: Option<String>,
    /// `--runtime`.
    pub runtime: Runtime,
    /// How the root file system is made.
    pub rootfs: RootfsMode,
    /// `-p`, one entry per port (ranges expanded).
    pub publish: Vec<PortSpec>,
    /// `-P`: publish every exposed port on a free host port.
    pub publish_all: bool,
    /// `--expose`.
    pub expose: Vec<ContainerPort>,
    /// `--restart`.
    pub restart: RestartPolicy,
    /// `--add-host`.
    pub add_hosts: Vec<HostEntry>,
    /// `--dns`, `--dns-search`, `--dns-option`.
    pub dns: Dns,
    /// `--stop-signal` (replaces the image's StopSignal).
    pub stop_signal: Option<String>,
    /// `--stop-timeout`, in seconds (what `ferry stop` waits without `-t`).
    pub stop_timeout: Option<u64>,
    /// `--health-*`, `--no-healthcheck`, and the image's HEALTHCHECK.
    pub health: HealthOptions,
    /// `--security-opt seccomp=…`.
    pub seccomp: Seccomp,
    /// `--security-opt no-new-privileges`.
    pub no_new_privileges: bool,
    /// `--security-opt systempaths=unconfined`: no masked or read-only `/proc` paths.
    pub unmask_system_paths: bool,
    /// `--ulimit`.
    pub ulimits: Vec<Ulimit>,
    /// `--group-add`, names or ids.
    pub group_add: Vec<String>,
    /// `--device`.
    pub devices: Vec<Device>,
    /// `--shm-size`, in bytes.
    pub shm_size: Option<u64>,
}

impl RunOptions {
    /// With `opts` applied in order.
    pub fn with_security_opts(mut self, opts: &[SecurityOpt]) -> Self {
        for o in opts {
            self.apply_security_opt(o);
        }
        self
    }

    /// Applies one `--security-opt`.
    pub fn apply_security_opt(&mut self, opt: &SecurityOpt) {
        match opt {
            SecurityOpt::Seccomp(s) => self.seccomp = s.clone(),
            SecurityOpt::NoNewPrivileges(on) => self.no_new_privileges = *on,
            SecurityOpt::UnmaskSystemPaths => self.unmask_system_paths = true,
            SecurityOpt::NoLsm => {}
        }
    }
}

/// Which seccomp profile a container gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Seccomp {
    /// Docker's default profile (none with `--privileged`).
    #[default]
    Default,
    /// `seccomp=unconfined`: no filter.
    Unconfined,
    /// `seccomp=PROFILE.json`: a profile in Docker's format (applied even with `--privileged`).
    Profile(PathBuf),
}

/// One `--security-opt`, as Docker spells them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityOpt {
    /// `seccomp=unconfined|default|PROFILE.json`.
    Seccomp(Seccomp),
    /// `no-new-privileges[=true|false]`.
    NoNewPrivileges(bool),
    /// `systempaths=unconfined`.
    UnmaskSystemPaths,
    /// `apparmor=unconfined`, `label=disable`: ferry applies no LSM profile, so they hold.
    NoLsm,
}

impl FromStr for SecurityOpt {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        // `key=value`, or Docker's older `key:value`.
        let (key, value) = match s.split_once('=') {
            Some(kv) => kv,
            None => s.split_once(':').unwrap_or((s, "")),
        };
        let bad = || format!("invalid --security-opt `{s}`");
        match (key, value) {
            ("seccomp", "") => Err(bad()),
            ("seccomp", "unconfined") => Ok(SecurityOpt::Seccomp(Seccomp::Unconfined)),
            ("seccomp", "builtin" | "default") => Ok(SecurityOpt::Seccomp(Seccomp::Default)),
            ("seccomp", path) => Ok(SecurityOpt::Seccomp(Seccomp::Profile(PathBuf::from(path)))),
            ("no-new-privileges", "" | "true") => Ok(SecurityOpt::NoNewPrivileges(true)),
            ("no-new-privileges", "false") => Ok(SecurityOpt::NoNewPrivileges(false)),
            ("systempaths", "unconfined") => Ok(SecurityOpt::UnmaskSystemPaths),
            ("apparmor", "unconfined") | ("label", "disable") => Ok(SecurityOpt::NoLsm),
            ("apparmor" | "label", _) => Err(format!(
                "--security-opt `{s}`: ferry applies no AppArmor or SELinux profile (only `apparmor=unconfined` and `label=disable` hold)"
            )),
            _ => Err(bad()),
        }
    }
}

/// `--ulimit NAME=SOFT[:HARD]` (`-1` is unlimited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    /// Docker's name (`nofile`, `nproc`, `core`, …).
    pub name: String,
    /// The soft limit (`u64::MAX` unlimited).
    pub soft: u64,
    /// The hard limit (`u64::MAX` unlimited).
    pub hard: u64,
}

/// The names `--ulimit` takes, with the OCI rlimit type each sets.
pub const ULIMITS: [&str; 16] = [
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

impl FromStr for Ulimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, values) = s
            .split_once('=')
            .ok_or_else(|| format!("invalid ulimit argument `{s}`: expected NAME=SOFT[:HARD]"))?;
        if !ULIMITS.contains(&name) {
            return Err(format!("invalid ulimit type: {name}"));
        }
        let value = |v: &str| -> Result<u64, String> {
            match v.parse::<i64>() {
                Ok(-1) => Ok(u64::MAX),
                Ok(n) if n >= 0 => Ok(n as u64),
                _ => Err(format!("invalid ulimit value `{v}` in `{s}`")),
            }
        };
        let (soft, hard) = match values.split_once(':') {
            Some((a, b)) => (value(a)?, value(b)?),
            None => (value(values)?, value(values)?),
        };
        if soft > hard {
            return Err(format!(
                "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            ));
        }
        Ok(Ulimit {
            name: name.to_string(),
            soft,
            hard,
        })
    }
}

/// `--device HOST[:CONTAINER][:PERMISSIONS]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The host's device node (or a directory of them).
    pub host: PathBuf,
    /// Where it appears in the container (the host path by default).
    pub container: PathBuf,
    /// `r`, `w`, `m` (read, write, mknod); default `rwm`.
    pub permissions: String,
}

impl FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let is_mode = |m: &str| !m.is_empty() && m.chars().all(|c| "rwm".contains(c));
        let parts: Vec<&str> = s.split(':').collect();
        let (host, container, permissions) = match parts.as_slice() {
            [h] => (*h, *h, "rwm"),
            [h, m] if is_mode(m) => (*h, *h, *m),
            [h, c] => (*h, *c, "rwm"),
            [h, c, m] if is_mode(m) => (*h, *c, *m),
            _ => return Err(format!("invalid device specification: {s}")),
        };
        if !host.starts_with('/') || !container.starts_with('/') {
            return Err(format!(
                "invalid device specification `{s}`: paths must be absolute"
            ));
        }
        Ok(Device {
            host: PathBuf::from(host),
            container: PathBuf::from(container),
            permissions: permissions.to_string(),
        })
    }
}

/// `--network`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Not given: the host's network, or [`Network::Private`] when ports are published
    /// (see `net::resolve`).
    #[default]
    Default,
    /// Share the host's network stack (ferry has no bridge).
    Host,
    /// A private network namespace with only `lo`.
    None,
    /// A private network namespace with only `lo`, its published ports forwarded by ferry's
    /// proxy (what the default becomes with `-p` or `-P`).
    Private,
    /// `container:NAME`: share that container's network namespace.
    Container(String),
}

impl FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "default" => Ok(Network::Default),
            "host" => Ok(Network::Host),
            "none" => Ok(Network::None),
            other => match other.strip_prefix("container:") {
                Some(name) if !name.is_empty() => Ok(Network::Container(name.to_string())),
                _ => Err(format!(
                    "network `{other}` is not available: ferry supports `host`, `none` and `container:NAME` (it has no bridge; -p publishes ports from a private network namespace)"
                )),
            },
        }
    }
}

/// `--runtime`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Runtime {
    /// ferry's own runtime.
    #[default]
    Ferry,
    /// An installed OCI runtime (`runc`, `crun`, or a path), given the same bundle.
    External(PathBuf),
}

impl FromStr for Runtime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" | "ferry" => Ok(Runtime::Ferry),
            other => Ok(Runtime::External(PathBuf::from(other))),
        }
    }
}

/// How the container's root file system is made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootfsMode {
    /// overlayfs, falling back to a copy where the kernel refuses it.
    #[default]
    Auto,
    /// overlayfs only.
    Overlay,
    /// A private copy of the merged layers (no overlayfs needed).
    Copy,
}

impl FromStr for RootfsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" | "" => Ok(RootfsMode::Auto),
            "overlay" => Ok(RootfsMode::Overlay),
            "copy" => Ok(RootfsMode::Copy),
            other => Err(format!(
                "unknown rootfs mode `{other}` (auto, overlay, copy)"
            )),
        }
    }
}

/// `-v HOST:CTR[:ro]`, `-v NAME:CTR` (a named volume), `-v CTR` (an anonymous volume), or
/// `--mount type=bind|volume`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Volume {
    /// The host path; `None` for a volume (named or anonymous) until it is resolved.
    pub host: Option<PathBuf>,
    /// Where it appears in the container.
    pub container: String,
    /// `:ro`.
    pub read_only: bool,
    /// The named volume (`-v NAME:/path`), made on first use.
    pub name: Option<String>,
    /// `:nocopy`, `volume-nocopy`: the volume is not filled from the image.
    pub no_copy: bool,
    /// `--mount type=bind`: the host path must exist (`-v` creates a missing one).
    pub must_exist: bool,
}

impl FromStr for Volume {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (host, ctr, mode) = match parts.as_slice() {
            [ctr] => (None, *ctr, ""),
            [host, ctr] => (Some(*host), *ctr, ""),
            [host, ctr, mode] => (Some(*host), *ctr, *mode),
            _ => {
                return Err(format!(
                    "invalid volume `{s}`: expected HOST:CONTAINER[:ro]"
                ));
            }
        };
        let mut read_only = false;
        let mut no_copy = false;
        for m in mode.split(',').filter(|m| !m.is_empty()) {
            match m {
                "ro" => read_only = true,
                "rw" => read_only = false,
                "nocopy" => no_copy = true,
                // Propagation and SELinux labels are accepted and ignored, as on a host
                // without SELinux.
                "z" | "Z" | "private" | "rprivate" | "slave" | "rslave" => {}
                other => return Err(format!("invalid volume mode `{other}` in `{s}`")),
            }
        }
        if !ctr.starts_with('/') {
            return Err(format!(
                "invalid volume `{s}`: the container path `{ctr}` must be absolute"
            ));
        }
        // Anything but an absolute path names a volume (its name is checked when it is made).
        let (host, name) = match host {
            Some(h) if h.starts_with('/') => (Some(PathBuf::from(h)), None),
            Some(n) => (None, Some(n.to_string())),
            None => (None, None),
        };
        Ok(Volume {
            host,
            container: ctr.to_string(),
            read_only,
            name,
            no_copy,
            must_exist: false,
        })
    }
}

/// `--tmpfs PATH[:OPTIONS]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmpfs {
    /// Where it appears in the container.
    pub container: String,
    /// Extra mount options (`size=64m,mode=1777`).
    pub options: Vec<String>,
}

impl FromStr for Tmpfs {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (path, opts) = s.split_once(':').unwrap_or((s, ""));
        if !path.starts_with('/') {
            return Err(format!("invalid tmpfs `{s}`: the path must be absolute"));
        }
        Ok(Tmpfs {
            container: path.to_string(),
            options: opts
                .split(',')
                .filter(|o| !o.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }
}

/// Parses Docker's memory sizes: `512m`, `1g`, `100k`, `1048576` (binary units, `b` optional).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| {
        format!("invalid size `{s}`: expected a number with an optional unit b, k, m, g")
    })?;
    if n.is_nan() || n < 0.0 {
        return Err(format!("invalid size `{s}`"));
    }
    Ok((n * mult as f64) as u64)
}

/// Normalises a capability name: `net_admin`, `CAP_NET_ADMIN` → `CAP_NET_ADMIN`; `all` → `ALL`.
pub fn normalize_capability(s: &str) -> Result<String, String> {
    let up = s.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if crate::process::caps::number(&full).is_none() {
        return Err(format!("unknown capability `{s}`"));
    }
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn volumes_parse_like_docker() {
        let v: Volume = "/srv/data:/data:ro".parse().unwrap();
        assert_eq!(v.host.as_deref(), Some(std::path::Path::new("/srv/data")));
        assert_eq!(v.container, "/data");
        assert!(v.read_only);
        let v: Volume = "/data".parse().unwrap();
        assert!(v.host.is_none() && v.name.is_none());
        let v: Volume = "data:/data:ro,nocopy".parse().unwrap();
        assert_eq!(v.name.as_deref(), Some("data"));
        assert!(v.host.is_none() && v.read_only && v.no_copy);
        assert!("/a:rel".parse::<Volume>().is_err());
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(parse_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("100kb").unwrap(), 100 << 10);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn security_opts_ulimits_and_devices_parse_like_docker() {
        let o = |s: &str| s.parse::<SecurityOpt>();
        assert_eq!(
            o("seccomp=unconfined"),
            Ok(SecurityOpt::Seccomp(Seccomp::Unconfined))
        );
        assert_eq!(
            o("seccomp:/p.json"),
            Ok(SecurityOpt::Seccomp(Seccomp::Profile("/p.json".into())))
        );
        assert_eq!(
            o("no-new-privileges"),
            Ok(SecurityOpt::NoNewPrivileges(true))
        );
        assert_eq!(
            o("no-new-privileges:false"),
            Ok(SecurityOpt::NoNewPrivileges(false))
        );
        assert!(o("apparmor=docker-default").is_err());
        assert!(o("seccomp").is_err());
        assert!(o("flying=yes").is_err());

        let u: Ulimit = "nofile=1024:2048".parse().unwrap();
        assert_eq!((u.soft, u.hard), (1024, 2048));
        let u: Ulimit = "core=-1".parse().unwrap();
        assert_eq!((u.soft, u.hard), (u64::MAX, u64::MAX));
        assert!("nofile=10:5".parse::<Ulimit>().is_err());
        assert!("speed=1".parse::<Ulimit>().is_err());

        let d: Device = "/dev/fuse".parse().unwrap();
        assert_eq!(
            (d.container.as_path(), d.permissions.as_str()),
            (Path::new("/dev/fuse"), "rwm")
        );
        let d: Device = "/dev/sda:r".parse().unwrap();
        assert_eq!(
            (d.container.as_path(), d.permissions.as_str()),
            (Path::new("/dev/sda"), "r")
        );
        let d: Device = "/dev/sda:/dev/xvda:rw".parse().unwrap();
        assert_eq!(d.container, Path::new("/dev/xvda"));
        assert!("/dev/a:/dev/b:rwx".parse::<Device>().is_err());
        assert!("sda".parse::<Device>().is_err());
    }

    #[test]
    fn capabilities_normalise() {
        assert_eq!(normalize_capability("net_admin").unwrap(), "CAP_NET_ADMIN");
        assert_eq!(
            normalize_capability("CAP_SYS_TIME").unwrap(),
            "CAP_SYS_TIME"
        );
        assert_eq!(normalize_capability("all").unwrap(), "ALL");
        assert!(normalize_capability("flying").is_err());
    }
}

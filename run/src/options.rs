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

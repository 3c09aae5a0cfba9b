//! `ferry generate systemd C`: a systemd unit that starts an existing container at boot and
//! stops it with the system, the way `podman generate systemd` writes one: `Type=forking`,
//! `ExecStart=ferry start`, the monitor's pid file, `ExecStop=ferry stop`. ferry has no daemon
//! to bring containers back after a reboot; systemd is the one every such host already runs.

use std::path::Path;

use super::{Container, Meta};

/// How the unit is written (podman's flags).
#[derive(Debug, Clone)]
pub struct UnitOptions {
    /// Refer to the container by name (`--name`), else by ID.
    pub use_name: bool,
    /// systemd's `Restart=` (`on-failure` by default).
    pub restart_policy: String,
    /// Seconds `ferry stop` waits (`--time`; default the container's stop timeout, else 10).
    pub stop_timeout: Option<u64>,
    /// Prefix of the unit's name (`container`).
    pub prefix: String,
    /// Between prefix and name (`-`).
    pub separator: String,
}

impl Default for UnitOptions {
    fn default() -> Self {
        UnitOptions {
            use_name: false,
            restart_policy: "on-failure".into(),
            stop_timeout: None,
            prefix: "container".into(),
            separator: "-".into(),
        }
    }
}

/// systemd's `Restart=` values, checked before writing a unit systemd would ignore.
pub const RESTART_POLICIES: [&str; 7] = [
    "no",
    "on-success",
    "on-failure",
    "on-abnormal",
    "on-watchdog",
    "on-abort",
    "always",
];

/// The unit's file name and text, for the container `c` of the store at `root`, started by
/// the ferry binary at `ferry`.
pub fn unit(
    root: &Path,
    ferry: &Path,
    c: &Container,
    meta: &Meta,
    opts: &UnitOptions,
) -> Result<(String, String), String> {
    if !RESTART_POLICIES.contains(&opts.restart_policy.as_str()) {
        return Err(format!(
            "{} is not a valid restart policy (one of {})",
            opts.restart_policy,
            RESTART_POLICIES.join(", ")
        ));
    }
    let reference = if opts.use_name {
        meta.name.as_str()
    } else {
        c.id.as_str()
    };
    let service = format!("{}{}{reference}.service", opts.prefix, opts.separator);
    let stop = opts.stop_timeout.or(meta.host.stop_timeout).unwrap_or(10);
    let ferry = quote(&ferry.to_string_lossy());
    let root_s = quote(&root.to_string_lossy());
    let pid_file = c.dir.join("monitor.pid");
    let text = format!(
        "# {service}\n\
         # written by `ferry generate systemd` for container {name} ({id})\n\
         \n\
         [Unit]\n\
         Description=ferry container {name}\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         RequiresMountsFor={root_s}\n\
         \n\
         [Service]\n\
         Environment=FERRY_ROOT={root_s}\n\
         Restart={restart}\n\
         TimeoutStopSec={timeout}\n\
         ExecStart={ferry} start {reference}\n\
         ExecStop={ferry} stop -t {stop} {reference}\n\
         ExecStopPost={ferry} stop -t {stop} {reference}\n\
         PIDFile={pid}\n\
         Type=forking\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        name = meta.name,
        id = c.short_id(),
        restart = opts.restart_policy,
        timeout = stop + 60,
        pid = quote(&pid_file.to_string_lossy()),
    );
    Ok((service, text))
}

/// systemd splits command lines on spaces and expands `%` and `$`: quote what needs it.
fn quote(s: &str) -> String {
    let escaped = s.replace('%', "%%").replace('$', "$$");
    if escaped.contains([' ', '"', '\\']) {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_starts_and_stops_the_container_like_podmans() {
        let c = Container {
            id: "0123456789abcdef".repeat(4),
            dir: "/var/lib/ferry/containers/x".into(),
        };
        let meta = Meta {
            name: "web".into(),
            ..Meta::default()
        };
        let opts = UnitOptions {
            use_name: true,
            ..UnitOptions::default()
        };
        let (name, text) = unit(
            Path::new("/var/lib/ferry"),
            Path::new("/usr/bin/ferry"),
            &c,
            &meta,
            &opts,
        )
        .unwrap();
        assert_eq!(name, "container-web.service");
        for line in [
            "ExecStart=/usr/bin/ferry start web",
            "ExecStop=/usr/bin/ferry stop -t 10 web",
            "PIDFile=/var/lib/ferry/containers/x/monitor.pid",
            "Type=forking",
            "Restart=on-failure",
            "TimeoutStopSec=70",
            "Environment=FERRY_ROOT=/var/lib/ferry",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        let (name, _) = unit(
            Path::new("/srv/my store"),
            Path::new("/usr/bin/ferry"),
            &c,
            &meta,
            &UnitOptions::default(),
        )
        .unwrap();
        assert_eq!(name, format!("container-{}.service", c.id));
        assert_eq!(quote("/srv/my store"), "\"/srv/my store\"");
        assert_eq!(quote("/a%b"), "/a%%b");
        assert!(
            unit(
                Path::new("/r"),
                Path::new("/f"),
                &c,
                &meta,
                &UnitOptions {
                    restart_policy: "sometimes".into(),
                    ..UnitOptions::default()
                }
            )
            .is_err()
        );
    }
}

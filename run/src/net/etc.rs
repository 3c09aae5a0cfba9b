//! `/etc/hosts` and `/etc/resolv.conf` entries from the command line: `--add-host NAME:IP`,
//! `--dns IP`, `--dns-search DOMAIN`, `--dns-option OPT`, written as Docker writes them.

use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{RunError, io_err};

/// One `--add-host NAME:IP`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    /// The host name.
    pub name: String,
    /// Its address.
    pub ip: IpAddr,
}

impl FromStr for HostEntry {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        // The name ends at the first ':', so IPv6 addresses need no brackets (`h:::1`).
        let (name, ip) = s
            .split_once(':')
            .filter(|(n, i)| !n.is_empty() && !i.is_empty())
            .ok_or_else(|| format!("bad format for add-host: {s:?}"))?;
        if ip == "host-gateway" {
            return Err(
                "host-gateway is not supported: ferry has no bridge, the host is not reachable from a private network namespace; use --network host"
                    .into(),
            );
        }
        let ip = ip
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("invalid IP address in add-host: {ip:?}"))?;
        Ok(HostEntry {
            name: name.to_string(),
            ip,
        })
    }
}

/// What `--dns*` ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// `--dns`.
    pub servers: Vec<IpAddr>,
    /// `--dns-search`.
    pub search: Vec<String>,
    /// `--dns-option`.
    pub options: Vec<String>,
}

impl Dns {
    /// Whether any `--dns*` flag was given.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.search.is_empty() && self.options.is_empty()
    }
}

/// Parses `--dns`'s value.
pub fn parse_dns_server(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| format!("{s} is not an ip address"))
}

/// The container's `resolv.conf` from the host's and the `--dns*` flags: each flag replaces
/// the host's lines of its kind (`search`, `nameserver`, `options`), as Docker does; `--dns-search
/// .` means no search domains.
pub fn resolv_conf(host: &str, dns: &Dns) -> String {
    if dns.is_empty() {
        return host.to_string();
    }
    let host_values = |key: &str| -> Vec<String> {
        host.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(key)).then(|| w.map(str::to_string).collect::<Vec<_>>())
            })
            .flatten()
            .collect()
    };
    let servers: Vec<String> = if dns.servers.is_empty() {
        host_values("nameserver")
    } else {
        dns.servers.iter().map(|s| s.to_string()).collect()
    };
    let search = if dns.search.is_empty() {
        host_values("search")
    } else {
        dns.search.clone()
    };
    let options = if dns.options.is_empty() {
        host_values("options")
    } else {
        dns.options.clone()
    };
    let mut out = String::new();
    let search = search.join(" ");
    if !search.trim().is_empty() && search.trim() != "." {
        out.push_str(&format!("search {search}\n"));
    }
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// Applies the flags to the files in the container's directory: `--add-host` lines at the end
/// of `hosts`, `--dns*` into `resolv.conf`.
pub fn apply(dir: &Path, add_hosts: &[HostEntry], dns: &Dns) -> Result<(), RunError> {
    if !add_hosts.is_empty() {
        let p = dir.join("hosts");
        let mut text = std::fs::read_to_string(&p).map_err(io_err("read", &p))?;
        for h in add_hosts {
            text.push_str(&format!("{}\t{}\n", h.ip, h.name));
        }
        std::fs::write(&p, text).map_err(io_err("write", &p))?;
    }
    if !dns.is_empty() {
        let p = dir.join("resolv.conf");
        let host = std::fs::read_to_string(&p).map_err(io_err("read", &p))?;
        std::fs::write(&p, resolv_conf(&host, dns)).map_err(io_err("write", &p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_host_parses_like_docker() {
        let h: HostEntry = "db:10.0.0.5".parse().unwrap();
        assert_eq!(
            (h.name.as_str(), h.ip.to_string()),
            ("db", "10.0.0.5".into())
        );
        let h: HostEntry = "v6:::1".parse().unwrap();
        assert_eq!(h.ip.to_string(), "::1");
        assert_eq!(
            "nocolon".parse::<HostEntry>().unwrap_err(),
            "bad format for add-host: \"nocolon\""
        );
        assert_eq!(
            "db:notip".parse::<HostEntry>().unwrap_err(),
            "invalid IP address in add-host: \"notip\""
        );
    }

    #[test]
    fn dns_flags_replace_their_kind_of_line() {
        let host = "# generated\nsearch corp.example\nnameserver 127.0.0.53\noptions edns0\n";
        assert_eq!(resolv_conf(host, &Dns::default()), host);
        let dns = Dns {
            servers: vec!["10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap()],
            ..Dns::default()
        };
        assert_eq!(
            resolv_conf(host, &dns),
            "search corp.example\nnameserver 10.0.0.2\nnameserver 10.0.0.3\noptions edns0\n"
        );
        let dns = Dns {
            search: vec![".".into()],
            options: vec!["ndots:2".into()],
            ..Dns::default()
        };
        assert_eq!(
            resolv_conf(host, &dns),
            "nameserver 127.0.0.53\noptions ndots:2\n"
        );
    }
}

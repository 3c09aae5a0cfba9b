//! Published ports: `-p [IP:][HOST:]CONTAINER[/tcp|udp]` as Docker parses it, the ports a
//! running container actually holds, and how `ps` and `ferry port` print them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `tcp` or `udp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" | "" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            _ => Err(format!("Invalid proto: {s}")),
        }
    }
}

/// A container port with its protocol (`80/tcp`), as EXPOSE and `--expose` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContainerPort {
    /// The port number.
    pub port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

impl fmt::Display for ContainerPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

impl ContainerPort {
    /// Parses `80`, `80/udp`, or a range `8000-8010/tcp` (the image's `ExposedPorts` keys and
    /// `--expose` values).
    pub fn parse_range(s: &str) -> Result<Vec<ContainerPort>, String> {
        let (ports, proto) = s.split_once('/').unwrap_or((s, "tcp"));
        let protocol: Protocol = proto.parse()?;
        let (lo, hi) = parse_range(ports).map_err(|_| format!("Invalid containerPort: {s}"))?;
        Ok((lo..=hi)
            .map(|port| ContainerPort { port, protocol })
            .collect())
    }
}

/// One `-p` request: where on the host (any address, a port or any free one) → which
/// container port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// The host address; `None` is every address (`0.0.0.0` and `::`).
    pub host_ip: Option<IpAddr>,
    /// The host port; 0 lets the kernel choose a free one.
    pub host_port: u16,
    /// The container side.
    pub container: ContainerPort,
}

/// Parses one `-p` value into the ports it names (a range gives several).
pub fn parse_publish(s: &str) -> Result<Vec<PortSpec>, String> {
    let (rest, proto) = s.rsplit_once('/').unwrap_or((s, "tcp"));
    let protocol: Protocol = proto.parse()?;
    // IPv6 addresses come in brackets: `[::1]:8080:80`.
    let (ip, rest) = match rest.strip_prefix('[') {
        Some(r) => {
            let (ip, after) = r
                .split_once(']')
                .ok_or_else(|| format!("Invalid ip address: {rest}"))?;
            let after = after
                .strip_prefix(':')
                .ok_or_else(|| format!("Invalid ip address: {rest}"))?;
            (Some(ip), after)
        }
        None => (None, rest),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, ctr) = match (ip, parts.as_slice()) {
        (None, [c]) => (None, "", *c),
        (None, [h, c]) => (None, *h, *c),
        (None, [i, h, c]) => (Some(*i), *h, *c),
        (Some(i), [h, c]) => (Some(i), *h, *c),
        _ => return Err(format!("Invalid ip address: {s}")),
    };
    let host_ip = match ip {
        None | Some("") => None,
        Some(i) => Some(
            i.parse::<IpAddr>()
                .map_err(|_| format!("Invalid ip address: {i}"))?,
        ),
    };
    let (clo, chi) = parse_range(ctr).map_err(|_| format!("Invalid containerPort: {ctr}"))?;
    let (hlo, hhi) = if host.is_empty() {
        (0, 0)
    } else {
        parse_range(host).map_err(|_| format!("Invalid hostPort: {host}"))?
    };
    let count = chi - clo;
    if !host.is_empty() && hhi - hlo != count {
        // Docker picks one free port of a host range for a single container port; ferry
        // asks for ranges of the same length.
        return Err(format!(
            "Invalid ranges specified for container and host Ports: {ctr} and {host}"
        ));
    }
    Ok((0..=count)
        .map(|i| PortSpec {
            host_ip,
            host_port: if host.is_empty() { 0 } else { hlo + i },
            container: ContainerPort {
                port: clo + i,
                protocol,
            },
        })
        .collect())
}

fn parse_range(s: &str) -> Result<(u16, u16), ()> {
    let port = |p: &str| p.parse::<u16>().ok().filter(|n| *n > 0).ok_or(());
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if b < a {
                return Err(());
            }
            Ok((a, b))
        }
        None => {
            let p = port(s)?;
            Ok((p, p))
        }
    }
}

/// A port a running container holds on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PublishedPort {
    /// The address it listens on (`0.0.0.0`, `::`, `127.0.0.1`, …).
    pub host_ip: IpAddr,
    /// The port on the host.
    pub host_port: u16,
    /// The container side.
    pub container: ContainerPort,
}

impl PublishedPort {
    /// `0.0.0.0:8080` / `[::]:8080`, as `ferry port` prints it (Docker writes `:::8080`).
    pub fn host(&self) -> String {
        match self.host_ip {
            IpAddr::V4(ip) => format!("{ip}:{}", self.host_port),
            IpAddr::V6(ip) => format!("[{ip}]:{}", self.host_port),
        }
    }

    /// Docker's spelling in `ps` and `port`: `0.0.0.0:8080`, `:::8080`, `::1:8080`.
    pub fn docker_host(&self) -> String {
        format!("{}:{}", self.host_ip, self.host_port)
    }

    /// Whether this binding and `other` cannot both exist: same protocol and port, and
    /// addresses that overlap (the same, or one is the family's wildcard).
    pub fn conflicts(&self, other: &PublishedPort) -> bool {
        let wild = |ip: &IpAddr| ip.is_unspecified();
        self.container.protocol == other.container.protocol
            && self.host_port == other.host_port
            && self.host_ip.is_ipv4() == other.host_ip.is_ipv4()
            && (self.host_ip == other.host_ip || wild(&self.host_ip) || wild(&other.host_ip))
    }
}

/// The wildcard addresses `-p 8080:80` listens on, as Docker 20.10 does.
pub fn any_addresses() -> [IpAddr; 2] {
    [
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    ]
}

/// `ps`'s PORTS column: published ports as `0.0.0.0:8080->80/tcp`, exposed ones that are not
/// published as `80/tcp`, ordered by container port, comma-separated.
pub fn ps_column(published: &[PublishedPort], exposed: &[ContainerPort]) -> String {
    let mut items: Vec<(ContainerPort, u8, String)> = published
        .iter()
        .map(|p| {
            (
                p.container,
                u8::from(p.host_ip.is_ipv6()),
                format!("{}->{}", p.docker_host(), p.container),
            )
        })
        .collect();
    for e in exposed {
        if !published.iter().any(|p| p.container == *e) {
            items.push((*e, 0, e.to_string()));
        }
    }
    items.sort();
    items.dedup();
    items
        .into_iter()
        .map(|(_, _, s)| s)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `ferry port`'s lines: `80/tcp -> 0.0.0.0:8080`, optionally only for one container port.
pub fn port_lines(published: &[PublishedPort], only: Option<ContainerPort>) -> Vec<String> {
    let mut v: Vec<&PublishedPort> = published
        .iter()
        .filter(|p| only.is_none_or(|o| o == p.container))
        .collect();
    v.sort_by_key(|p| (p.container, p.host_ip.is_ipv6()));
    v.iter()
        .map(|p| format!("{} -> {}", p.container, p.docker_host()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> PortSpec {
        let v = parse_publish(s).unwrap();
        assert_eq!(v.len(), 1, "{s}");
        v.into_iter().next().unwrap()
    }

    #[test]
    fn publish_specs_parse_like_dockers() {
        let p = one("8080:80");
        assert_eq!((p.host_ip, p.host_port, p.container.port), (None, 8080, 80));
        assert_eq!(p.container.protocol, Protocol::Tcp);
        let p = one("127.0.0.1:8080:80/udp");
        assert_eq!(p.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(p.container.protocol, Protocol::Udp);
        let p = one("127.0.0.1::80");
        assert_eq!((p.host_port, p.container.port), (0, 80));
        let p = one("80");
        assert_eq!((p.host_ip, p.host_port), (None, 0));
        let p = one("[::1]:8080:80");
        assert_eq!(p.host_ip, Some("::1".parse().unwrap()));
        let r = parse_publish("8000-8002:80-82").unwrap();
        assert_eq!(
            r.iter()
                .map(|p| (p.host_port, p.container.port))
                .collect::<Vec<_>>(),
            [(8000, 80), (8001, 81), (8002, 82)]
        );
        // Docker's words for bad values.
        assert_eq!(
            parse_publish("80000:80").unwrap_err(),
            "Invalid hostPort: 80000"
        );
        assert_eq!(
            parse_publish("abc").unwrap_err(),
            "Invalid containerPort: abc"
        );
        assert_eq!(
            parse_publish("8080:80/sctpx").unwrap_err(),
            "Invalid proto: sctpx"
        );
        assert_eq!(
            parse_publish("1.2.3:80:80").unwrap_err(),
            "Invalid ip address: 1.2.3"
        );
        assert_eq!(
            parse_publish("8000-8002:80-81").unwrap_err(),
            "Invalid ranges specified for container and host Ports: 80-81 and 8000-8002"
        );
    }

    #[test]
    fn ps_and_port_print_like_docker() {
        let tcp = |port| ContainerPort {
            port,
            protocol: Protocol::Tcp,
        };
        let published = [
            PublishedPort {
                host_ip: "::".parse().unwrap(),
                host_port: 32768,
                container: tcp(82),
            },
            PublishedPort {
                host_ip: "0.0.0.0".parse().unwrap(),
                host_port: 32768,
                container: tcp(82),
            },
            PublishedPort {
                host_ip: "127.0.0.1".parse().unwrap(),
                host_port: 32769,
                container: tcp(81),
            },
        ];
        assert_eq!(
            ps_column(&published, &[tcp(81), tcp(9000)]),
            "127.0.0.1:32769->81/tcp, 0.0.0.0:32768->82/tcp, :::32768->82/tcp, 9000/tcp"
        );
        assert_eq!(
            port_lines(&published, Some(tcp(82))),
            ["82/tcp -> 0.0.0.0:32768", "82/tcp -> :::32768"]
        );
    }

    #[test]
    fn wildcards_conflict_with_their_family_only() {
        let at = |ip: &str, port| PublishedPort {
            host_ip: ip.parse().unwrap(),
            host_port: port,
            container: ContainerPort {
                port: 80,
                protocol: Protocol::Tcp,
            },
        };
        assert!(at("0.0.0.0", 80).conflicts(&at("127.0.0.1", 80)));
        assert!(!at("0.0.0.0", 80).conflicts(&at("::", 80)));
        assert!(!at("127.0.0.1", 80).conflicts(&at("127.0.0.2", 80)));
        assert!(!at("0.0.0.0", 80).conflicts(&at("0.0.0.0", 81)));
    }
}

//! Binding the host side of published ports, before the container starts, so a port that is
//! taken fails the start with Docker's words and nothing runs.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType, ipproto, sockopt};

use super::ports::{PortSpec, Protocol, PublishedPort, any_addresses};

/// A bound (and, for TCP, listening) socket on the host.
#[derive(Debug)]
pub struct Listener {
    /// The socket: non-blocking, close-on-exec.
    pub fd: OwnedFd,
    /// What it publishes.
    pub port: PublishedPort,
}

/// Why a port could not be published, in Docker's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// Another container of this store holds the port.
    #[error("Bind for {addr} failed: port is already allocated")]
    Allocated {
        /// `0.0.0.0:8080`.
        addr: String,
    },
    /// The kernel refused the bind (another program holds the port, no permission, …).
    #[error("Error starting userland proxy: listen {net} {addr}: {op}: {reason}")]
    Listen {
        /// `tcp4`, `tcp6`, `udp4`, `udp6`.
        net: &'static str,
        /// `0.0.0.0:8080`, `[::]:8080`.
        addr: String,
        /// `bind` or `listen`.
        op: &'static str,
        /// Go's spelling of the errno (`address already in use`).
        reason: String,
    },
}

/// Binds every requested port; `taken` are the ports other running containers hold. All or
/// nothing: on error the sockets bound so far are closed.
pub fn bind_all(specs: &[PortSpec], taken: &[PublishedPort]) -> Result<Vec<Listener>, BindError> {
    let mut out = Vec::new();
    for spec in specs {
        out.extend(bind_spec(spec, taken, &out)?);
    }
    Ok(out)
}

fn bind_spec(
    spec: &PortSpec,
    taken: &[PublishedPort],
    mine: &[Listener],
) -> Result<Vec<Listener>, BindError> {
    let published = |ip: IpAddr, port: u16| PublishedPort {
        host_ip: ip,
        host_port: port,
        container: spec.container,
    };
    let check = |p: &PublishedPort| {
        let clash = taken.iter().chain(mine.iter().map(|l| &l.port));
        match clash.into_iter().find(|t| t.conflicts(p)) {
            Some(_) if p.host_port != 0 => Err(BindError::Allocated {
                addr: p.docker_host(),
            }),
            _ => Ok(()),
        }
    };
    if let Some(ip) = spec.host_ip {
        let want = published(ip, spec.host_port);
        check(&want)?;
        let l = bind_one(want)?;
        return Ok(vec![l]);
    }
    // Every address: IPv4 and, where the host has it, IPv6 on the same port. A port chosen by
    // the kernel for IPv4 may be taken on IPv6: then choose again.
    let [v4, v6] = any_addresses();
    for _ in 0..8 {
        let want = published(v4, spec.host_port);
        check(&want)?;
        let first = bind_one(want)?;
        let port = first.port.host_port;
        let want6 = published(v6, port);
        check(&want6)?;
        match bind_one(want6) {
            Ok(second) => return Ok(vec![first, second]),
            Err(e) if ipv6_missing(&e) => return Ok(vec![first]),
            Err(_) if spec.host_port == 0 => continue,
            Err(e) => return Err(e),
        }
    }
    Err(BindError::Listen {
        net: "tcp6",
        addr: "[::]:0".into(),
        op: "bind",
        reason: "no port free on both IPv4 and IPv6".into(),
    })
}

/// A host without IPv6 (disabled, or no `::` address) still publishes on IPv4.
fn ipv6_missing(e: &BindError) -> bool {
    matches!(e, BindError::Listen { reason, .. }
        if *reason == go_errno(Errno::AFNOSUPPORT) || *reason == go_errno(Errno::ADDRNOTAVAIL))
}

fn bind_one(want: PublishedPort) -> Result<Listener, BindError> {
    let v6 = want.host_ip.is_ipv6();
    let udp = want.container.protocol == Protocol::Udp;
    let net = match (udp, v6) {
        (false, false) => "tcp4",
        (false, true) => "tcp6",
        (true, false) => "udp4",
        (true, true) => "udp6",
    };
    let addr = SocketAddr::new(want.host_ip, want.host_port);
    let fail = |op: &'static str| {
        let shown = want.host();
        move |e: Errno| BindError::Listen {
            net,
            addr: shown,
            op,
            reason: go_errno(e),
        }
    };
    let family = if v6 {
        AddressFamily::INET6
    } else {
        AddressFamily::INET
    };
    let (typ, proto) = if udp {
        (SocketType::DGRAM, ipproto::UDP)
    } else {
        (SocketType::STREAM, ipproto::TCP)
    };
    let fd = rustix::net::socket_with(
        family,
        typ,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        Some(proto),
    )
    .map_err(fail("socket"))?;
    if v6 {
        // `::` must not also take the IPv4 port: that one is bound on its own.
        sockopt::set_ipv6_v6only(&fd, true).map_err(fail("bind"))?;
    }
    if !udp {
        // As every Go listener (docker-proxy's too): a restart must not wait for the old
        // connections' TIME_WAIT.
        sockopt::set_socket_reuseaddr(&fd, true).map_err(fail("bind"))?;
    }
    rustix::net::bind(&fd, &addr).map_err(fail("bind"))?;
    if !udp {
        rustix::net::listen(&fd, 1024).map_err(fail("listen"))?;
    }
    let host_port = match rustix::net::getsockname(&fd)
        .ok()
        .and_then(|a| SocketAddr::try_from(a).ok())
    {
        Some(a) => a.port(),
        None => want.host_port,
    };
    Ok(Listener {
        fd,
        port: PublishedPort { host_port, ..want },
    })
}

/// Go's lowercase error strings, which Docker's messages carry.
fn go_errno(e: Errno) -> String {
    match e {
        Errno::ADDRINUSE => "address already in use".into(),
        Errno::ACCESS => "permission denied".into(),
        Errno::ADDRNOTAVAIL => "cannot assign requested address".into(),
        Errno::AFNOSUPPORT => "address family not supported by protocol".into(),
        other => {
            let s = std::io::Error::from(other).to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            s.to_lowercase()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::ports::parse_publish;

    #[test]
    fn a_port_held_elsewhere_fails_with_dockers_words() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let spec = parse_publish(&format!("127.0.0.1:{port}:80")).unwrap();
        let e = bind_all(&spec, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "Error starting userland proxy: listen tcp4 127.0.0.1:{port}: bind: address already in use"
            )
        );
    }

    #[test]
    fn a_port_of_another_container_is_allocated() {
        let spec = parse_publish("127.0.0.1:18099:80").unwrap();
        let taken = [PublishedPort {
            host_ip: "0.0.0.0".parse().unwrap(),
            host_port: 18099,
            container: spec[0].container,
        }];
        assert_eq!(
            bind_all(&spec, &taken).unwrap_err().to_string(),
            "Bind for 127.0.0.1:18099 failed: port is already allocated"
        );
    }

    #[test]
    fn any_address_and_a_free_port() {
        let l = bind_all(&parse_publish("80/udp").unwrap(), &[]).unwrap();
        assert!(!l.is_empty());
        assert_ne!(l[0].port.host_port, 0);
        assert!(l.iter().all(|x| x.port.host_port == l[0].port.host_port));
        assert!(l[0].port.host_ip.is_unspecified());
    }
}

//! UDP: each client address gets a socket in the container connected to the container port;
//! answers go back to that client from the published socket; idle flows are forgotten.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::event::epoll::EventFlags;
use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, ipproto};

use super::{Item, ROUNDS, Relay, loopback};

/// How long a UDP client without traffic keeps its socket in the container (docker-proxy's
/// connection-tracking timeout).
pub(super) const UDP_IDLE: Duration = Duration::from_secs(90);

/// One UDP client: a socket in the container connected to the container port.
pub(super) struct Flow {
    pub(super) fd: OwnedFd,
    listener: usize,
    client: SocketAddr,
    pub(super) last: Instant,
}

impl Relay {
    pub(super) fn udp_from_clients(&mut self, slot: usize) {
        for _ in 0..ROUNDS {
            let Some(Item::Udp { fd, .. }) = &self.items[slot] else {
                return;
            };
            let (n, from) =
                match rustix::net::recvfrom(fd, &mut self.scratch[..], RecvFlags::empty()) {
                    Ok((n, _, Some(from))) => match SocketAddr::try_from(from) {
                        Ok(a) => (n, a),
                        Err(_) => continue,
                    },
                    Ok(_) => continue,
                    Err(Errno::INTR) => continue,
                    Err(_) => return,
                };
            let (port, existing) = match &self.items[slot] {
                Some(Item::Udp { port, flows, .. }) => (*port, flows.get(&from).copied()),
                _ => return,
            };
            let flow_slot = match existing {
                Some(s) => s,
                None => {
                    let Ok(fd) = udp_in_container(port) else {
                        continue;
                    };
                    let flow = Flow {
                        fd,
                        listener: slot,
                        client: from,
                        last: Instant::now(),
                    };
                    let Ok(s) = self.insert(Item::Flow(flow), EventFlags::IN) else {
                        continue;
                    };
                    if let Some(Item::Udp { flows, .. }) = &mut self.items[slot] {
                        flows.insert(from, s);
                    }
                    s
                }
            };
            if let Some(Item::Flow(f)) = &mut self.items[flow_slot] {
                f.last = Instant::now();
                let _ = rustix::net::send(&f.fd, &self.scratch[..n], SendFlags::NOSIGNAL);
            }
        }
    }

    pub(super) fn udp_from_container(&mut self, slot: usize) {
        for _ in 0..ROUNDS {
            let Some(Item::Flow(f)) = &self.items[slot] else {
                return;
            };
            let (listener, client) = (f.listener, f.client);
            match rustix::net::recv(&f.fd, &mut self.scratch[..], RecvFlags::empty()) {
                Ok((n, _)) => {
                    if let Some(Item::Udp { fd, .. }) = &self.items[listener] {
                        let _ = rustix::net::sendto(
                            fd,
                            &self.scratch[..n],
                            SendFlags::NOSIGNAL,
                            &client,
                        );
                    }
                    if let Some(Item::Flow(f)) = &mut self.items[slot] {
                        f.last = Instant::now();
                    }
                }
                Err(Errno::AGAIN) => return,
                Err(Errno::INTR) => continue,
                // ICMP port unreachable and the like: nothing listens in the container.
                Err(_) => {
                    self.drop_flow(slot);
                    return;
                }
            }
        }
    }

    pub(super) fn drop_flow(&mut self, slot: usize) {
        if let Some(Item::Flow(f)) = &self.items[slot] {
            let (listener, client) = (f.listener, f.client);
            if let Some(Item::Udp { flows, .. }) = &mut self.items[listener] {
                flows.remove(&client);
            }
            self.remove(slot);
        }
    }

    pub(super) fn expire_flows(&mut self) {
        let now = Instant::now();
        let idle: Vec<usize> = self
            .items
            .iter()
            .enumerate()
            .filter_map(|(s, it)| match it {
                Some(Item::Flow(f)) if now.duration_since(f.last) >= UDP_IDLE => Some(s),
                _ => None,
            })
            .collect();
        for s in idle {
            self.drop_flow(s);
        }
    }
}

/// A UDP socket in the container, connected to the container port.
fn udp_in_container(port: u16) -> Result<OwnedFd, Errno> {
    let fd = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        Some(ipproto::UDP),
    )?;
    rustix::net::connect(&fd, &loopback(port))?;
    Ok(fd)
}

//! The user-space port proxy's event loop: it accepts on the host's listening sockets and, for
//! each connection (or UDP client), opens a socket in the container's network namespace to
//! `127.0.0.1:PORT` and copies bytes both ways.
//!
//! It runs in a process that has joined the container's network namespace after binding the
//! listeners on the host: sockets keep the namespace they were created in, so accepted
//! connections live on the host and the ones it opens live in the container. Nothing to
//! configure (no bridge, no iptables) and it works on Linux 3.10 and rootless.
//!
//! One thread, level-triggered epoll. Each direction of a connection starts by copying through
//! a shared scratch buffer (`recv`/`send`: a request or a small answer costs two calls and no
//! descriptor); once it carries bulk (a read fills the buffer) it moves to `splice(2)` through
//! a pipe of its own (socket → pipe → socket: the bytes are never copied into the proxy). It
//! reads again only once the receiver took what was read, so an idle connection holds nothing.
//!
//! `tcp` relays connections, `udp` datagrams.

mod tcp;
mod udp;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::epoll::{self, EventFlags};
use rustix::io::Errno;

use super::listen::Listener;
use super::ports::Protocol;
use tcp::Conn;
use udp::{Flow, UDP_IDLE};

/// One copied read at most; shared by every connection. A read that fills it turns its
/// direction to splicing.
const SCRATCH: usize = 64 * 1024;
/// Reads per event before other connections get their turn.
const ROUNDS: usize = 16;

enum Item {
    /// EOF on it: the supervisor is gone, stop.
    Lifeline(OwnedFd),
    Tcp {
        fd: OwnedFd,
        port: u16,
    },
    Udp {
        fd: OwnedFd,
        port: u16,
        flows: HashMap<SocketAddr, usize>,
    },
    Conn(Conn),
    Flow(Flow),
}

struct Relay {
    epoll: OwnedFd,
    items: Vec<Option<Item>>,
    free: Vec<usize>,
    scratch: Vec<u8>,
    /// Set when accept ran out of descriptors: listeners rest until then.
    paused_until: Option<Instant>,
}

fn token(slot: usize, side: usize) -> epoll::EventData {
    epoll::EventData::new_u64(((slot as u64) << 1) | side as u64)
}

/// Runs the proxy until `lifeline` reaches end of file. Call it in the container's network
/// namespace, with `listeners` bound on the host's.
pub fn run(listeners: Vec<Listener>, lifeline: OwnedFd) -> std::io::Result<()> {
    let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    let mut r = Relay {
        epoll,
        items: Vec::new(),
        free: Vec::new(),
        scratch: vec![0; SCRATCH],
        paused_until: None,
    };
    r.insert(Item::Lifeline(lifeline), EventFlags::IN)?;
    for l in listeners {
        let port = l.port.container.port;
        let item = match l.port.container.protocol {
            Protocol::Tcp => Item::Tcp { fd: l.fd, port },
            Protocol::Udp => Item::Udp {
                fd: l.fd,
                port,
                flows: HashMap::new(),
            },
        };
        r.insert(item, EventFlags::IN)?;
    }
    let mut events: Vec<epoll::Event> = Vec::with_capacity(256);
    loop {
        events.clear();
        let timeout = r.timeout();
        match epoll::wait(
            &r.epoll,
            rustix::buffer::spare_capacity(&mut events),
            timeout.as_ref(),
        ) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        for ev in &events {
            let data = ev.data.u64();
            let (slot, side) = ((data >> 1) as usize, (data & 1) as usize);
            if r.handle(slot, side, ev.flags) {
                return Ok(());
            }
        }
        r.expire_flows();
        r.resume_listeners();
    }
}

impl Relay {
    fn insert(&mut self, item: Item, flags: EventFlags) -> std::io::Result<usize> {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.items.push(None);
                self.items.len() - 1
            }
        };
        let fd = match &item {
            Item::Lifeline(fd) | Item::Tcp { fd, .. } | Item::Udp { fd, .. } => fd.as_fd(),
            Item::Flow(f) => f.fd.as_fd(),
            Item::Conn(c) => c.fds[0].as_fd(),
        };
        epoll::add(&self.epoll, fd, token(slot, 0), flags)?;
        if let Item::Conn(c) = &item {
            epoll::add(&self.epoll, &c.fds[1], token(slot, 1), c.interest[1])?;
        }
        self.items[slot] = Some(item);
        Ok(slot)
    }

    fn remove(&mut self, slot: usize) {
        // Closing a descriptor takes it out of the epoll set.
        if self.items.get_mut(slot).and_then(Option::take).is_some() {
            self.free.push(slot);
        }
    }

    fn timeout(&self) -> Option<rustix::event::Timespec> {
        let now = Instant::now();
        let mut next: Option<Instant> = self.paused_until;
        for it in self.items.iter().flatten() {
            if let Item::Flow(f) = it {
                let due = f.last + UDP_IDLE;
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        next.map(|t| {
            let d = t.saturating_duration_since(now) + Duration::from_millis(1);
            rustix::event::Timespec {
                tv_sec: d.as_secs() as _,
                tv_nsec: d.subsec_nanos() as _,
            }
        })
    }

    /// Handles one event; returns true when the proxy must stop.
    fn handle(&mut self, slot: usize, side: usize, flags: EventFlags) -> bool {
        match self.items.get(slot).and_then(Option::as_ref) {
            Some(Item::Lifeline(_)) => return true,
            Some(Item::Tcp { .. }) => self.accept(slot),
            Some(Item::Udp { .. }) => self.udp_from_clients(slot),
            Some(Item::Flow(_)) => self.udp_from_container(slot),
            Some(Item::Conn(_)) => self.conn_event(slot, side, flags),
            None => {}
        }
        false
    }

    fn pause_listeners(&mut self) {
        self.paused_until = Some(Instant::now() + Duration::from_millis(100));
        for (slot, it) in self.items.iter().enumerate() {
            if let Some(Item::Tcp { fd, .. }) = it {
                let _ = epoll::modify(&self.epoll, fd, token(slot, 0), EventFlags::empty());
            }
        }
    }

    fn resume_listeners(&mut self) {
        match self.paused_until {
            Some(t) if Instant::now() >= t => self.paused_until = None,
            _ => return,
        }
        for (slot, it) in self.items.iter().enumerate() {
            if let Some(Item::Tcp { fd, .. }) = it {
                let _ = epoll::modify(&self.epoll, fd, token(slot, 0), EventFlags::IN);
            }
        }
    }
}

/// `127.0.0.1:PORT`: where every container port is reached.
fn loopback(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
}

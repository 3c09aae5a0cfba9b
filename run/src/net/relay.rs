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

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::epoll::{self, EventFlags};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, Shutdown, SocketFlags, SocketType, ipproto, sockopt,
};

use super::listen::Listener;
use super::ports::Protocol;

/// How long a UDP client without traffic keeps its socket in the container (docker-proxy's
/// connection-tracking timeout).
const UDP_IDLE: Duration = Duration::from_secs(90);
/// One copied read at most; shared by every connection. A read that fills it turns its
/// direction to splicing.
const SCRATCH: usize = 64 * 1024;
/// The pipe a bulk direction splices through (the kernel allocates its pages as they fill;
/// 1 MiB is the default `pipe-max-size`).
const PIPE_SIZE: usize = 1024 * 1024;
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

/// One proxied TCP connection: side 0 is the client, side 1 the container.
struct Conn {
    fds: [OwnedFd; 2],
    connecting: bool,
    /// `halves[0]` carries client → container, `halves[1]` container → client.
    halves: [Half; 2],
    interest: [EventFlags; 2],
    /// Taken out of the epoll set after hanging up (see `conn_event`).
    parked: [bool; 2],
}

struct Half {
    /// The pipe bytes are spliced through (read end, write end), once the direction carries
    /// bulk.
    pipe: Option<(OwnedFd, OwnedFd)>,
    /// Bytes in the pipe, not yet written.
    in_pipe: usize,
    /// Splicing (bulk seen, and the kernel can splice these sockets).
    splice: bool,
    /// False once the kernel refused to splice these sockets.
    can_splice: bool,
    /// Read but not yet written (copy mode).
    pending: Vec<u8>,
    /// The reading side sent FIN.
    eof: bool,
    /// FIN passed on to the writing side.
    shut: bool,
}

impl Default for Half {
    fn default() -> Self {
        Half {
            pipe: None,
            in_pipe: 0,
            splice: false,
            can_splice: true,
            pending: Vec::new(),
            eof: false,
            shut: false,
        }
    }
}

impl Half {
    /// Whether bytes wait to be written.
    fn holds(&self) -> bool {
        self.in_pipe > 0 || !self.pending.is_empty()
    }

    fn pipe(&mut self) -> Result<&(OwnedFd, OwnedFd), Errno> {
        if self.pipe.is_none() {
            let (r, w) = rustix::pipe::pipe_with(
                rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
            )?;
            // Larger than the default 64 KiB for throughput; the default works too.
            let _ = rustix::pipe::fcntl_setpipe_size(&w, PIPE_SIZE);
            self.pipe = Some((r, w));
        }
        Ok(self.pipe.as_ref().expect("just made"))
    }
}

/// One UDP client: a socket in the container connected to the container port.
struct Flow {
    fd: OwnedFd,
    listener: usize,
    client: SocketAddr,
    last: Instant,
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

    fn accept(&mut self, slot: usize) {
        let port = match &self.items[slot] {
            Some(Item::Tcp { port, .. }) => *port,
            _ => return,
        };
        loop {
            let accepted = match &self.items[slot] {
                Some(Item::Tcp { fd, .. }) => {
                    rustix::net::accept_with(fd, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)
                }
                _ => return,
            };
            let client = match accepted {
                Ok(c) => c,
                Err(Errno::AGAIN | Errno::INTR) => return,
                Err(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM) => {
                    // Out of descriptors: let connections finish before taking more.
                    self.pause_listeners();
                    return;
                }
                // The client gave up before we took it (ECONNABORTED) and the like.
                Err(_) => continue,
            };
            let _ = sockopt::set_tcp_nodelay(&client, true);
            let backend = match connect_in_container(port) {
                Ok(b) => b,
                Err(Errno::MFILE | Errno::NFILE) => {
                    self.pause_listeners();
                    return;
                }
                // Nothing can be reached: the client sees its connection closed, as with
                // docker-proxy.
                Err(_) => continue,
            };
            let conn = Conn {
                fds: [client, backend],
                connecting: true,
                halves: [Half::default(), Half::default()],
                interest: [EventFlags::empty(), EventFlags::OUT],
                parked: [false; 2],
            };
            let _ = self.insert(Item::Conn(conn), EventFlags::empty());
        }
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

    fn conn_event(&mut self, slot: usize, side: usize, flags: EventFlags) {
        let Some(Some(Item::Conn(c))) = self.items.get_mut(slot) else {
            return;
        };
        let alive = if c.connecting {
            side == 1 && !flags.is_empty() && finish_connect(c)
        } else {
            let other = 1 - side;
            let mut ok = true;
            if flags.intersects(EventFlags::OUT) {
                // Room to write on `side`: flush what was read from the other side, and read
                // on from it if it was parked.
                ok = flush(c, other);
                if ok && c.parked[other] && !c.halves[other].holds() {
                    ok = pump(c, other, &mut self.scratch);
                }
            }
            if ok && flags.intersects(EventFlags::IN | EventFlags::HUP | EventFlags::ERR) {
                ok = pump(c, side, &mut self.scratch);
            }
            // A hung-up side (FIN both ways) is reported on every wait, whatever the
            // interest: take it out of the set once nothing more can be sent to it, and read
            // what it still holds when the other side has room.
            if ok
                && flags.contains(EventFlags::HUP)
                && !c.parked[side]
                && c.halves[other].shut
                && (c.halves[side].eof || c.halves[side].holds())
            {
                c.parked[side] = true;
                let _ = epoll::delete(&self.epoll, &c.fds[side]);
            }
            ok && !(c.halves[0].shut && c.halves[1].shut) && !flags.contains(EventFlags::ERR)
        };
        if !alive {
            self.remove(slot);
            return;
        }
        let Some(Some(Item::Conn(c))) = self.items.get_mut(slot) else {
            return;
        };
        for s in 0..2 {
            let want = interest(c, s);
            if !c.parked[s] && want != c.interest[s] {
                c.interest[s] = want;
                let _ = epoll::modify(&self.epoll, &c.fds[s], token(slot, s), want);
            }
        }
    }

    fn udp_from_clients(&mut self, slot: usize) {
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

    fn udp_from_container(&mut self, slot: usize) {
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

    fn drop_flow(&mut self, slot: usize) {
        if let Some(Item::Flow(f)) = &self.items[slot] {
            let (listener, client) = (f.listener, f.client);
            if let Some(Item::Udp { flows, .. }) = &mut self.items[listener] {
                flows.remove(&client);
            }
            self.remove(slot);
        }
    }

    fn expire_flows(&mut self) {
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

/// What each side waits for: reading while its direction holds nothing back, writing while
/// the other direction has something for it.
fn interest(c: &Conn, side: usize) -> EventFlags {
    let mut f = EventFlags::empty();
    if side == 1 && c.connecting {
        return EventFlags::OUT;
    }
    let reading = &c.halves[side];
    if !reading.holds() && !reading.eof {
        f |= EventFlags::IN;
    }
    if c.halves[1 - side].holds() {
        f |= EventFlags::OUT;
    }
    f
}

fn finish_connect(c: &mut Conn) -> bool {
    match sockopt::socket_error(&c.fds[1]) {
        Ok(Ok(())) => {
            c.connecting = false;
            let _ = sockopt::set_tcp_nodelay(&c.fds[1], true);
            true
        }
        _ => false,
    }
}

/// Moves bytes from `side` to the other side until `side` has nothing more to read, the
/// receiver is full, or this connection had its turn. Returns false when the connection is
/// broken.
fn pump(c: &mut Conn, side: usize, scratch: &mut [u8]) -> bool {
    for _ in 0..ROUNDS {
        let h = &mut c.halves[side];
        if h.holds() || h.eof {
            return true;
        }
        let read = if h.splice {
            let Ok((_, w)) = h.pipe() else {
                h.splice = false;
                h.can_splice = false;
                continue;
            };
            match rustix::pipe::splice(
                &c.fds[side],
                None,
                w,
                None,
                PIPE_SIZE,
                rustix::pipe::SpliceFlags::NONBLOCK | rustix::pipe::SpliceFlags::MOVE,
            ) {
                Ok(n) => {
                    h.in_pipe += n;
                    Ok(n)
                }
                // Not spliceable here: copy instead, from now on.
                Err(Errno::INVAL | Errno::NOSYS) => {
                    h.splice = false;
                    h.can_splice = false;
                    continue;
                }
                Err(e) => Err(e),
            }
        } else {
            match rustix::net::recv(&c.fds[side], &mut scratch[..], RecvFlags::empty()) {
                Ok((n, _)) => {
                    h.pending.extend_from_slice(&scratch[..n]);
                    h.splice = n == scratch.len() && h.can_splice;
                    Ok(n)
                }
                Err(e) => Err(e),
            }
        };
        match read {
            Ok(0) => {
                c.halves[side].eof = true;
                return flush(c, side);
            }
            Ok(_) => {
                if !flush(c, side) {
                    return false;
                }
            }
            Err(Errno::AGAIN) => return true,
            Err(Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
    true
}

/// Writes what `half` (read from its side) holds to the other side; passes FIN on once
/// everything is written. Returns false when the connection is broken.
fn flush(c: &mut Conn, half: usize) -> bool {
    let dst = &c.fds[1 - half];
    let h = &mut c.halves[half];
    while h.in_pipe > 0 {
        let Some((r, _)) = &h.pipe else {
            return false;
        };
        match rustix::pipe::splice(
            r,
            None,
            dst,
            None,
            h.in_pipe,
            rustix::pipe::SpliceFlags::NONBLOCK | rustix::pipe::SpliceFlags::MOVE,
        ) {
            Ok(0) => return false,
            Ok(m) => h.in_pipe -= m,
            Err(Errno::AGAIN) => return true,
            Err(Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
    while !h.pending.is_empty() {
        match rustix::net::send(dst, &h.pending, SendFlags::NOSIGNAL) {
            Ok(m) => {
                h.pending.drain(..m);
            }
            Err(Errno::AGAIN) => return true,
            Err(Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
    // Give the memory back: most connections are idle most of the time.
    h.pending = Vec::new();
    if h.eof && !h.shut {
        h.shut = true;
        // The peer may already be gone; the connection ends when both halves are shut.
        let _ = rustix::net::shutdown(dst, Shutdown::Write);
    }
    true
}

fn loopback(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
}

/// A TCP connection to the container port, started (non-blocking) from the proxy's current
/// network namespace: the container's.
fn connect_in_container(port: u16) -> Result<OwnedFd, Errno> {
    let fd = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        Some(ipproto::TCP),
    )?;
    match rustix::net::connect(&fd, &loopback(port)) {
        Ok(()) | Err(Errno::INPROGRESS) => Ok(fd),
        Err(e) => Err(e),
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

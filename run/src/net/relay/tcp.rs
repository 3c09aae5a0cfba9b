//! TCP: a connection accepted on the host, one opened in the container, bytes moved both
//! ways (copied while small, spliced once bulk), FIN passed on when each side is done.

use std::os::fd::OwnedFd;

use rustix::event::epoll::{self, EventFlags};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, Shutdown, SocketFlags, SocketType, ipproto, sockopt,
};

use super::{Item, ROUNDS, Relay, loopback, token};

/// The pipe a bulk direction splices through (the kernel allocates its pages as they fill;
/// 1 MiB is the default `pipe-max-size`).
const PIPE_SIZE: usize = 1024 * 1024;

/// One proxied TCP connection: side 0 is the client, side 1 the container.
pub(super) struct Conn {
    pub(super) fds: [OwnedFd; 2],
    connecting: bool,
    /// `halves[0]` carries client → container, `halves[1]` container → client.
    halves: [Half; 2],
    pub(super) interest: [EventFlags; 2],
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

impl Relay {
    pub(super) fn accept(&mut self, slot: usize) {
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

    pub(super) fn conn_event(&mut self, slot: usize, side: usize, flags: EventFlags) {
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

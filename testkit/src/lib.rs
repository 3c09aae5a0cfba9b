//! What ferry's tests need and no real server does: a reverse proxy that sits in front of a
//! real registry and misbehaves on request.
//!
//! requests ─► [`FaultProxy`] ─► real registry
//!
//! It forwards every request to the upstream registry and, following its [`Plan`], cuts blob
//! bodies short, answers with error statuses (with `Retry-After`), throttles bandwidth, adds
//! latency, ignores `Range`, revokes bearer tokens mid-download, or redirects blob requests to a
//! second proxy standing in for a CDN (which records whether an `Authorization` header reached
//! it). It counts the blob bytes it sends, so tests can tell how much a rerun downloaded.
//!
//! Only plain HTTP/1.1 is spoken, which is all a registry on loopback needs.

#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// HTTP headers as name/value pairs.
pub type Headers = Vec<(String, String)>;

/// An injected answer: status, how many times, extra headers.
pub type StatusFault = (u16, u32, Headers);

/// What to do to the traffic. Counters (`times`) decrease as faults fire.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Close the connection after this many body bytes of a blob response longer than that,
    /// `.1` times (shorter responses pass and do not count).
    pub cut_blob_after: Option<(u64, u32)>,
    /// Cut (see `cut_blob_after`) only responses that start at a blob's first byte: requests
    /// without `Range` or with `bytes=0-…`. The cut then falls inside a blob's first chunk,
    /// where only a resume from the last byte received asks for `bytes=N-…` with `N > 0`.
    pub cut_only_from_start: bool,
    /// Answer blob requests with this status (and headers) instead of forwarding, `.1` times.
    pub blob_status: Option<StatusFault>,
    /// Answer manifest requests with this status instead of forwarding, `.1` times.
    pub manifest_status: Option<StatusFault>,
    /// Limit body bandwidth to this many bytes per second, per connection.
    pub bytes_per_sec: Option<u64>,
    /// Wait this long before answering each request (a round trip's latency).
    pub latency: Option<Duration>,
    /// Drop `Range` headers, so blob requests are answered with the whole blob (200).
    pub ignore_range: bool,
    /// Redirect blob requests (307) to this base URL, e.g. another proxy's `http://addr`.
    pub redirect_blobs_to: Option<String>,
    /// Once this many blob bytes were sent, refuse the bearer token in use with a 401 (as if
    /// it expired), and every later request carrying it. Fires once.
    pub revoke_token_after: Option<u64>,
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Request target (path and query).
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The status answered.
    pub status: u16,
}

struct Shared {
    upstream: String,
    plan: Mutex<Plan>,
    seen: Mutex<Vec<Seen>>,
    blob_bytes: AtomicU64,
    revoked: Mutex<HashSet<String>>,
    presigned: AtomicU64,
}

/// A running proxy. It runs until the process ends.
#[derive(Clone)]
pub struct FaultProxy {
    /// `127.0.0.1:PORT` to point clients at.
    pub addr: String,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Starts a proxy for `upstream` (`host:port`) on an ephemeral loopback port.
    pub fn start(upstream: &str, plan: Plan) -> io::Result<Self> {
        Self::start_on("127.0.0.1:0", upstream, plan)
    }

    /// Starts a proxy listening on `listen`.
    pub fn start_on(listen: &str, upstream: &str, plan: Plan) -> io::Result<Self> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?.to_string();
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            plan: Mutex::new(plan),
            seen: Mutex::default(),
            blob_bytes: AtomicU64::new(0),
            revoked: Mutex::default(),
            presigned: AtomicU64::new(0),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &s);
                });
            }
        });
        Ok(FaultProxy { addr, shared })
    }

    /// Replaces the plan.
    pub fn set_plan(&self, plan: Plan) {
        *self.shared.plan.lock().expect("plan") = plan;
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().expect("seen").clone()
    }

    /// Blob body bytes sent to clients so far.
    pub fn blob_bytes(&self) -> u64 {
        self.shared.blob_bytes.load(Ordering::SeqCst)
    }

    /// Forgets the requests seen and the bytes counted.
    pub fn reset_counters(&self) {
        self.shared.seen.lock().expect("seen").clear();
        self.shared.blob_bytes.store(0, Ordering::SeqCst);
    }
}

struct Request {
    method: String,
    target: String,
    headers: Headers,
}

impl Request {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    fn is_blob(&self) -> bool {
        self.target.contains("/blobs/")
    }

    fn is_manifest(&self) -> bool {
        self.target.contains("/manifests/")
    }
}

fn read_head(r: &mut impl BufRead) -> io::Result<Option<(String, Headers)>> {
    let mut first = String::new();
    if r.read_line(&mut first)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some((first.trim_end().to_string(), headers)))
}

fn serve(client: TcpStream, shared: &Shared) -> io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut writer = client;
    while let Some((line, headers)) = read_head(&mut reader)? {
        let mut parts = line.split_whitespace();
        let req = Request {
            method: parts.next().unwrap_or("GET").to_string(),
            target: parts.next().unwrap_or("/").to_string(),
            headers,
        };
        if !handle(&req, &mut writer, shared)? {
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
    Ok(())
}

fn record(shared: &Shared, req: &Request, status: u16) {
    shared.seen.lock().expect("seen").push(Seen {
        path: req.target.clone(),
        authorization: req.header("authorization"),
        range: req.header("range"),
        status,
    });
}

/// Takes one use of a counted fault.
fn take<T: Clone>(slot: &mut Option<(T, u32)>) -> Option<T> {
    match slot {
        Some((v, n)) if *n > 0 => {
            *n -= 1;
            Some(v.clone())
        }
        _ => None,
    }
}

fn take3(slot: &mut Option<StatusFault>) -> Option<(u16, Headers)> {
    match slot {
        Some((status, n, headers)) if *n > 0 => {
            *n -= 1;
            Some((*status, headers.clone()))
        }
        _ => None,
    }
}

fn respond(
    w: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} Fault\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(body)
}

/// Handles one request; returns whether the client connection may be reused.
fn handle(req: &Request, w: &mut TcpStream, shared: &Shared) -> io::Result<bool> {
    let plan_now = shared.plan.lock().expect("plan").clone();
    if let Some(latency) = plan_now.latency {
        std::thread::sleep(latency);
    }
    let auth = req.header("authorization");
    // A revoked token gets the 401 an expired one would.
    if let Some(a) = &auth
        && shared.revoked.lock().expect("revoked").contains(a)
    {
        let challenge = upstream_challenge(shared).unwrap_or_default();
        record(shared, req, 401);
        respond(
            w,
            401,
            &[
                ("WWW-Authenticate".into(), challenge),
                ("Content-Type".into(), "application/json".into()),
            ],
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"token expired"}]}"#,
        )?;
        return Ok(true);
    }
    let injected = {
        let mut plan = shared.plan.lock().expect("plan");
        if req.is_blob() {
            take3(&mut plan.blob_status)
        } else if req.is_manifest() {
            take3(&mut plan.manifest_status)
        } else {
            None
        }
    };
    if let Some((status, headers)) = injected {
        record(shared, req, status);
        let mut headers = headers;
        headers.push(("Content-Type".into(), "application/json".into()));
        respond(
            w,
            status,
            &headers,
            br#"{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}"#,
        )?;
        return Ok(true);
    }
    if req.is_blob()
        && let Some(base) = &plan_now.redirect_blobs_to
    {
        record(shared, req, 307);
        // A fresh signature each time, as a registry presigning URLs would hand out: a
        // client that retries an expired URL instead of asking again is seen at the CDN.
        let n = shared.presigned.fetch_add(1, Ordering::SeqCst);
        let location = format!("{base}{}?X-Signature=presigned-{n}", req.target);
        respond(w, 307, &[("Location".into(), location)], b"")?;
        return Ok(true);
    }
    forward(req, w, shared, &plan_now)
}

/// Asks the upstream for its `/v2/` challenge, to answer revoked tokens like it would.
fn upstream_challenge(shared: &Shared) -> Option<String> {
    let mut s = TcpStream::connect(&shared.upstream).ok()?;
    s.write_all(
        format!(
            "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            shared.upstream
        )
        .as_bytes(),
    )
    .ok()?;
    let mut r = BufReader::new(s);
    let (_, headers) = read_head(&mut r).ok()??;
    headers
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v)
}

fn forward(req: &Request, w: &mut TcpStream, shared: &Shared, plan: &Plan) -> io::Result<bool> {
    let mut up = TcpStream::connect(&shared.upstream)?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        req.method, req.target, shared.upstream
    );
    for (k, v) in &req.headers {
        let lower = k.to_ascii_lowercase();
        if matches!(lower.as_str(), "host" | "connection")
            || (plan.ignore_range && lower == "range")
        {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    up.write_all(head.as_bytes())?;
    let mut ur = BufReader::new(up);
    let Some((status_line, headers)) = read_head(&mut ur)? else {
        return Ok(false);
    };
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(502);
    record(shared, req, status);
    let length: Option<u64> = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok());
    let mut out = format!("{status_line}\r\n");
    for (k, v) in &headers {
        if k.eq_ignore_ascii_case("connection") {
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if length.is_none() {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    w.write_all(out.as_bytes())?;
    if req.method == "HEAD" {
        return Ok(length.is_some());
    }

    let counted = req.is_blob() && (200..300).contains(&status);
    let from_start = req
        .header("range")
        .is_none_or(|r| r.trim().starts_with("bytes=0-"));
    let cut = if counted && (from_start || !plan.cut_only_from_start) {
        let mut plan = shared.plan.lock().expect("plan");
        match (&plan.cut_blob_after, length) {
            (Some((limit, _)), Some(len)) if len > *limit => take(&mut plan.cut_blob_after),
            _ => None,
        }
    } else {
        None
    };
    let mut sent: u64 = 0;
    let started = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut want = buf.len();
        if let Some(limit) = cut {
            if sent >= limit {
                // Drop the connection mid-body, as a flaky VPN would.
                let _ = w.shutdown(Shutdown::Both);
                return Ok(false);
            }
            want = want.min((limit - sent) as usize);
        }
        if let Some(bps) = plan.bytes_per_sec {
            want = want.min((bps / 20).max(1) as usize);
        }
        let n = ur.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        w.write_all(&buf[..n])?;
        sent += n as u64;
        if counted {
            let total = shared.blob_bytes.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
            if let (Some(after), Some(a)) = (plan.revoke_token_after, req.header("authorization"))
                && total >= after
            {
                // One token expires, once; its successors stay valid.
                let mut current = shared.plan.lock().expect("plan");
                if current.revoke_token_after.take().is_some() {
                    shared.revoked.lock().expect("revoked").insert(a);
                }
            }
        }
        if let Some(bps) = plan.bytes_per_sec {
            let due = Duration::from_secs_f64(sent as f64 / bps as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    w.flush()?;
    Ok(length.is_some())
}

/// Decodes the claims of a JWT (for tests that look at tokens' scopes); `None` if malformed.
pub fn jwt_claims(token: &str) -> Option<serde_json::Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

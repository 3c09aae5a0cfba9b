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
//! Uploads (`/blobs/uploads/`) are read whole before they are forwarded, as nginx does in front
//! of Harbor and most registries (`proxy_request_buffering`); the proxy counts the bytes clients
//! send in them, can drop the connection partway through a request body (the registry then
//! never sees that request), and can refuse uploads with a status (`413`).
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
    /// Close the connection after reading this many body bytes of a chunk of an upload that
    /// does not start at byte 0 (`PATCH` to `/blobs/uploads/` with `Content-Range` past 0),
    /// without forwarding it, `.1` times: the registry keeps what the earlier chunks brought.
    pub cut_upload_after: Option<(u64, u32)>,
    /// With `cut_upload_after`: forward the part of the body read before the cut, as a proxy
    /// that does not buffer would (distribution then forgets the upload).
    pub cut_forwards_partial: bool,
    /// Answer upload requests (after reading their body) with this status, `.1` times.
    pub upload_status: Option<StatusFault>,
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The method.
    pub method: String,
    /// Request target (path and query).
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The status answered (`0` when the connection was dropped instead).
    pub status: u16,
    /// Body bytes the client sent with it.
    pub body_bytes: u64,
}

struct Shared {
    /// Where the proxy listens.
    addr: String,
    upstream: Mutex<String>,
    /// Repositories are looked up below this prefix upstream (`/v2/NAME` → `/v2/PREFIX/NAME`).
    prefix: Mutex<Option<String>>,
    plan: Mutex<Plan>,
    seen: Mutex<Vec<Seen>>,
    blob_bytes: AtomicU64,
    upload_bytes: AtomicU64,
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
            addr: addr.clone(),
            upstream: Mutex::new(upstream.to_string()),
            prefix: Mutex::default(),
            plan: Mutex::new(plan),
            seen: Mutex::default(),
            blob_bytes: AtomicU64::new(0),
            upload_bytes: AtomicU64::new(0),
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

    /// Sends later requests to another upstream (`host:port`), so one address can stand for
    /// one registry, then another.
    pub fn set_upstream(&self, upstream: &str) {
        *self.shared.upstream.lock().expect("upstream") = upstream.to_string();
    }

    /// Serves the upstream's repositories below `prefix` as if they were at the top
    /// (`/v2/a/b/…` is asked upstream as `/v2/PREFIX/a/b/…`), so one name can stand for a
    /// fresh place in a shared registry.
    pub fn set_upstream_prefix(&self, prefix: Option<&str>) {
        *self.shared.prefix.lock().expect("prefix") = prefix.map(str::to_string);
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

    /// Upload body bytes received from clients so far (forwarded or not).
    pub fn upload_bytes(&self) -> u64 {
        self.shared.upload_bytes.load(Ordering::SeqCst)
    }

    /// Forgets the requests seen and the bytes counted.
    pub fn reset_counters(&self) {
        self.shared.seen.lock().expect("seen").clear();
        self.shared.blob_bytes.store(0, Ordering::SeqCst);
        self.shared.upload_bytes.store(0, Ordering::SeqCst);
    }
}

struct Request {
    method: String,
    target: String,
    headers: Headers,
    /// The body, read whole before anything is forwarded.
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    fn is_blob(&self) -> bool {
        self.target.contains("/blobs/") && !self.is_upload()
    }

    fn is_upload(&self) -> bool {
        self.target.contains("/blobs/uploads/")
    }

    fn content_length(&self) -> u64 {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
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
        let mut req = Request {
            method: parts.next().unwrap_or("GET").to_string(),
            target: parts.next().unwrap_or("/").to_string(),
            headers,
            body: Vec::new(),
        };
        let length = req.content_length();
        let later_chunk = req.method == "PATCH"
            && req
                .header("content-range")
                .and_then(|r| {
                    r.split('-')
                        .next()
                        .and_then(|a| a.trim().parse::<u64>().ok())
                })
                .is_some_and(|start| start > 0);
        let (cut, partial) = if req.is_upload() && later_chunk && length > 0 {
            let mut plan = shared.plan.lock().expect("plan");
            (take(&mut plan.cut_upload_after), plan.cut_forwards_partial)
        } else {
            (None, false)
        };
        let want = cut.map_or(length, |c| c.min(length));
        (&mut reader).take(want).read_to_end(&mut req.body)?;
        if req.is_upload() {
            shared
                .upload_bytes
                .fetch_add(req.body.len() as u64, Ordering::SeqCst);
        }
        if cut.is_some_and(|c| c < length) {
            // The connection drops partway through the body: a buffering proxy never passes
            // the request on; one that streams has passed on what it read.
            record(shared, &req, 0);
            if partial {
                forward_partial(&req, length, shared);
            }
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
        if !handle(&req, &mut writer, shared)? {
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
    Ok(())
}

fn record(shared: &Shared, req: &Request, status: u16) {
    shared.seen.lock().expect("seen").push(Seen {
        method: req.method.clone(),
        path: req.target.clone(),
        authorization: req.header("authorization"),
        range: req.header("range"),
        status,
        body_bytes: req.body.len() as u64,
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
        if req.is_upload() {
            take3(&mut plan.upload_status)
        } else if req.is_blob() {
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
        let body: &[u8] = match status {
            413 => br#"{"errors":[{"code":"SIZE_INVALID","message":"request entity too large"}]}"#,
            _ => br#"{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}"#,
        };
        respond(w, status, &headers, body)?;
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

/// The request target upstream: repositories below the prefix, if one is set.
fn upstream_target(target: &str, prefix: Option<&str>) -> String {
    match (prefix, target.strip_prefix("/v2/")) {
        (Some(p), Some(rest)) if !rest.is_empty() && !rest.starts_with('_') => {
            format!("/v2/{p}/{rest}")
        }
        _ => target.to_string(),
    }
}

/// Sends `req` upstream announcing `length` body bytes, sends what was read, and hangs up.
fn forward_partial(req: &Request, length: u64, shared: &Shared) {
    let upstream = shared.upstream.lock().expect("upstream").clone();
    let prefix = shared.prefix.lock().expect("prefix").clone();
    let Ok(mut up) = TcpStream::connect(&upstream) else {
        return;
    };
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\n",
        req.method,
        upstream_target(&req.target, prefix.as_deref())
    );
    for (k, v) in &req.headers {
        if !matches!(
            k.to_ascii_lowercase().as_str(),
            "host" | "connection" | "content-length"
        ) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str(&format!("Content-Length: {length}\r\n\r\n"));
    let _ = up.write_all(head.as_bytes());
    let _ = up.write_all(&req.body);
    let _ = up.flush();
    // Give the registry a moment to take in what arrived before the connection drops.
    std::thread::sleep(Duration::from_millis(200));
    let _ = up.shutdown(Shutdown::Both);
}

/// Asks the upstream for its `/v2/` challenge, to answer revoked tokens like it would.
fn upstream_challenge(shared: &Shared) -> Option<String> {
    let upstream = shared.upstream.lock().expect("upstream").clone();
    let mut s = TcpStream::connect(&upstream).ok()?;
    s.write_all(
        format!("GET /v2/ HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\n\r\n").as_bytes(),
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
    let upstream = shared.upstream.lock().expect("upstream").clone();
    let prefix = shared.prefix.lock().expect("prefix").clone();
    let target = upstream_target(&req.target, prefix.as_deref());
    let mut up = TcpStream::connect(&upstream)?;
    let mut head = format!(
        "{} {target} HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\n",
        req.method
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
    up.write_all(&req.body)?;
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
        // Upload locations name the registry's own address: point them back at the proxy, as
        // a reverse proxy does (nginx's proxy_redirect).
        let v = match k.eq_ignore_ascii_case("location") {
            true => {
                let v = v.replace(&format!("//{upstream}/"), &format!("//{}/", shared.addr));
                match &prefix {
                    Some(p) => v.replace(&format!("/v2/{p}/"), "/v2/"),
                    None => v,
                }
            }
            false => v.clone(),
        };
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

//! A tiny HTTP server for what no real registry will do: lie about digests, serve schema1,
//! drop connections on purpose. Used in addition to the real registry, never instead of it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One canned answer.
#[derive(Clone, Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A 200 with a content type.
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Reply {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }
}

/// A request the server saw.
#[derive(Clone, Debug)]
#[allow(dead_code)] // read by the fault-injection tests
pub struct Seen {
    /// Request path.
    pub path: String,
    /// Request headers, names lower-cased.
    pub headers: HashMap<String, String>,
}

/// The running server.
pub struct FakeRegistry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    /// Every request, in order.
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeRegistry {
    /// Starts a server answering `/v2/` with 200 and every other path from `set`.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake registry");
        let addr = listener.local_addr().expect("addr").to_string();
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        routes
            .lock()
            .unwrap()
            .insert("/v2/".into(), Reply::ok("application/json", "{}"));
        let (r, s) = (routes.clone(), seen.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, s) = (r.clone(), s.clone());
                std::thread::spawn(move || serve(stream, &r, &s));
            }
        });
        FakeRegistry { addr, routes, seen }
    }

    /// Answers `path` with `reply`.
    pub fn set(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.into(), reply);
    }
}

fn serve(stream: TcpStream, routes: &Mutex<HashMap<String, Reply>>, seen: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        seen.lock().unwrap().push(Seen {
            path: path.clone(),
            headers,
        });
        let reply = routes.lock().unwrap().get(&path).cloned().unwrap_or(Reply {
            status: 404,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"not here"}]}"#.to_vec(),
        });
        let mut head = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
            reply.status,
            reply.body.len()
        );
        for (k, v) in &reply.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&reply.body).is_err() {
            return;
        }
    }
}

//! A client for the OCI distribution API of one registry host.
//!
//! Every request goes through [`Registry::call`] (or, for uploads that recover on their own,
//! [`Registry::send_once`]), which pings `/v2/` once to learn the scheme and the authentication
//! challenge, attaches a token for the request's scopes (pull, or pull and push) or Basic
//! credentials, follows redirects itself so that the registry's `Authorization` never leaves
//! its host, and retries what is worth retrying. Both `ferry fetch` and `ferry push` use it.

pub mod api_error;
mod auth;
mod catalog;
pub mod challenge;
mod manifest;
mod request;
mod upload;
mod url;

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use ureq::http::{Method, Response};
use ureq::{Agent, Body};

use self::api_error::ApiError;
pub use self::auth::Scope;
use self::challenge::Challenge;
pub use self::manifest::FetchedManifest;
pub use self::request::{Failure, OpenBody, Request, SendBody};
pub use self::upload::{Started, Upload};
use crate::credentials::Credentials;
use crate::error::FetchError;
use crate::http::agent::Agents;
use crate::http::retry::{self, RetryPolicy};
use crate::reporter::Reporter;

/// Settings shared by every registry of one run.
pub struct Shared {
    /// The HTTP agents.
    pub agents: Agents,
    /// Hosts (`host` or `host:port`) where plain HTTP and unverified TLS are allowed.
    pub insecure: Vec<String>,
    /// Retry policy for every request.
    pub retry: RetryPolicy,
    /// Where retry notices go.
    pub reporter: Arc<dyn Reporter>,
}

impl Shared {
    /// Whether `host_port` was named insecure (with or without its port).
    pub fn is_insecure(&self, host_port: &str) -> bool {
        let host = url::hostname(host_port);
        self.insecure
            .iter()
            .any(|i| i == host_port || (!i.contains(':') && i == host))
    }

    fn agent_for(&self, host_port: &str) -> &Agent {
        if self.is_insecure(host_port) {
            &self.agents.insecure
        } else {
            &self.agents.verified
        }
    }
}

/// What the `/v2/` ping taught us about a registry.
#[derive(Debug, Clone)]
struct Ping {
    /// `https://host[:port]` or, for insecure hosts that speak plain HTTP, `http://…`.
    base: String,
    /// How the registry wants to be authenticated, if at all.
    challenge: Option<Challenge>,
}

/// One registry host.
pub struct Registry {
    host: String,
    shared: Arc<Shared>,
    credentials: Option<Credentials>,
    ping: Mutex<Option<Ping>>,
    tokens: Mutex<HashMap<String, auth::Token>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("host", &self.host)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A client for `host` (`host[:port]`, as in image references).
    pub fn new(host: &str, shared: Arc<Shared>, credentials: Option<Credentials>) -> Self {
        Registry {
            host: host.to_string(),
            shared,
            credentials,
            ping: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The host this client talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Sends `GET path` (which starts with `/v2/`) for `repo`, with `headers`.
    ///
    /// Returns the response once it is a success (2xx); errors are retried as the policy says
    /// and then reported as [`FetchError`]s naming `what`.
    pub fn get(
        &self,
        what: &str,
        repo: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response<Body>, FetchError> {
        self.call(&Request {
            headers: headers.to_vec(),
            ..Request::new(Method::GET, what, path, vec![Scope::pull(repo)])
        })
    }

    /// Pings `/v2/` once per run to learn the scheme and the authentication challenge.
    fn ping(&self) -> Result<Ping, FetchError> {
        let mut cached = self.ping.lock().expect("ping lock");
        if let Some(p) = cached.as_ref() {
            return Ok(p.clone());
        }
        let https = format!("https://{}", self.host);
        let insecure = self.shared.is_insecure(&self.host);
        // An insecure registry may speak plain HTTP: like Docker, try HTTPS once, then HTTP.
        // Retrying HTTPS against a plain-HTTP server would only add backoff delays.
        let result = match self.ping_at(
            &https,
            if insecure {
                1
            } else {
                self.shared.retry.attempts
            },
        ) {
            Ok(p) => Ok(p),
            Err(
                FetchError::Tls { .. } | FetchError::Connect { .. } | FetchError::Transfer { .. },
            ) if insecure => {
                self.ping_at(&format!("http://{}", self.host), self.shared.retry.attempts)
            }
            Err(e) => Err(e),
        };
        let p = result?;
        tracing::debug!(host = %self.host, base = %p.base, challenge = ?p.challenge, "pinged registry");
        *cached = Some(p.clone());
        Ok(p)
    }

    fn ping_at(&self, base: &str, attempts: u32) -> Result<Ping, FetchError> {
        let what = "registry API check (/v2/)";
        let policy = RetryPolicy {
            attempts,
            ..self.shared.retry.clone()
        };
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            match self.send(
                &Method::GET,
                &format!("{base}/v2/"),
                None,
                &[],
                &SendBody::Empty,
            ) {
                Ok((r, _))
                    if retry::retryable_status(r.status().as_u16())
                        && attempt < policy.attempts =>
                {
                    let after =
                        header(&r, "retry-after").and_then(|v| retry::parse_retry_after(&v));
                    let delay = policy.delay(attempt, after);
                    self.shared.reporter.on_retry(
                        what,
                        attempt,
                        delay,
                        &format!("HTTP {}", r.status().as_u16()),
                    );
                    std::thread::sleep(delay);
                }
                Ok((r, _)) => break r,
                Err(e) if transport_retryable(&e) && attempt < policy.attempts => {
                    let delay = policy.delay(attempt, None);
                    self.shared
                        .reporter
                        .on_retry(what, attempt, delay, &e.to_string());
                    std::thread::sleep(delay);
                }
                Err(e) => return Err(self.transport_error(what, attempt, e)),
            }
        };
        let status = resp.status().as_u16();
        let challenges: Vec<String> = resp
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        let challenge =
            challenge::parse(&challenges.iter().map(String::as_str).collect::<Vec<_>>())
                .into_iter()
                .next();
        match status {
            200..=299 => Ok(Ping {
                base: base.to_string(),
                challenge: None,
            }),
            401 if challenge.is_some() => Ok(Ping {
                base: base.to_string(),
                challenge,
            }),
            _ => Err(FetchError::Registry {
                what: what.to_string(),
                host: self.host.clone(),
                source: ApiError::from_response(status, &read_error_body(resp)),
            }),
        }
    }

    fn transport_error(&self, what: &str, attempts: u32, e: ureq::Error) -> FetchError {
        let host = self.host.clone();
        match &e {
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) => FetchError::Tls { host, source: e },
            ureq::Error::Io(io) if is_tls_io(io) => FetchError::Tls { host, source: e },
            ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => {
                FetchError::Connect { host, source: e }
            }
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                FetchError::Connect { host, source: e }
            }
            _ => FetchError::Transfer {
                what: what.to_string(),
                host,
                attempts,
                source: Box::new(e),
            },
        }
    }
}

/// Whether a transport error may go away on its own (a dropped or stalled connection).
pub(crate) fn transport_retryable(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Io(io) => !is_tls_io(io) && io.kind() != std::io::ErrorKind::ConnectionRefused,
        ureq::Error::Timeout(_) | ureq::Error::Protocol(_) => true,
        _ => false,
    }
}

/// rustls reports handshake failures as I/O errors wrapping its own error type.
fn is_tls_io(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| {
        inner.downcast_ref::<rustls::Error>().is_some() || inner.to_string().contains("certificate")
    })
}

/// A response header as text.
pub(crate) fn header(resp: &Response<Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Reads at most 64 KiB of an error response (enough for any JSON envelope).
fn read_error_body(resp: Response<Body>) -> Vec<u8> {
    let mut body = Vec::new();
    let _ = resp
        .into_body()
        .into_reader()
        .take(64 * 1024)
        .read_to_end(&mut body);
    body
}

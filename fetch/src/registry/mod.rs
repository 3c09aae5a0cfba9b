//! A client for the OCI distribution API of one registry host.
//!
//! Every request goes through [`Registry::get`], which pings `/v2/` once to learn the scheme and
//! the authentication challenge, attaches a token for the repository's pull scope (or Basic
//! credentials), follows redirects itself so that the registry's `Authorization` never leaves
//! its host, and retries what is worth retrying.

pub mod api_error;
mod auth;
pub mod challenge;
mod manifest;
mod url;

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ureq::http::Response;
use ureq::{Agent, Body};

use self::api_error::ApiError;
use self::challenge::Challenge;
pub use self::manifest::FetchedManifest;
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

/// How a request failed, before it is turned into a [`FetchError`] with context.
enum Failure {
    /// The registry answered with a status that is not success.
    Status {
        api: ApiError,
        retry_after: Option<Duration>,
        /// The answer came from a host the registry redirected to (a CDN, a presigned URL).
        foreign: bool,
    },
    /// The transport failed.
    Transport(ureq::Error),
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
        let ping = self.ping()?;
        let url = format!("{}{}", ping.base, path);
        let policy = &self.shared.retry;
        let mut attempt = 0;
        let mut refreshed = false;
        loop {
            attempt += 1;
            let auth = self.authorization(&ping, repo)?;
            let failure = match self.send(&url, auth.as_deref(), headers) {
                Ok((resp, foreign)) => {
                    let status = resp.status().as_u16();
                    if (200..300).contains(&status) {
                        return Ok(resp);
                    }
                    if status == 401 && !refreshed && !foreign {
                        // An expired or revoked token: get a fresh one, once, without counting
                        // it as a failed attempt.
                        refreshed = true;
                        attempt -= 1;
                        self.invalidate_token(repo);
                        continue;
                    }
                    let retry_after =
                        header(&resp, "retry-after").and_then(|v| retry::parse_retry_after(&v));
                    let body = read_error_body(resp);
                    Failure::Status {
                        api: ApiError::from_response(status, &body),
                        retry_after,
                        foreign,
                    }
                }
                Err(e) => Failure::Transport(e),
            };
            let (retryable, retry_after, reason) = match &failure {
                Failure::Status {
                    api,
                    retry_after,
                    foreign,
                } => (
                    retry::retryable_status(api.status)
                        // A presigned URL that expired: ask the registry for a fresh one.
                        || (*foreign && matches!(api.status, 400 | 403 | 404)),
                    *retry_after,
                    api.to_string(),
                ),
                Failure::Transport(e) => (transport_retryable(e), None, e.to_string()),
            };
            if retryable && attempt < policy.attempts {
                let delay = policy.delay(attempt, retry_after);
                self.shared.reporter.on_retry(what, attempt, delay, &reason);
                tracing::debug!(what, attempt, ?delay, reason, "retrying");
                std::thread::sleep(delay);
                continue;
            }
            return Err(match failure {
                Failure::Status { api, .. } if !retryable => FetchError::Registry {
                    what: what.to_string(),
                    host: self.host.clone(),
                    source: api,
                },
                Failure::Status { api, .. } => FetchError::Transfer {
                    what: what.to_string(),
                    host: self.host.clone(),
                    attempts: attempt,
                    source: Box::new(api),
                },
                Failure::Transport(e) => self.transport_error(what, attempt, e),
            });
        }
    }

    /// Sends one request, following redirects. The `Authorization` header goes only to the
    /// registry's own origin: a CDN or presigned S3 URL must not see the registry's credentials
    /// (moby/moby#33707), and S3 rejects requests that carry two kinds of auth.
    ///
    /// Returns the final response and whether it came from another origin.
    fn send(
        &self,
        url: &str,
        auth: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<(Response<Body>, bool), ureq::Error> {
        let origin = url::origin(url).to_string();
        let mut current = url.to_string();
        for _ in 0..=10 {
            let host = url::host_port(&current);
            let mut req = self.shared.agent_for(host).get(&current);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let same_origin = url::origin(&current) == origin;
            if let Some(a) = auth
                && same_origin
            {
                req = req.header("Authorization", a);
            }
            tracing::debug!(url = %url::redacted(&current), auth = auth.is_some() && same_origin, "GET");
            let resp = req.call()?;
            let status = resp.status().as_u16();
            if matches!(status, 301 | 302 | 303 | 307 | 308)
                && let Some(location) = header(&resp, "location")
            {
                let next = url::resolve(&current, &location);
                if current.starts_with("https://")
                    && next.starts_with("http://")
                    && !self.shared.is_insecure(url::host_port(&next))
                {
                    return Err(ureq::Error::BadUri(format!(
                        "refusing redirect from HTTPS to plain HTTP ({})",
                        url::host_port(&next)
                    )));
                }
                current = next;
                continue;
            }
            return Ok((resp, !same_origin));
        }
        Err(ureq::Error::TooManyRedirects)
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
            match self.send(&format!("{base}/v2/"), None, &[]) {
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

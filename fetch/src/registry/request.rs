//! One request to a registry: its method, target, scopes, headers and body; sent once with
//! authentication ([`Registry::send_once`]) or with retries ([`Registry::call`]).

use std::io::Read;
use std::time::Duration;

use ureq::http::{Method, Response};
use ureq::{Body, SendBody as UreqBody};

use super::api_error::ApiError;
use super::auth::Scope;
use super::{Registry, header, read_error_body, transport_retryable, url};
use crate::error::FetchError;
use crate::http::retry;

/// Opens a request body again for each try: its bytes and their length.
pub type OpenBody<'a> =
    dyn Fn() -> std::io::Result<(Box<dyn Read + Send + 'static>, u64)> + Sync + 'a;

/// What a request sends.
pub enum SendBody<'a> {
    /// Nothing.
    Empty,
    /// Bytes in memory (manifests).
    Bytes(&'a [u8]),
    /// A stream that can be opened again for a retry (blob uploads).
    Stream(&'a OpenBody<'a>),
}

/// One request to a registry.
pub struct Request<'a> {
    /// The HTTP method.
    pub method: Method,
    /// What is asked for, for messages (`manifest ferry/busybox:1`, `blob sha256:…`).
    pub what: &'a str,
    /// A `/v2/…` path, or an absolute URL the registry handed out (an upload's `Location`).
    pub target: &'a str,
    /// What the request may do; decides the token.
    pub scopes: Vec<Scope>,
    /// Extra headers.
    pub headers: Vec<(&'a str, &'a str)>,
    /// The body.
    pub body: SendBody<'a>,
}

impl<'a> Request<'a> {
    /// A request without extra headers or body.
    pub fn new(method: Method, what: &'a str, target: &'a str, scopes: Vec<Scope>) -> Self {
        Request {
            method,
            what,
            target,
            scopes,
            headers: Vec::new(),
            body: SendBody::Empty,
        }
    }
}

/// How one try failed, before it is turned into a [`FetchError`] with context.
pub enum Failure {
    /// The registry answered with a status that is not success.
    Status {
        /// The registry's answer.
        api: ApiError,
        /// Its `Retry-After`, if any.
        retry_after: Option<Duration>,
        /// The answer came from a host the registry redirected to (a CDN, a presigned URL).
        foreign: bool,
    },
    /// The transport failed (or the body could not be read).
    Transport(ureq::Error),
}

impl Failure {
    /// Whether another try may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Failure::Status { api, foreign, .. } => {
                retry::retryable_status(api.status)
                    // A presigned URL that expired: ask the registry for a fresh one.
                    || (*foreign && matches!(api.status, 400 | 403 | 404))
            }
            Failure::Transport(e) => transport_retryable(e),
        }
    }

    /// The failure in one line, for retry notices.
    pub fn reason(&self) -> String {
        match self {
            Failure::Status { api, .. } => api.to_string(),
            Failure::Transport(e) => e.to_string(),
        }
    }
}

impl Registry {
    /// Sends `req`, retrying what is worth retrying, and returns the response once it is a
    /// success (2xx); errors are reported as [`FetchError`]s naming `req.what`.
    pub fn call(&self, req: &Request<'_>) -> Result<Response<Body>, FetchError> {
        let policy = &self.shared.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.send_once(req)? {
                Ok(resp) => return Ok(resp),
                Err(f) => f,
            };
            let retryable = failure.retryable();
            if retryable && attempt < policy.attempts {
                let retry_after = match &failure {
                    Failure::Status { retry_after, .. } => *retry_after,
                    Failure::Transport(_) => None,
                };
                let delay = policy.delay(attempt, retry_after);
                let reason = failure.reason();
                self.shared
                    .reporter
                    .on_retry(req.what, attempt, delay, &reason);
                tracing::debug!(what = req.what, attempt, ?delay, reason, "retrying");
                std::thread::sleep(delay);
                continue;
            }
            return Err(self.failure_error(req.what, attempt, failure));
        }
    }

    /// Sends `req` once (after a fresh token when the registry says the one used expired).
    ///
    /// The outer error is one no retry can fix (ping, authentication); the inner one is this
    /// try's failure, for callers that recover on their own (uploads ask where they stand).
    pub fn send_once(
        &self,
        req: &Request<'_>,
    ) -> Result<Result<Response<Body>, Failure>, FetchError> {
        let ping = self.ping()?;
        let url = if req.target.starts_with("http://") || req.target.starts_with("https://") {
            req.target.to_string()
        } else {
            format!("{}{}", ping.base, req.target)
        };
        // A `Location` may name another host (a load balancer's idea of the registry): the
        // registry's credentials go only to the registry's own origin.
        let ours = url::origin(&url) == url::origin(&ping.base);
        let mut refreshed = false;
        loop {
            let auth = match ours {
                true => self.authorization(&ping, &req.scopes)?,
                false => None,
            };
            return Ok(
                match self.send(&req.method, &url, auth.as_deref(), &req.headers, &req.body) {
                    Ok((resp, foreign)) => {
                        let status = resp.status().as_u16();
                        if (200..300).contains(&status) {
                            Ok(resp)
                        } else if status == 401 && !refreshed && !foreign {
                            // An expired or revoked token: get a fresh one, once.
                            refreshed = true;
                            self.invalidate_token(&req.scopes);
                            continue;
                        } else {
                            let retry_after = header(&resp, "retry-after")
                                .and_then(|v| retry::parse_retry_after(&v));
                            let body = read_error_body(resp);
                            Err(Failure::Status {
                                api: ApiError::from_response(status, &body),
                                retry_after,
                                foreign,
                            })
                        }
                    }
                    Err(e) => Err(Failure::Transport(e)),
                },
            );
        }
    }

    /// The error for a request that failed for good.
    pub(crate) fn failure_error(&self, what: &str, attempts: u32, failure: Failure) -> FetchError {
        let retryable = failure.retryable();
        match failure {
            Failure::Status { api, .. } if !retryable => FetchError::Registry {
                what: what.to_string(),
                host: self.host.clone(),
                source: api,
            },
            Failure::Status { api, .. } => FetchError::Transfer {
                what: what.to_string(),
                host: self.host.clone(),
                attempts,
                source: Box::new(api),
            },
            Failure::Transport(e) => self.transport_error(what, attempts, e),
        }
    }

    /// Sends one request, following redirects of `GET` and `HEAD`. The `Authorization` header
    /// goes only to the registry's own origin: a CDN or presigned S3 URL must not see the
    /// registry's credentials (moby/moby#33707), and S3 rejects requests that carry two kinds
    /// of auth.
    ///
    /// Returns the final response and whether it came from another origin.
    pub(super) fn send(
        &self,
        method: &Method,
        url: &str,
        auth: Option<&str>,
        headers: &[(&str, &str)],
        body: &SendBody<'_>,
    ) -> Result<(Response<Body>, bool), ureq::Error> {
        let origin = url::origin(url).to_string();
        let follow = matches!(*method, Method::GET | Method::HEAD);
        let mut current = url.to_string();
        for _ in 0..=10 {
            let host = url::host_port(&current);
            let mut req = ureq::http::Request::builder()
                .method(method.clone())
                .uri(&current);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let same_origin = url::origin(&current) == origin;
            if let Some(a) = auth
                && same_origin
            {
                req = req.header("Authorization", a);
            }
            tracing::debug!(%method, url = %url::redacted(&current), auth = auth.is_some() && same_origin, "request");
            let agent = self.shared.agent_for(host);
            let resp = match body {
                SendBody::Empty if follow => agent.run(req.body(())?)?,
                // Content-Length: 0, which registries want on a bodiless PUT or POST.
                SendBody::Empty => agent.run(req.body(&[][..])?)?,
                SendBody::Bytes(b) => agent.run(req.body(*b)?)?,
                SendBody::Stream(open) => {
                    let (reader, len) = open().map_err(ureq::Error::Io)?;
                    let req = req.header("Content-Length", len.to_string());
                    agent.run(req.body(UreqBody::from_owned_reader(reader))?)?
                }
            };
            let status = resp.status().as_u16();
            if follow
                && matches!(status, 301 | 302 | 303 | 307 | 308)
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
}

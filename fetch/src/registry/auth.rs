//! Tokens: one per set of scopes (a repository's pull, or pull and push, or push plus pull on
//! the repository a blob is mounted from), fetched once and shared by every parallel transfer,
//! and fetched again when it expires mid-way.

use std::io::Read;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::challenge::Challenge;
use super::{Ping, Registry, url};
use crate::credentials::Secret;
use crate::error::FetchError;

/// What a request may do, as a token service's scope (`repository:NAME:pull,push`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope(String);

impl Scope {
    /// Reading a repository.
    pub fn pull(repo: &str) -> Scope {
        Scope(format!("repository:{repo}:pull"))
    }

    /// Reading and writing a repository.
    pub fn push(repo: &str) -> Scope {
        Scope(format!("repository:{repo}:pull,push"))
    }

    /// Listing the registry's repositories.
    pub fn catalog() -> Scope {
        Scope("registry:catalog:*".into())
    }

    /// The scope as the token service spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A bearer token and when to stop using it.
#[derive(Debug, Clone)]
pub(super) struct Token {
    value: Secret,
    renew_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Registry {
    /// The `Authorization` header for a request needing `scopes`, if the registry wants one.
    pub(super) fn authorization(
        &self,
        ping: &Ping,
        scopes: &[Scope],
    ) -> Result<Option<String>, FetchError> {
        match &ping.challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.credentials.as_ref().map(|c| c.basic_header())),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let key = token_key(scopes);
                // Held across the token request, so parallel transfers wait for one token
                // instead of each asking for their own.
                let mut tokens = self.tokens.lock().expect("token lock");
                if let Some(t) = tokens.get(&key)
                    && Instant::now() < t.renew_at
                {
                    return Ok(Some(format!("Bearer {}", t.value.expose())));
                }
                let token = self.request_token(ping, realm, service.as_deref(), scopes)?;
                let header = format!("Bearer {}", token.value.expose());
                tokens.insert(key, token);
                Ok(Some(header))
            }
        }
    }

    /// Forgets the token for `scopes`, so the next request gets a fresh one.
    pub(super) fn invalidate_token(&self, scopes: &[Scope]) {
        self.tokens
            .lock()
            .expect("token lock")
            .remove(&token_key(scopes));
    }

    fn request_token(
        &self,
        ping: &Ping,
        realm: &str,
        service: Option<&str>,
        scopes: &[Scope],
    ) -> Result<Token, FetchError> {
        let auth_error = |reason: String| FetchError::Auth {
            host: self.host.clone(),
            reason,
        };
        let mut query = Vec::new();
        if let Some(s) = service {
            query.push(format!("service={}", url::encode(s)));
        }
        for scope in scopes {
            query.push(format!("scope={}", url::encode(scope.as_str())));
        }
        let scope = token_key(scopes);
        let creds = self
            .credentials
            .as_ref()
            .filter(|_| self.may_send_credentials_to(ping, realm));
        if let Some(c) = creds {
            query.push(format!("account={}", url::encode(&c.username)));
        }
        let sep = if realm.contains('?') { '&' } else { '?' };
        let token_url = format!("{realm}{sep}{}", query.join("&"));
        let host = url::host_port(realm);
        let mut req = self.shared.agent_for(host).get(&token_url);
        if let Some(c) = creds {
            req = req.header("Authorization", c.basic_header());
        }
        tracing::debug!(realm = %url::redacted(realm), %scope, with_credentials = creds.is_some(), "requesting token");
        let started = Instant::now();
        let resp = req
            .call()
            .map_err(|e| auth_error(format!("token service {host} unreachable: {e}")))?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        resp.into_body()
            .into_reader()
            .take(1024 * 1024)
            .read_to_end(&mut body)
            .map_err(|e| auth_error(format!("reading the token from {host}: {e}")))?;
        match status {
            200 => {}
            401 | 403 if creds.is_some() => {
                return Err(auth_error(format!(
                    "token service {host} rejected the credentials for user `{}` (HTTP {status})",
                    creds.map(|c| c.username.as_str()).unwrap_or_default()
                )));
            }
            401 | 403 => {
                return Err(auth_error(format!(
                    "token service {host} refused anonymous access to {scope} (HTTP {status}); pass --username and --password-stdin"
                )));
            }
            _ => {
                return Err(auth_error(format!(
                    "token service {host} answered HTTP {status}"
                )));
            }
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            auth_error(format!(
                "token service {host} sent an unreadable answer: {e}"
            ))
        })?;
        let value = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| auth_error(format!("token service {host} sent no token")))?;
        // The spec says to assume 60 s when expires_in is missing or smaller. Renew a little
        // early so a request never leaves with a token about to expire.
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(60).max(60));
        let margin = (lifetime / 10).min(Duration::from_secs(30));
        Ok(Token {
            value: Secret::new(value),
            renew_at: started + lifetime - margin,
        })
    }

    /// Credentials go to the token realm only over HTTPS, or in clear text to the registry's
    /// own host when the user explicitly named that host insecure.
    fn may_send_credentials_to(&self, ping: &Ping, realm: &str) -> bool {
        if realm.starts_with("https://") {
            return true;
        }
        let realm_host = url::hostname(url::host_port(realm));
        ping.base.starts_with("http://")
            && self.shared.is_insecure(&self.host)
            && realm_host == url::hostname(&self.host)
    }
}

/// The cache key of a token: its scopes, in the order asked.
fn token_key(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(Scope::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

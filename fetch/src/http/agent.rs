//! The HTTP agents: one that verifies TLS against the operating system's trust store, and one
//! for hosts the user named with `--insecure-registry`.
//!
//! Redirects are never followed by the agent: the registry client follows them itself, so it
//! decides which hop may carry the registry's `Authorization` header (none that leaves the host).
//! Proxies come from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` (either case).

use std::path::PathBuf;
use std::time::Duration;

use ureq::Agent;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::error::FetchError;

/// Connection settings shared by all registries of one run.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Parallel connections wanted per host; the idle pool keeps that many.
    pub connections_per_host: usize,
    /// Give up connecting after this long.
    pub connect_timeout: Duration,
    /// A read that stalls this long counts as a dropped connection (and is resumed).
    pub read_timeout: Duration,
    /// PEM files of extra certificate authorities to trust (`--ca-cert`), on top of the
    /// operating system's.
    pub ca_certs: Vec<PathBuf>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            connections_per_host: 8,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            ca_certs: Vec::new(),
        }
    }
}

/// The two agents of a run.
#[derive(Debug, Clone)]
pub struct Agents {
    /// Verifies certificates (the default for every host).
    pub verified: Agent,
    /// Skips certificate checks; used only for hosts named insecure.
    pub insecure: Agent,
}

impl Agents {
    /// Builds both agents.
    ///
    /// Certificates are checked by the operating system's verifier (so a corporate root CA
    /// installed in Windows or in `/etc/ssl/certs` is trusted), unless `--ca-cert` files are
    /// given: then the system's roots plus those files.
    pub fn new(opts: &AgentOptions) -> Result<Self, FetchError> {
        let roots = if opts.ca_certs.is_empty() {
            RootCerts::PlatformVerifier
        } else {
            let mut certs = system_roots();
            for path in &opts.ca_certs {
                certs.extend(read_pem_certs(path)?);
            }
            RootCerts::from(certs)
        };
        Ok(Agents {
            verified: build(opts, TlsConfig::builder().root_certs(roots).build()),
            insecure: build(
                opts,
                TlsConfig::builder().disable_verification(true).build(),
            ),
        })
    }
}

/// The operating system's trusted roots (Windows certificate store, macOS keychain, or the
/// distribution's bundle on Linux); an unreadable part of the store contributes nothing.
fn system_roots() -> Vec<Certificate<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "skipping part of the system trust store");
    }
    found
        .certs
        .into_iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect()
}

/// Every certificate in a PEM file; a file without any is an error, not a silent no-op.
fn read_pem_certs(path: &PathBuf) -> Result<Vec<Certificate<'static>>, FetchError> {
    let bytes = std::fs::read(path).map_err(|source| FetchError::Io {
        action: "read CA certificate",
        path: path.clone(),
        source,
    })?;
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&bytes)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(FetchError::Invalid {
            what: format!("CA certificate file `{}`", path.display()),
            source: "no PEM certificate in it".into(),
        });
    }
    Ok(certs)
}

fn build(opts: &AgentOptions, tls: TlsConfig) -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .tls_config(tls)
        .proxy(ureq::Proxy::try_from_env())
        .timeout_connect(Some(opts.connect_timeout))
        .timeout_per_read(Some(opts.read_timeout))
        .timeout_per_write(Some(opts.read_timeout))
        .max_idle_connections(opts.connections_per_host * 4)
        .max_idle_connections_per_host(opts.connections_per_host)
        .max_idle_age(Duration::from_secs(60))
        // Blobs must arrive byte for byte as the registry stores them.
        .accept_encoding("")
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

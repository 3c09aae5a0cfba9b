//! The HTTP agents: one that verifies TLS against the operating system's trust store, and one
//! for hosts the user named with `--insecure-registry`.
//!
//! Redirects are never followed by the agent: the registry client follows them itself, so it
//! decides which hop may carry the registry's `Authorization` header (none that leaves the host).
//! Proxies come from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` (either case).

use std::time::Duration;

use ureq::Agent;
use ureq::tls::{RootCerts, TlsConfig};

/// Connection settings shared by all registries of one run.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Parallel connections wanted per host; the idle pool keeps that many.
    pub connections_per_host: usize,
    /// Give up connecting after this long.
    pub connect_timeout: Duration,
    /// A read that stalls this long counts as a dropped connection (and is resumed).
    pub read_timeout: Duration,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            connections_per_host: 8,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
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
    pub fn new(opts: &AgentOptions) -> Self {
        Agents {
            verified: build(
                opts,
                TlsConfig::builder()
                    .root_certs(RootCerts::PlatformVerifier)
                    .build(),
            ),
            insecure: build(
                opts,
                TlsConfig::builder().disable_verification(true).build(),
            ),
        }
    }
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

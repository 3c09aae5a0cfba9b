//! The options every command that talks to a registry takes (`fetch`, `push`, `inventory
//! --registry`): TLS, credentials, retries, and how they become the client's settings.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use ferry_fetch::{AgentOptions, ClientOptions, Credentials, DockerConfig, RetryPolicy};

use crate::env;

/// Connection and credential options.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Allow plain HTTP and unverified TLS for this registry (repeatable). Never implied.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Also trust the certificate authorities in this PEM file (repeatable), on top of the
    /// system's trust store.
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,
    /// Registry user name (the password is read with --password-stdin, or FERRY_PASSWORD).
    /// Without it, credentials come from Docker's config.json (DOCKER_CONFIG, ~/.docker).
    #[arg(short, long, env = env::FERRY_USERNAME, value_name = "NAME")]
    pub username: Option<String>,
    /// Read the registry password (or token) from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// How many times a failed request or dropped transfer is tried in all.
    #[arg(long, default_value_t = 6, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub retries: u32,
}

impl RegistryArgs {
    /// Credentials from `--username` + `--password-stdin`, or FERRY_USERNAME/FERRY_PASSWORD.
    pub fn credentials(&self) -> anyhow::Result<Option<Credentials>> {
        let password = if self.password_stdin {
            if self.username.is_none() {
                bail!("--password-stdin needs --username");
            }
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the password from standard input")?;
            Some(s.trim_end_matches(['\n', '\r']).to_string())
        } else {
            std::env::var(env::FERRY_PASSWORD).ok()
        };
        match (&self.username, password) {
            (Some(u), Some(p)) => Ok(Some(Credentials::new(u.clone(), p))),
            (Some(_), None) => {
                bail!("--username needs a password: use --password-stdin or set FERRY_PASSWORD")
            }
            (None, _) => Ok(None),
        }
    }

    /// The HTTP client's settings.
    pub fn agent(&self) -> AgentOptions {
        AgentOptions {
            ca_certs: self
                .ca_certs
                .iter()
                .map(|p| crate::paths::native(p))
                .collect(),
            ..AgentOptions::default()
        }
    }

    /// Everything a registry client needs (reads the password when asked to).
    pub fn client(&self) -> anyhow::Result<ClientOptions> {
        Ok(ClientOptions {
            insecure_registries: self.insecure_registries.clone(),
            credentials: self.credentials()?,
            docker_config: Some(docker_config()?),
            retry: self.retry(),
            agent: self.agent(),
        })
    }

    /// The retry policy.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            attempts: self.retries,
            ..RetryPolicy::default()
        }
    }
}

/// Docker's client configuration, as the Docker client would find it.
pub fn docker_config() -> anyhow::Result<Arc<DockerConfig>> {
    Ok(Arc::new(
        match DockerConfig::path(std::env::var_os(env::DOCKER_CONFIG).map(PathBuf::from)) {
            Some(path) => DockerConfig::load(&path)?,
            None => DockerConfig::default(),
        },
    ))
}

/// ferry's cache directory (`FERRY_CACHE_DIR`, else the user's cache directory).
pub fn cache_dir() -> PathBuf {
    ferry_fetch::cache_dir(std::env::var_os(env::FERRY_CACHE_DIR).map(PathBuf::from))
}

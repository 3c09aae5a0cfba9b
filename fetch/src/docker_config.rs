//! Credentials from Docker's client configuration, so a `docker login` done once also serves
//! ferry: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
//!
//! `auths` entries (`auth` = base64 `user:password`, or `username`/`password`) are read
//! directly; `credHelpers` and `credsStore` name a `docker-credential-<helper>` program that is
//! asked with `get`, as the Docker client does.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::credentials::Credentials;
use crate::error::FetchError;

/// The key Docker Hub credentials are stored under.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The parts of `config.json` ferry uses.
#[derive(Default, Deserialize)]
pub struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl std::fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only the registry names: the entries hold secrets.
        f.debug_struct("DockerConfig")
            .field("auths", &self.auths.keys().collect::<Vec<_>>())
            .field("cred_helpers", &self.cred_helpers)
            .field("creds_store", &self.creds_store)
            .finish()
    }
}

impl DockerConfig {
    /// The config file Docker itself would read: in `docker_config_dir` (the `DOCKER_CONFIG`
    /// variable) or `~/.docker`.
    pub fn path(docker_config_dir: Option<PathBuf>) -> Option<PathBuf> {
        docker_config_dir
            .or_else(|| directories::BaseDirs::new().map(|b| b.home_dir().join(".docker")))
            .map(|d| d.join("config.json"))
    }

    /// Reads `path`; a missing file is an empty configuration, an unreadable one an error.
    pub fn load(path: &Path) -> Result<Self, FetchError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(FetchError::Io {
                    action: "read",
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes).map_err(|e| FetchError::Invalid {
            what: format!("Docker client configuration `{}`", path.display()),
            // serde's message may quote the file around the error: keep only the position.
            source: format!("JSON error at line {} column {}", e.line(), e.column()).into(),
        })
    }

    /// Credentials for `registry` (as written in references, e.g. `docker.io`, `ghcr.io`,
    /// `127.0.0.1:5000`), if the configuration has any.
    pub fn credentials_for(&self, registry: &str) -> Result<Option<Credentials>, FetchError> {
        let keys = lookup_keys(registry);
        if let Some(helper) = keys.iter().find_map(|k| self.cred_helpers.get(k)) {
            return ask_helper(helper, &keys[0]);
        }
        for key in &keys {
            if let Some(entry) = self.auths.get(key)
                && let Some(c) = entry.credentials()
            {
                return Ok(Some(c));
            }
        }
        if let Some(store) = &self.creds_store {
            return ask_helper(store, &keys[0]);
        }
        Ok(None)
    }
}

impl AuthEntry {
    fn credentials(&self) -> Option<Credentials> {
        if let Some(auth) = self.auth.as_deref().filter(|a| !a.is_empty()) {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (user, password) = text.split_once(':')?;
            return Some(Credentials::new(user, password));
        }
        match (&self.username, &self.password) {
            (Some(u), Some(p)) if !u.is_empty() => Some(Credentials::new(u.clone(), p.clone())),
            _ => None,
        }
    }
}

/// The keys a registry's entry may be stored under, the canonical one first.
fn lookup_keys(registry: &str) -> Vec<String> {
    if matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        return vec![
            DOCKER_HUB_KEY.to_string(),
            "index.docker.io".to_string(),
            "docker.io".to_string(),
            "registry-1.docker.io".to_string(),
        ];
    }
    vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v1/"),
        format!("https://{registry}/v2/"),
    ]
}

/// Runs `docker-credential-<helper> get` with the server URL on stdin, as the Docker client does.
fn ask_helper(helper: &str, server: &str) -> Result<Option<Credentials>, FetchError> {
    #[derive(Deserialize)]
    struct Reply {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let program = format!("docker-credential-{helper}");
    let helper_error = |reason: String| FetchError::Auth {
        host: server.to_string(),
        reason: format!("credential helper `{program}`: {reason}"),
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| helper_error(format!("cannot start it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| helper_error(format!("cannot read its answer: {e}")))?;
    if !out.status.success() {
        // "credentials not found" is how helpers say there is nothing stored.
        return Ok(None);
    }
    let reply: Reply = serde_json::from_slice(&out.stdout)
        .map_err(|_| helper_error("its answer is not the expected JSON".into()))?;
    if reply.username.is_empty() && reply.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials::new(reply.username, reply.secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> DockerConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn auth_field_is_base64_user_colon_password() {
        let c = config(r#"{"auths":{"reg.lan:5000":{"auth":"YW5uOnMzY3I6ZXQ="}}}"#);
        let creds = c.credentials_for("reg.lan:5000").unwrap().unwrap();
        assert_eq!(creds.username, "ann");
        assert_eq!(creds.password.expose(), "s3cr:et");
        assert!(c.credentials_for("other.lan").unwrap().is_none());
    }

    #[test]
    fn docker_hub_uses_the_v1_index_key() {
        let c = config(
            r#"{"auths":{"https://index.docker.io/v1/":{"username":"bob","password":"pw"}}}"#,
        );
        assert_eq!(
            c.credentials_for("docker.io").unwrap().unwrap().username,
            "bob"
        );
    }

    #[test]
    fn scheme_prefixed_keys_match() {
        let c = config(r#"{"auths":{"https://ghcr.io":{"auth":"dTpw"}}}"#);
        assert_eq!(c.credentials_for("ghcr.io").unwrap().unwrap().username, "u");
    }

    #[test]
    fn debug_shows_no_secrets() {
        let c = config(r#"{"auths":{"r":{"auth":"dTpzZWNyZXQ="}}}"#);
        assert!(!format!("{c:?}").contains("dTpzZWNyZXQ="));
    }

    #[test]
    fn missing_file_is_empty_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            DockerConfig::load(&dir.path().join("none.json"))
                .unwrap()
                .auths
                .is_empty()
        );
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"auths\": {\"r\": {\"auth\": \"c2VjcmV0\"").unwrap();
        let err = DockerConfig::load(&bad).unwrap_err().to_string();
        assert!(!err.contains("c2VjcmV0"), "{err}");
    }
}

//! What can go wrong while pushing, each error naming the object and the registry, with the
//! registry's answer in `source()` and a hint where one helps.

use ferry_oci::Digest;

use crate::error::FetchError;
use crate::registry::api_error::{ApiError, ErrorCode};

/// A failed push.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The registry refused a request (a manifest it does not accept, a size limit, no
    /// permission to push).
    #[error("{what} to {host}: registry refused the request")]
    Refused {
        /// What was being pushed (`blob sha256:… for ferry/app`, `manifest ferry/app:1`).
        what: String,
        /// `host[:port]`.
        host: String,
        /// The registry's answer.
        #[source]
        source: ApiError,
    },
    /// Reaching or talking to the registry failed (connection, TLS, credentials, retries used
    /// up).
    #[error(transparent)]
    Registry(FetchError),
    /// A blob could not be read from the source (archive or store).
    #[error("cannot read blob {digest} from {source_name}")]
    Read {
        /// The blob.
        digest: Digest,
        /// The archive or store.
        source_name: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A delta archive leaves out blobs that the registry does not have either.
    #[error(
        "{host} lacks {} blob{} that the archive leaves out: {}",
        missing.len(),
        if missing.len() == 1 { "" } else { "s" },
        missing.iter().map(|(d, repo)| format!("{d} (for {repo})")).collect::<Vec<_>>().join(", ")
    )]
    Missing {
        /// The target registry.
        host: String,
        /// Each missing blob and the repository that needs it.
        missing: Vec<(Digest, String)>,
    },
}

impl PushError {
    /// Wraps a registry client error, keeping a refusal's answer next to what was pushed.
    pub(crate) fn from_fetch(e: FetchError, what: &str) -> PushError {
        match e {
            FetchError::Registry { host, source, .. } => PushError::Refused {
                what: what.to_string(),
                host,
                source,
            },
            other => PushError::Registry(other),
        }
    }

    /// What the user can do about it, if there is something.
    pub fn hint(&self) -> Option<String> {
        match self {
            PushError::Registry(e) => e.hint(),
            PushError::Refused { source, .. } => Some(match (source.status, &source.code) {
                (413, _) => "the registry, or a proxy in front of it, limits the size of a request: pass a smaller --chunk-size, or raise the limit (nginx: client_max_body_size)".into(),
                (_, Some(ErrorCode::Unauthorized)) => "pushing needs credentials with write access: check the user name and password, or pass them with --username NAME --password-stdin (or FERRY_USERNAME and FERRY_PASSWORD), or run docker login".into(),
                (_, Some(ErrorCode::Denied)) => "the account may not push to this repository: check the repository name and the account's rights".into(),
                (_, Some(ErrorCode::Other(c))) if c.starts_with("MANIFEST") => "the registry does not accept this manifest (its media type or schema); a registry that supports OCI images and indexes is needed".into(),
                (_, Some(ErrorCode::Other(c))) if c == "DENIED" || c == "QUOTA_EXCEEDED" => "the registry refused to store more: check the project's quota".into(),
                _ => return None,
            }),
            PushError::Missing { .. } => Some("push the whole archive, or make the delta against what this registry holds: ferry inventory --registry REGISTRY -o have.json, then ferry fetch --have have.json".into()),
            PushError::Read { .. } => None,
        }
    }
}

impl From<FetchError> for PushError {
    fn from(e: FetchError) -> Self {
        PushError::Registry(e)
    }
}

//! What can go wrong while fetching, each error naming the operation and the object, with the
//! cause in `source()` and a hint for the user where one helps.

use std::path::PathBuf;

use ferry_oci::DigestError;

use crate::registry::api_error::{ApiError, ErrorCode};

/// A failed fetch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The registry could not be reached at all.
    #[error("cannot connect to registry {host}")]
    Connect {
        /// `host[:port]`.
        host: String,
        /// The transport error.
        #[source]
        source: ureq::Error,
    },
    /// The TLS handshake failed (untrusted or invalid certificate, or a plain-HTTP server).
    #[error("TLS handshake with {host} failed")]
    Tls {
        /// `host[:port]`.
        host: String,
        /// The TLS error.
        #[source]
        source: ureq::Error,
    },
    /// A request failed in transit after all retries.
    #[error("{what} from {host} failed after {attempts} attempt{}", if *.attempts == 1 { "" } else { "s" })]
    Transfer {
        /// What was being requested (`manifest ferry/busybox:oci`, `blob sha256:…`).
        what: String,
        /// `host[:port]`.
        host: String,
        /// How many tries were made.
        attempts: u32,
        /// The last error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The registry answered with an error.
    #[error("{what} from {host}: registry refused the request")]
    Registry {
        /// What was being requested.
        what: String,
        /// `host[:port]`.
        host: String,
        /// The registry's answer.
        #[source]
        source: ApiError,
    },
    /// Getting a token (or using credentials) failed.
    #[error("authentication with {host} failed: {reason}")]
    Auth {
        /// `host[:port]` of the registry.
        host: String,
        /// Why, in one line, without any secret.
        reason: String,
    },
    /// The registry only has a Docker schema1 manifest.
    #[error("{reference} is a Docker schema1 image, which ferry does not fetch")]
    Schema1 {
        /// The image.
        reference: String,
    },
    /// The index has no manifest for the requested platform.
    #[error("{reference} has no image for {wanted}; available: {}", available.join(", "))]
    NoPlatform {
        /// The image.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// What the index offers.
        available: Vec<String>,
    },
    /// A single-platform image was built for another platform than the one asked for.
    #[error("{reference} is built for {found}, not {wanted}")]
    PlatformMismatch {
        /// The image.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// The platform in the image config.
        found: String,
    },
    /// Content did not match its digest or size.
    #[error("{what} from {host} is corrupt")]
    Verify {
        /// What was checked (`manifest …`, `blob sha256:…`).
        what: String,
        /// `host[:port]`.
        host: String,
        /// The mismatch.
        #[source]
        source: Box<DigestError>,
    },
    /// A manifest, index or config could not be understood.
    #[error("{what} is not valid")]
    Invalid {
        /// What was parsed.
        what: String,
        /// The parse error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Writing or reading a local file failed.
    #[error("cannot {action} `{}`", path.display())]
    Io {
        /// `write`, `create`, `rename`, …
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Another ferry process is writing the same archive.
    #[error("another ferry is already writing `{}`", path.display())]
    Busy {
        /// The part file.
        path: PathBuf,
    },
    /// The user stopped the fetch.
    #[error("fetch interrupted; rerun the same command to continue where it stopped")]
    Interrupted,
}

impl FetchError {
    /// What the user can do about it, if there is something.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            FetchError::Connect { host, .. } => format!(
                "check the name `{host}` and your network; behind a proxy, set HTTPS_PROXY (and NO_PROXY for internal hosts)"
            ),
            FetchError::Tls { host, .. } => format!(
                "if {host} uses a certificate from your organisation's CA, install that CA in the system trust store or pass --ca-cert FILE; if it serves plain HTTP or must not be verified, pass --insecure-registry {host}"
            ),
            FetchError::Registry { source, .. } => match source.code.as_ref()? {
                ErrorCode::ManifestUnknown => {
                    "check the tag or digest: the repository exists but has no such manifest".into()
                }
                ErrorCode::NameUnknown => {
                    "check the repository name; private repositories need --username and --password-stdin".into()
                }
                ErrorCode::Unauthorized => {
                    "this registry wants credentials: pass --username NAME --password-stdin (or set FERRY_USERNAME and FERRY_PASSWORD)".into()
                }
                ErrorCode::Denied => {
                    "the registry refused access: check the repository name and that your account may pull it".into()
                }
                ErrorCode::TooManyRequests => {
                    "the registry is rate-limiting pulls; wait a while, or log in (Docker Hub allows authenticated users more pulls)".into()
                }
                _ => return None,
            },
            FetchError::Auth { .. } => {
                "check the user name and password (or token) for this registry".into()
            }
            FetchError::NoPlatform { .. } => {
                "choose one of the available platforms with --platform OS/ARCH[/VARIANT]".into()
            }
            FetchError::PlatformMismatch { found, .. } => {
                format!("to fetch it anyway, pass --platform {found}")
            }
            FetchError::Schema1 { .. } => {
                "schema1 images are deprecated and cannot be loaded by current Docker; ask for the image to be rebuilt or pushed with a current tool".into()
            }
            FetchError::Busy { .. } => {
                "wait for it to finish, or write to another file with -o".into()
            }
            FetchError::Transfer { .. } => {
                "the connection kept failing; rerun the same command to resume where it stopped".into()
            }
            _ => return None,
        })
    }
}

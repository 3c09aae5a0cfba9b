//! The registry's JSON error envelope: `{"errors":[{"code":"MANIFEST_UNKNOWN","message":…}]}`.
//!
//! Typed codes let the command line say what to do next (check the tag, log in, wait).

use std::fmt;

use serde::Deserialize;

/// An error code from the distribution spec (plus the ones Docker Hub adds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    /// The tag or digest does not exist in the repository.
    ManifestUnknown,
    /// The repository does not exist (or is hidden from this user).
    NameUnknown,
    /// The blob does not exist.
    BlobUnknown,
    /// Authentication required or failed.
    Unauthorized,
    /// Authenticated, but not allowed.
    Denied,
    /// Rate limited.
    TooManyRequests,
    /// The registry does not support the operation.
    Unsupported,
    /// Anything else, verbatim.
    Other(String),
}

impl ErrorCode {
    fn from_code(code: &str) -> Self {
        match code {
            "MANIFEST_UNKNOWN" => ErrorCode::ManifestUnknown,
            "NAME_UNKNOWN" => ErrorCode::NameUnknown,
            "BLOB_UNKNOWN" => ErrorCode::BlobUnknown,
            "UNAUTHORIZED" => ErrorCode::Unauthorized,
            "DENIED" => ErrorCode::Denied,
            "TOOMANYREQUESTS" => ErrorCode::TooManyRequests,
            "UNSUPPORTED" => ErrorCode::Unsupported,
            other => ErrorCode::Other(other.to_string()),
        }
    }

    /// The code as the registry spells it.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::Other(s) => s,
        }
    }
}

/// What a registry answered when a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// The first error code in the envelope, if the body had one.
    pub code: Option<ErrorCode>,
    /// The registry's message for it, trimmed to one line.
    pub message: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    errors: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    code: String,
    #[serde(default)]
    message: Option<String>,
}

impl ApiError {
    /// Builds the error from a status and whatever body came with it (JSON envelope or not).
    pub fn from_response(status: u16, body: &[u8]) -> Self {
        let first = serde_json::from_slice::<Envelope>(body)
            .ok()
            .and_then(|e| e.errors.into_iter().next());
        let (code, message) = match first {
            Some(item) => (Some(ErrorCode::from_code(&item.code)), item.message),
            None => (None, None),
        };
        let message = message.map(|m| one_line(&m)).filter(|m| !m.is_empty());
        let code = code.or(match status {
            401 => Some(ErrorCode::Unauthorized),
            403 => Some(ErrorCode::Denied),
            429 => Some(ErrorCode::TooManyRequests),
            _ => None,
        });
        ApiError {
            status,
            code,
            message,
        }
    }
}

fn one_line(s: &str) -> String {
    let line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = line.chars().take(200).collect();
    if line.chars().count() > 200 {
        out.push('…');
    }
    out
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "registry answered HTTP {}", self.status)?;
        if let Some(code) = &self.code {
            write!(f, " {}", code.as_str())?;
        }
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_is_typed() {
        let e = ApiError::from_response(
            404,
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}}]}"#,
        );
        assert_eq!(e.code, Some(ErrorCode::ManifestUnknown));
        assert_eq!(
            e.to_string(),
            "registry answered HTTP 404 MANIFEST_UNKNOWN: manifest unknown"
        );
    }

    #[test]
    fn non_json_bodies_fall_back_to_the_status() {
        let e = ApiError::from_response(429, b"<html>slow down</html>");
        assert_eq!(e.code, Some(ErrorCode::TooManyRequests));
        let e = ApiError::from_response(500, b"");
        assert_eq!(e.code, None);
        assert_eq!(e.to_string(), "registry answered HTTP 500");
    }

    #[test]
    fn unknown_codes_are_kept_verbatim() {
        let e = ApiError::from_response(400, br#"{"errors":[{"code":"SOMETHING_NEW"}]}"#);
        assert_eq!(e.code, Some(ErrorCode::Other("SOMETHING_NEW".into())));
    }
}

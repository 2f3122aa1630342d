//! The registry client's errors: what a registry refused (with its status and its error JSON),
//! what it answered that makes no sense, and what the transport could not do.

use core::fmt;

use super::auth::{ChallengeError, TokenError};
use super::url::UrlError;
use super::Method;
use crate::Digest;

/// One entry of a registry's error body `{"errors":[{"code","message","detail"}]}`
/// (distribution spec, "Error Codes").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDetail {
    /// The code: `MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`, `UNAUTHORIZED`, `DENIED`, …
    pub code: String,
    /// The registry's message.
    pub message: String,
    /// The `detail` value as compact JSON, if any.
    pub detail: Option<String>,
}

/// Parses an error body; anything else gives an empty list.
#[must_use]
pub fn parse_error_body(body: &[u8]) -> Vec<ErrorDetail> {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        detail: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => b
            .errors
            .into_iter()
            .map(|e| ErrorDetail {
                code: e.code,
                message: e.message,
                detail: e
                    .detail
                    .filter(|d| !d.is_null())
                    .map(|d| d.to_string().chars().take(500).collect()),
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A response the registry gave with a status that ends the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusError {
    /// The request's method.
    pub method: Method,
    /// The request's URL (query stripped: it may carry upload state or signatures).
    pub url: String,
    /// The HTTP status.
    pub status: u16,
    /// The registry's error entries, if its body had them.
    pub errors: Vec<ErrorDetail>,
    /// The start of the body (200 characters) when it held no error JSON.
    pub body: String,
}

impl StatusError {
    /// The first error code, if any.
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        self.errors.first().map(|e| e.code.as_str())
    }
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: HTTP {}", self.method, self.url, self.status)?;
        for (i, e) in self.errors.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{}: {}", e.code, e.message)?;
            if let Some(d) = &e.detail {
                write!(f, " ({d})")?;
            }
        }
        if self.errors.is_empty() && !self.body.is_empty() {
            write!(f, ": {:?}", self.body)?;
        }
        Ok(())
    }
}

/// Why a 401 ended the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unauthorized {
    /// No credentials are configured for the host, and it allows no anonymous access.
    NoCredentials,
    /// The registry refused the request again after authenticating.
    Rejected,
    /// The token endpoint refused the credentials.
    TokenRefused,
    /// The 401 carried no challenge berth can answer (no Basic or Bearer).
    NoUsableChallenge,
}

impl fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unauthorized::NoCredentials => {
                "no credentials are configured for this registry and it refuses anonymous access"
            }
            Unauthorized::Rejected => "the registry refused the credentials",
            Unauthorized::TokenRefused => "the token server refused the credentials",
            Unauthorized::NoUsableChallenge => {
                "the registry asked for an authentication scheme berth does not speak"
            }
        })
    }
}

/// Why a registry operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// 404: the manifest, tag, blob or repository does not exist.
    #[error("not found: {0}")]
    NotFound(StatusError),
    /// 401 that authentication did not (or could not) cure.
    #[error("unauthorized ({reason}): {error}")]
    Unauthorized {
        /// Why.
        reason: Unauthorized,
        /// The refusing response.
        error: StatusError,
    },
    /// 403: authenticated, but not allowed.
    #[error("denied: {0}")]
    Denied(StatusError),
    /// Any other status the operation cannot go on from (after retries, for 5xx and 429).
    #[error("registry error: {0}")]
    Status(StatusError),
    /// More redirects than allowed.
    #[error("{method} {url}: more than {limit} redirects")]
    TooManyRedirects {
        /// The method.
        method: Method,
        /// The last URL (query stripped).
        url: String,
        /// The limit.
        limit: u32,
    },
    /// A response that needs a `Location` (a redirect, an upload step) has none.
    #[error("{method} {url}: HTTP {status} without a Location header")]
    MissingLocation {
        /// The method.
        method: Method,
        /// The URL (query stripped).
        url: String,
        /// The status.
        status: u16,
    },
    /// A `Location` header that is not a usable URL.
    #[error("{method} {url}: unusable Location {location:?}: {source}")]
    Location {
        /// The method.
        method: Method,
        /// The URL (query stripped).
        url: String,
        /// The header (first 200 characters).
        location: String,
        /// Why.
        source: UrlError,
    },
    /// A `WWW-Authenticate` header that does not parse.
    #[error("{url}: {source}")]
    Challenge {
        /// The challenged URL (query stripped).
        url: String,
        /// Why.
        source: ChallengeError,
    },
    /// The token endpoint answered 200 with an unusable body.
    #[error("token from {url}: {source}")]
    Token {
        /// The token URL (query stripped).
        url: String,
        /// Why.
        source: TokenError,
    },
    /// The connection failed (refused, reset, timed out) on every attempt.
    #[error("{method} {url}: {message} (after {attempts} attempts)")]
    Transport {
        /// The method.
        method: Method,
        /// The URL (query stripped).
        url: String,
        /// How many times the request was sent.
        attempts: u32,
        /// The driver's description of the last failure.
        message: String,
    },
    /// Content does not have the digest it should.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked (`Docker-Content-Digest header`, `manifest body`, …).
        what: &'static str,
        /// The digest asked for.
        expected: Digest,
        /// The digest found.
        actual: Digest,
    },
    /// Content does not have the size it should.
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The size asked for.
        expected: u64,
        /// The size found.
        actual: u64,
    },
    /// A `Docker-Content-Digest` header that is not a digest.
    #[error("{url}: invalid Docker-Content-Digest {value:?}")]
    DigestHeader {
        /// The URL (query stripped).
        url: String,
        /// The header (first 200 characters).
        value: String,
    },
    /// A manifest response whose media type cannot be told (no Content-Type and no
    /// `mediaType`, `manifests` or `config` in the body).
    #[error("{url}: the manifest's media type is unknown (no Content-Type, no mediaType field)")]
    MissingMediaType {
        /// The URL (query stripped).
        url: String,
    },
    /// A body longer than berth reads into memory for this purpose.
    #[error("{url}: response body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The URL (query stripped).
        url: String,
        /// The limit.
        limit: u64,
    },
    /// A ranged fetch answered with a range other than the one asked for, or an upload step
    /// with a `Range` that does not fit the blob.
    #[error("{url}: unexpected range {value:?} (asked for bytes from {offset})")]
    Range {
        /// The URL (query stripped).
        url: String,
        /// The `Content-Range` or `Range` header.
        value: String,
        /// The offset asked for or sent.
        offset: u64,
    },
    /// The caller asked for bytes past the end of the content.
    #[error("offset {offset} is past the end of {digest} ({size} bytes)")]
    OffsetPastEnd {
        /// The offset asked for.
        offset: u64,
        /// The content's size.
        size: u64,
        /// The content.
        digest: Digest,
    },
}

impl RegistryError {
    /// The HTTP status behind this error, if a response caused it.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::NotFound(e)
            | RegistryError::Denied(e)
            | RegistryError::Status(e)
            | RegistryError::Unauthorized { error: e, .. } => Some(e.status),
            RegistryError::MissingLocation { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True for [`RegistryError::NotFound`].
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::NotFound(_))
    }

    /// True for [`RegistryError::Unauthorized`] and [`RegistryError::Denied`].
    #[must_use]
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            RegistryError::Unauthorized { .. } | RegistryError::Denied(_)
        )
    }
}

/// `url` without its query, for error messages (a query may carry upload state or a signed
/// token).
#[must_use]
pub(crate) fn display_url(url: &super::Url) -> String {
    format!("{}://{}{}", url.scheme(), url.authority(), url.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_error_bodies() {
        let e = parse_error_body(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}},{"code":"X","message":"y"}]}"#,
        );
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].code, "MANIFEST_UNKNOWN");
        assert_eq!(e[0].detail.as_deref(), Some(r#"{"Tag":"nope"}"#));
        assert_eq!(e[1].detail, None);
        assert!(parse_error_body(b"<html>502</html>").is_empty());
        assert!(parse_error_body(b"").is_empty());
        assert!(parse_error_body(br#"{"errors":null}"#).is_empty());
    }

    #[test]
    fn status_errors_print_their_facts() {
        let e = StatusError {
            method: Method::Get,
            url: "http://r/v2/x/manifests/nope".into(),
            status: 404,
            errors: parse_error_body(
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            ),
            body: String::new(),
        };
        assert_eq!(e.code(), Some("MANIFEST_UNKNOWN"));
        let r = RegistryError::NotFound(e);
        assert_eq!(
            r.to_string(),
            "not found: GET http://r/v2/x/manifests/nope: HTTP 404: MANIFEST_UNKNOWN: manifest unknown"
        );
        assert_eq!(r.status(), Some(404));
        assert!(r.is_not_found() && !r.is_auth());
    }
}

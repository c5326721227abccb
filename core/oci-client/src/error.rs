//! What went wrong, with which registry, on which repository, blob or manifest.
//!
//! Errors quote what a registry said (its `{"errors":[{"code","message"}]}` body) after cutting it
//! to a printable length and removing control characters: a hostile registry must not be able to
//! rewrite a terminal. URLs in errors lose their query (upload state, storage signatures) and
//! never carry credentials; tokens and passwords never appear in any error.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::digest::Sha256Digest;
use crate::names::{NameError, Reference, RepositoryName};

pub type Result<T, E = OciError> = std::result::Result<T, E>;

/// At most this many of a registry's error entries are kept.
const MAX_ERROR_ENTRIES: usize = 5;
/// Registry-supplied texts are cut to this many characters.
const MAX_TEXT_CHARS: usize = 200;

/// What a request was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// The registry itself (`/v2/`).
    Registry,
    /// The token endpoint of a registry that uses bearer tokens (its URL without query).
    TokenEndpoint {
        realm: String,
    },
    Blob {
        repository: RepositoryName,
        digest: Sha256Digest,
    },
    BlobUpload {
        repository: RepositoryName,
        digest: Sha256Digest,
    },
    Manifest {
        repository: RepositoryName,
        reference: Reference,
    },
    Tags {
        repository: RepositoryName,
    },
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Registry => f.write_str("registry API"),
            Subject::TokenEndpoint { realm } => write!(f, "token endpoint {realm}"),
            Subject::Blob { repository, digest } => write!(f, "blob {digest} in {repository}"),
            Subject::BlobUpload { repository, digest } => {
                write!(f, "upload of blob {digest} to {repository}")
            }
            Subject::Manifest {
                repository,
                reference,
            } => write!(f, "manifest {repository}:{reference}"),
            Subject::Tags { repository } => write!(f, "tag list of {repository}"),
        }
    }
}

/// Every failure of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OciError {
    /// A repository, tag, digest, reference, media type or registry address refused before any
    /// request.
    #[error(transparent)]
    InvalidName(#[from] NameError),

    #[error("CA certificates {path}: {message}")]
    CaFile { path: PathBuf, message: String },

    #[error("{registry}: {subject}: not found{errors}")]
    NotFound {
        registry: String,
        subject: Box<Subject>,
        errors: RegistryErrors,
    },

    /// `401`: no credentials where the registry needs some, or credentials (or a token) refused.
    #[error("{registry}: {subject}: {reason}{errors}")]
    Unauthorized {
        registry: String,
        subject: Box<Subject>,
        reason: &'static str,
        errors: RegistryErrors,
    },

    /// `403`: authenticated, but not allowed.
    #[error("{registry}: {subject}: access denied (HTTP 403){errors}")]
    Denied {
        registry: String,
        subject: Box<Subject>,
        errors: RegistryErrors,
    },

    /// Any other unexpected status, after retries where the request allowed them.
    #[error("{registry}: {subject}: {method} answered HTTP {status}{errors}")]
    Status {
        registry: String,
        subject: Box<Subject>,
        method: String,
        status: u16,
        errors: RegistryErrors,
    },

    /// Bytes received from the registry do not hash to the digest they were asked for by
    /// (or announced with).
    #[error("{registry}: {subject}: the content received hashes to {actual}: refused")]
    DigestMismatch {
        registry: String,
        subject: Box<Subject>,
        actual: Sha256Digest,
    },

    /// A body ended before (or ran past) the size it was announced with.
    #[error("{registry}: {subject}: expected {expected} bytes, {received}")]
    SizeMismatch {
        registry: String,
        subject: Box<Subject>,
        expected: u64,
        received: String,
    },

    #[error("{registry}: {subject}: larger than the limit of {limit} bytes")]
    TooLarge {
        registry: String,
        subject: Box<Subject>,
        limit: u64,
    },

    /// A `Location`, redirect, `Link` or token realm the client will not follow: a downgrade
    /// from HTTPS to HTTP, plain HTTP to a host where it is not allowed, another scheme, or a
    /// foreign host where only the registry's own is acceptable.
    #[error("{registry}: {subject}: refused to follow {what} to {url}: {reason}")]
    UnsafeUrl {
        registry: String,
        subject: Box<Subject>,
        what: &'static str,
        url: String,
        reason: &'static str,
    },

    #[error("{registry}: {subject}: no answer {phase} within {after:?}")]
    Timeout {
        registry: String,
        subject: Box<Subject>,
        phase: &'static str,
        after: Duration,
    },

    /// TLS failed: an untrusted certificate (add the registry's CA with `ca_file`), a name
    /// mismatch, or a peer that does not speak TLS. Not retried.
    #[error("{registry}: {subject}: TLS: {message}")]
    Tls {
        registry: String,
        subject: Box<Subject>,
        message: String,
    },

    /// Connection or HTTP-level failure.
    #[error("{registry}: {subject}: {message}")]
    Network {
        registry: String,
        subject: Box<Subject>,
        message: String,
    },

    /// An answer that breaks the distribution protocol (missing `Location`, unreadable JSON,
    /// an unexpected media type, a digest header that contradicts the content…).
    #[error("{registry}: {subject}: unexpected answer from the registry: {message}")]
    Protocol {
        registry: String,
        subject: Box<Subject>,
        message: String,
    },

    /// The caller's source of an upload could not be opened or read.
    #[error("{subject}: reading the local source: {source}")]
    Source {
        subject: Box<Subject>,
        #[source]
        source: io::Error,
    },

    /// The caller's source of an upload does not hold what was announced; the upload was
    /// aborted before its last byte, so the registry stored nothing.
    #[error("{subject}: the local source {problem}: upload aborted")]
    SourceMismatch {
        subject: Box<Subject>,
        problem: String,
    },
}

impl OciError {
    /// `true` for a `404` answer (blob, manifest or repository unknown).
    pub fn is_not_found(&self) -> bool {
        matches!(self, OciError::NotFound { .. })
    }

    /// The HTTP status the registry answered, when the error is about one.
    pub fn status(&self) -> Option<u16> {
        match self {
            OciError::NotFound { .. } => Some(404),
            OciError::Unauthorized { .. } => Some(401),
            OciError::Denied { .. } => Some(403),
            OciError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The registry's own error entries, when it sent some.
    pub fn registry_errors(&self) -> Option<&RegistryErrors> {
        match self {
            OciError::NotFound { errors, .. }
            | OciError::Unauthorized { errors, .. }
            | OciError::Denied { errors, .. }
            | OciError::Status { errors, .. } => Some(errors),
            _ => None,
        }
    }

    /// The error a [`BlobReader`](crate::BlobReader) read failed with, from the `io::Error` it
    /// returned (`None` for other I/O errors).
    pub fn from_io(error: &io::Error) -> Option<&OciError> {
        error.get_ref()?.downcast_ref::<OciError>()
    }

    /// Worth retrying for an idempotent request: the registry may answer next time.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            OciError::Timeout { .. } | OciError::Network { .. } => true,
            OciError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// The registry's error entries (`{"errors":[{"code","message"}]}`), sanitised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryErrors(Vec<RegistryError>);

/// One entry of a registry's error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError {
    /// Such as `BLOB_UNKNOWN`, `DIGEST_INVALID`, `UNAUTHORIZED`; empty when the body was not
    /// the registry's JSON (a proxy's error page), then `message` holds the start of the text.
    pub code: String,
    pub message: String,
}

/// The JSON shape, lenient on purpose: `oci-spec`'s `ErrorResponse` refuses codes outside the
/// spec's list, and registries send others (`TOOMANYREQUESTS`, vendor codes).
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: serde_json::Value,
    #[serde(default)]
    message: serde_json::Value,
}

impl RegistryErrors {
    /// Reads an error body; never fails (an unreadable body gives its sanitised start, or
    /// nothing).
    pub(crate) fn from_body(body: &[u8]) -> Self {
        if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
            let text = |v: &serde_json::Value| match v {
                serde_json::Value::String(s) => sanitize(s),
                serde_json::Value::Null => String::new(),
                other => sanitize(&other.to_string()),
            };
            return RegistryErrors(
                parsed
                    .errors
                    .iter()
                    .take(MAX_ERROR_ENTRIES)
                    .map(|e| RegistryError {
                        code: text(&e.code),
                        message: text(&e.message),
                    })
                    .collect(),
            );
        }
        let text = sanitize(&String::from_utf8_lossy(body));
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            return RegistryErrors::default();
        }
        RegistryErrors(vec![RegistryError {
            code: String::new(),
            message: text,
        }])
    }

    pub fn entries(&self) -> &[RegistryError] {
        &self.0
    }

    /// Whether one of the entries carries `code` (such as `DIGEST_INVALID`).
    pub fn has_code(&self, code: &str) -> bool {
        self.0.iter().any(|e| e.code == code)
    }
}

impl fmt::Display for RegistryErrors {
    /// Empty, or `; registry says: CODE: message; CODE: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        f.write_str("; registry says: ")?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => write!(f, "{}: {}", e.code, e.message)?,
                (false, true) => f.write_str(&e.code)?,
                (true, _) => f.write_str(&e.message)?,
            }
        }
        Ok(())
    }
}

/// Cuts registry-supplied text to a printable length and drops what could rewrite a terminal
/// (control characters, bidirectional overrides, zero-width characters).
pub(crate) fn sanitize(text: &str) -> String {
    let mut out: String = text
        .chars()
        .filter(|c| {
            !matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
        })
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_TEXT_CHARS + 1)
        .collect();
    if out.chars().count() > MAX_TEXT_CHARS {
        let cut = out
            .char_indices()
            .nth(MAX_TEXT_CHARS)
            .map_or(out.len(), |(i, _)| i);
        out.truncate(cut);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_error_json_is_quoted_code_and_message() {
        let body = br#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content","detail":{}}]}"#;
        let errors = RegistryErrors::from_body(body);
        assert!(errors.has_code("DIGEST_INVALID"));
        assert_eq!(
            errors.to_string(),
            "; registry says: DIGEST_INVALID: provided digest did not match uploaded content"
        );
    }

    #[test]
    fn hostile_error_bodies_are_cut_and_stripped_of_terminal_controls() {
        let message = format!("\u{1b}]0;pwned\u{7}\u{202e}{}", "x".repeat(10_000));
        let body = serde_json::json!({"errors": [{"code": "X\nY", "message": message}]});
        let errors = RegistryErrors::from_body(body.to_string().as_bytes());
        let text = errors.to_string();
        assert!(
            !text.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{text:?}"
        );
        assert!(text.len() < 600, "{}", text.len());
    }

    #[test]
    fn a_non_json_error_page_is_kept_as_a_short_message() {
        let errors = RegistryErrors::from_body(b"<html>\n<h1>502 Bad Gateway</h1>\n</html>");
        assert_eq!(
            errors.to_string(),
            "; registry says: <html> <h1>502 Bad Gateway</h1> </html>"
        );
        assert_eq!(RegistryErrors::from_body(b"").to_string(), "");
    }

    #[test]
    fn unknown_codes_and_odd_types_do_not_break_parsing() {
        let body = br#"{"errors":[{"code":"TOOMANYREQUESTS","message":null},{"code":7}]}"#;
        let errors = RegistryErrors::from_body(body);
        assert_eq!(errors.entries().len(), 2);
        assert_eq!(errors.to_string(), "; registry says: TOOMANYREQUESTS; 7");
    }
}

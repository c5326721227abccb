//! Errors of the protocol v1 client: each says which blob (or document), which server and,
//! for a refusal, which status and the server's own words.

use std::path::PathBuf;
use std::time::Duration;

/// A failed protocol v1 operation.
#[derive(Debug, thiserror::Error)]
pub enum V1Error {
    #[error("invalid remote URL '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid remote token: {0}")]
    InvalidToken(&'static str),
    #[error("cannot use CA certificate file {}: {reason}", path.display())]
    CaCert { path: PathBuf, reason: String },
    #[error(transparent)]
    InvalidKey(#[from] crate::key::InvalidKey),
    #[error("{what} on {server}: cannot connect: {message}")]
    Connect {
        what: String,
        server: String,
        message: String,
    },
    #[error("{what} on {server}: no answer within {}s ({phase})", after.as_secs())]
    Timeout {
        what: String,
        server: String,
        phase: &'static str,
        after: Duration,
    },
    #[error("{what} on {server}: {message}")]
    Transport {
        what: String,
        server: String,
        message: String,
    },
    #[error("{what} on {server}: not found (404)")]
    NotFound { what: String, server: String },
    #[error("{what} on {server}: {status} {message}")]
    Status {
        what: String,
        server: String,
        status: u16,
        message: String,
    },
    #[error("{what} on {server}: invalid response: {message}")]
    InvalidResponse {
        what: String,
        server: String,
        message: String,
    },
    #[error("{what}: reading the local source: {source}")]
    Source {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} on {server}: the registry kept changing under {attempts} attempts; try again")]
    Contended {
        what: String,
        server: String,
        attempts: u32,
    },
}

impl V1Error {
    /// The HTTP status of a refusal, if the server answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            V1Error::NotFound { .. } => Some(404),
            V1Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

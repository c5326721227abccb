//! The one error type of the images layer.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while resolving, downloading, caching or extracting a base image.
///
/// All variants are "general failures" for the CLI (exit 1); [`ImageError::is_not_cached`] lets
/// the caller phrase the `--offline` miss specially if it wants to.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Neither a known alias nor a supported URL.
    #[error(
        "unknown base image '{image}'{suggestion}: use an alias ({known}) or an http(s) URL of a rootfs tarball"
    )]
    UnknownImage {
        image: String,
        known: String,
        /// ` (did you mean '…'?)`, or empty.
        suggestion: String,
    },

    /// The image string looked like a URL but cannot be used.
    #[error("invalid image URL '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },

    /// The host architecture has no image-server name.
    #[error("unsupported host architecture '{0}'")]
    UnsupportedArch(String),

    /// The config file exists but cannot be read or parsed.
    #[error("image config {}: {message}", path.display())]
    Config { path: PathBuf, message: String },

    /// The server answered with a non-success status.
    #[error("GET {url}: HTTP status {status}")]
    HttpStatus { url: String, status: u16 },

    /// A transport-level failure (DNS, connect, TLS, reset, …).
    #[error("GET {url}: {message}")]
    Network { url: String, message: String },

    /// No byte arrived for longer than the stall timeout (or connecting took too long).
    #[error("GET {url}: timed out ({phase}) after {}s", after.as_secs_f32())]
    Timeout {
        url: String,
        phase: &'static str,
        after: Duration,
    },

    /// The server's simplestreams index is present but malformed.
    #[error("bad simplestreams data at {url}: {message}")]
    Simplestreams { url: String, message: String },

    /// Neither the index nor the directory listing names a build of this image.
    #[error("no build of {image} for {arch} found on {server}")]
    NoBuild {
        image: String,
        arch: String,
        server: String,
    },

    /// The downloaded bytes do not hash to what the index promised. Nothing was cached.
    #[error("checksum mismatch for {url}: expected sha256:{expected}, got sha256:{actual}")]
    ChecksumMismatch {
        url: String,
        expected: String,
        actual: String,
    },

    /// `--offline` and the image is not in the cache.
    #[error("{what} is not in the image cache and --offline forbids downloading it")]
    NotCached { what: String },

    /// The cache holds an entry whose bytes no longer match its name.
    #[error("cached image {} is corrupt (expected sha256:{expected}, got sha256:{actual}); it was removed, fetch again", path.display())]
    CacheCorrupt {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    /// The archive is not a tar file we can read.
    #[error("cannot read image archive: {0}")]
    Archive(String),

    /// The archive tries to write outside the destination or through a link.
    #[error("refusing archive entry '{entry}': {reason}")]
    UnsafeEntry { entry: String, reason: String },

    /// Local filesystem failure.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io {
            path: path.into(),
            source,
        }
    }

    /// True for the `--offline` cache miss.
    pub fn is_not_cached(&self) -> bool {
        matches!(self, ImageError::NotCached { .. })
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

//! What push and pull need from a remote that stores blobs by key (protocol v1): the engine's
//! side of the seam, implemented over each transport's client.

use std::io::Read;

pub use karapace_remote::{BlobKind, RegistryEntry};

use super::reference::Tagged;
use crate::error::Result;

/// Reopens a blob's source so that a retried upload can send it again.
pub type Opener<'a> = dyn Fn() -> std::io::Result<Box<dyn Read + Send>> + 'a;

pub trait BlobRemote {
    /// Where the remote is, for messages (a URL without credentials).
    fn location(&self) -> String;
    fn has(&self, kind: BlobKind, key: &str) -> Result<bool>;
    /// Uploads `len` bytes from the opener under `key`.
    fn put(&self, kind: BlobKind, key: &str, len: u64, open: &Opener<'_>) -> Result<()>;
    /// Streams a blob; the caller verifies it. `Ok(None)` when the remote has no such blob.
    fn get(&self, kind: BlobKind, key: &str) -> Result<Option<Box<dyn Read + Send>>>;
    /// The environment a tag names, if any.
    fn resolve(&self, tag: &Tagged) -> Result<Option<RegistryEntry>>;
    /// Records `tag` → `entry` without losing other clients' concurrent updates.
    fn publish(&self, tag: &Tagged, entry: &RegistryEntry) -> Result<()>;
}

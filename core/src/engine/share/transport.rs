//! The seam between push/pull and the transports: a [`Remote`] pushes an environment
//! ([`super::Outgoing`]) and opens one for pulling as a [`BlobSource`]; remotes that store blobs
//! by key (protocol v1) implement [`BlobRemote`] and get [`Remote`] from it.

use std::io::Read;

pub use karapace_remote::{BlobKind, RegistryEntry};

use super::reference::{Reference, Tagged};
use super::{Outgoing, PushReport};
use crate::error::{CoreError, Result};

/// Reopens a blob's source so that a retried upload can send it again.
pub type Opener<'a> = dyn Fn() -> std::io::Result<Box<dyn Read + Send>> + 'a;

/// Where a pull reads an environment's blobs, by kind and key.
pub trait BlobSource {
    /// Where the remote is, for messages (a URL without credentials).
    fn location(&self) -> String;
    /// Streams a blob; the caller verifies it. `Ok(None)` when the remote has no such blob.
    fn get(&self, kind: BlobKind, key: &str) -> Result<Option<Box<dyn Read + Send>>>;
    /// The sha256 (hex) the remote verified a blob's bytes against while streaming them, if it
    /// addresses blobs that way (OCI registries): the store caches it for later pushes.
    fn verified_sha256(&self, _kind: BlobKind, _key: &str) -> Option<String> {
        None
    }
}

/// A remote environments are pushed to and pulled from.
pub trait Remote {
    fn location(&self) -> String;
    /// Uploads an environment and, with `tag`, publishes it under it.
    fn push(&self, out: &Outgoing<'_>, tag: Option<&Tagged>) -> Result<PushReport>;
    /// The `env_id` `reference` names on this remote, and where its blobs are.
    fn open(&self, reference: &Reference) -> Result<(String, Box<dyn BlobSource + '_>)>;
}

/// A remote that stores blobs by kind and key, and tags in a registry (protocol v1).
pub trait BlobRemote: BlobSource {
    fn has(&self, kind: BlobKind, key: &str) -> Result<bool>;
    /// Uploads `len` bytes from the opener under `key`.
    fn put(&self, kind: BlobKind, key: &str, len: u64, open: &Opener<'_>) -> Result<()>;
    /// The environment a tag names, if any.
    fn resolve(&self, tag: &Tagged) -> Result<Option<RegistryEntry>>;
    /// Records `tag` → `entry` without losing other clients' concurrent updates.
    fn publish(&self, tag: &Tagged, entry: &RegistryEntry) -> Result<()>;
}

/// A borrowed blob remote as the source of a pull.
struct Borrowed<'a, T: ?Sized>(&'a T);

impl<T: BlobRemote + ?Sized> BlobSource for Borrowed<'_, T> {
    fn location(&self) -> String {
        self.0.location()
    }
    fn get(&self, kind: BlobKind, key: &str) -> Result<Option<Box<dyn Read + Send>>> {
        self.0.get(kind, key)
    }
}

impl<T: BlobRemote> Remote for T {
    fn location(&self) -> String {
        BlobSource::location(self)
    }

    fn push(&self, out: &Outgoing<'_>, tag: Option<&Tagged>) -> Result<PushReport> {
        super::push_blobs(self, out, tag)
    }

    fn open(&self, reference: &Reference) -> Result<(String, Box<dyn BlobSource + '_>)> {
        let env_id = match reference {
            Reference::EnvId(id) => id.clone(),
            Reference::Tagged(tag) => {
                let entry = self.resolve(tag)?.ok_or_else(|| {
                    CoreError::Remote(format!(
                        "{}: no environment is tagged '{tag}'",
                        BlobSource::location(self)
                    ))
                })?;
                if !karapace_store::is_valid_key(&entry.env_id) {
                    return Err(CoreError::Remote(format!(
                        "{}: the registry entry of '{tag}' names '{}', which is not an env_id",
                        BlobSource::location(self),
                        entry.env_id
                    )));
                }
                entry.env_id
            }
        };
        Ok((env_id, Box::new(Borrowed(self))))
    }
}

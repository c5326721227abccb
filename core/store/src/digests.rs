//! The sha256 of objects, cached: OCI registries address blobs by sha256 while the store keys
//! them by blake3, so pushing an environment to a registry needs both. Computed once per object
//! (by reading it through the verifying reader) or recorded when a pull received the object
//! with its sha256 verified, then kept in `store/digests/<blake3 key>` (64 hex characters).
//!
//! A cache, never content: `verify-store` does not read it, gc drops entries of removed
//! objects, and a wrong entry can only make a registry refuse an upload (it verifies digests).

use std::fs;
use std::io::{self, Read};

use sha2::{Digest, Sha256};

use crate::error::{Result, StoreError, io_at, io_err};
use crate::fsutil::{create_dir_all_private, write_atomic};
use crate::objects::{IO_BUF, is_valid_key};
use crate::read_ahead::ReadAhead;
use crate::store::Store;

impl Store {
    fn digest_file(&self, key: &str) -> std::path::PathBuf {
        self.layout.store.join("digests").join(key)
    }

    /// The sha256 (hex) of the object `key`: cached, or computed from the object (verified
    /// against its blake3 key while read) and cached.
    pub fn object_sha256(&self, key: &str) -> Result<String> {
        if !is_valid_key(key) {
            return Err(StoreError::Invalid(format!("'{key}' is not an object key")));
        }
        if let Ok(text) = fs::read_to_string(self.digest_file(key))
            && is_valid_key(text.trim())
        {
            return Ok(text.trim().to_string());
        }
        // Verified against its key on a thread of its own while this one computes the sha256.
        let mut reader =
            ReadAhead::spawn(self.open_object(key)?).map_err(io_err("start reading the object"))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; IO_BUF];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(StoreError::Integrity {
                        key: format!("object:{key}"),
                        reason: e.to_string(),
                    });
                }
            };
            hasher.update(&buf[..n]);
        }
        let sha = hex::encode(hasher.finalize());
        self.record_sha256(key, &sha)?;
        Ok(sha)
    }

    /// Records the sha256 of an object whose bytes were checked against it (a pull from a
    /// registry verifies both digests).
    pub fn record_sha256(&self, key: &str, sha256_hex: &str) -> Result<()> {
        if !is_valid_key(key) || !is_valid_key(sha256_hex) {
            return Err(StoreError::Invalid("not a digest".into()));
        }
        let _l = self.lock_exclusive()?;
        let dir = self.layout.store.join("digests");
        create_dir_all_private(&dir).map_err(io_at("create", &dir))?;
        write_atomic(
            &self.layout.tmp,
            &self.digest_file(key),
            sha256_hex.as_bytes(),
        )
    }

    /// Drops cached digests of objects that no longer exist (gc).
    pub(crate) fn prune_digests(&self) -> Result<()> {
        let dir = self.layout.store.join("digests");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(());
        };
        for e in entries.flatten() {
            let key = e.file_name().to_string_lossy().into_owned();
            if !self.has_object(&key) {
                fs::remove_file(e.path()).map_err(io_at("remove", &e.path()))?;
            }
        }
        Ok(())
    }
}

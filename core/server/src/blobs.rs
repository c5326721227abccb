//! Blob storage: `<data-dir>/{objects,layers,metadata}/<key>`.
//!
//! An upload streams through blake3 into a temp file in `tmp/` (memory stays bounded by one
//! buffer; layer and metadata documents, at most [`MAX_DOCUMENT_BYTES`], are also kept to be
//! parsed), is verified against its key, and only then renamed into place. Refused, with
//! nothing stored: bytes over the body limit (413), bytes that do not verify (422), see
//! [`verify`]. Keys reach this module only through the router, which has checked them.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use karapace_remote::BlobKind;
use karapace_remote::key::is_valid_key;
use karapace_store::{LayerManifest, decode_metadata};

use crate::fsio::{self, TempFile};
use crate::http::body::{is_malformed, is_too_large};

/// Largest layer manifest or metadata document (they are small JSON files).
pub const MAX_DOCUMENT_BYTES: u64 = 4 * 1024 * 1024;

/// Read/hash/write granularity of uploads.
const CHUNK: usize = 256 * 1024;

/// The blob directories of a data directory.
pub struct BlobStore {
    root: PathBuf,
    tmp: PathBuf,
}

/// What an accepted upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Newly stored (201).
    Created,
    /// The key was already there (200): nothing rewritten.
    Existed,
    /// Metadata under an existing key, replaced by the verified new record (200): an
    /// environment's record is its one mutable blob (a later push adds snapshots).
    Replaced,
}

/// Why an upload was refused or failed.
#[derive(Debug)]
pub enum PutError {
    /// Over the limit (413).
    TooLarge { limit: u64 },
    /// The bytes do not match the key (422).
    Mismatch(String),
    /// Bad body framing (400).
    Malformed(String),
    /// The client stopped sending (closed, stalled): no response is possible.
    ClientGone(io::Error),
    /// Our disk failed (500; 507 when full).
    Storage(io::Error),
}

impl BlobStore {
    /// Creates the directories (0700) under `data_dir` and empties `tmp/`.
    pub fn open(data_dir: &Path) -> io::Result<BlobStore> {
        let tmp = data_dir.join("tmp");
        for kind in BlobKind::ALL {
            fsio::private_dir(&data_dir.join(kind.route_name()))?;
        }
        fsio::private_dir(&tmp)?;
        let removed = fsio::empty_dir(&tmp)?;
        if removed > 0 {
            tracing::info!(removed, "removed temp files of interrupted uploads");
        }
        Ok(BlobStore {
            root: data_dir.to_path_buf(),
            tmp,
        })
    }

    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    fn path(&self, kind: BlobKind, key: &str) -> PathBuf {
        // The router only builds routes with valid keys; this keeps the invariant local too.
        debug_assert!(is_valid_key(key));
        self.root.join(kind.route_name()).join(key)
    }

    /// The blob's file and length, `None` when absent.
    pub fn open_blob(&self, kind: BlobKind, key: &str) -> io::Result<Option<(fs::File, u64)>> {
        if !is_valid_key(key) {
            return Ok(None);
        }
        fsio::open_regular(&self.path(kind, key))
    }

    /// The kind's keys, sorted (anything in the directory that is not a key is skipped).
    pub fn list(&self, kind: BlobKind) -> io::Result<Vec<String>> {
        let mut keys = Vec::new();
        for entry in fs::read_dir(self.root.join(kind.route_name()))? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str()
                && is_valid_key(name)
                && entry.file_type()?.is_file()
            {
                keys.push(name.to_string());
            }
        }
        keys.sort_unstable();
        Ok(keys)
    }

    /// Stores the body under `key` if it verifies (see the module doc).
    pub fn put(
        &self,
        kind: BlobKind,
        key: &str,
        body: &mut dyn Read,
        limit: u64,
    ) -> Result<Stored, PutError> {
        if !is_valid_key(key) {
            return Err(PutError::Mismatch("invalid key".into()));
        }
        let limit = match kind {
            BlobKind::Object => limit,
            BlobKind::Layer | BlobKind::Metadata => limit.min(MAX_DOCUMENT_BYTES),
        };
        let mut temp = TempFile::new(&self.tmp, "upload").map_err(PutError::Storage)?;
        let mut hasher = blake3::Hasher::new();
        let mut document = Vec::new();
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_too_large(&e) => return Err(PutError::TooLarge { limit }),
                Err(e) if is_malformed(&e) => return Err(PutError::Malformed(e.to_string())),
                Err(e) => return Err(PutError::ClientGone(e)),
            };
            total += n as u64;
            if total > limit {
                return Err(PutError::TooLarge { limit });
            }
            let chunk = &buf[..n];
            hasher.update(chunk);
            if kind != BlobKind::Object {
                document.extend_from_slice(chunk);
            }
            temp.file.write_all(chunk).map_err(PutError::Storage)?;
        }
        let digest = hasher.finalize().to_hex();
        verify(kind, key, digest.as_str(), &document).map_err(PutError::Mismatch)?;
        let dest = self.path(kind, key);
        let existed = fsio::open_regular(&dest)
            .map_err(PutError::Storage)?
            .is_some();
        if existed && kind != BlobKind::Metadata {
            // Same key, verified bytes: the stored copy is equivalent; nothing to rewrite.
            return Ok(Stored::Existed);
        }
        // Atomic: a reader sees the old record or the new one, never a mix.
        temp.persist(&dest).map_err(PutError::Storage)?;
        Ok(if existed {
            Stored::Replaced
        } else {
            Stored::Created
        })
    }
}

/// The upload rules per kind (nothing is stored unless this passes):
/// - object: blake3 of the bytes is the key;
/// - layer: blake3 of the bytes is the key (the standard tool's rule), or the bytes are a
///   Karapace layer manifest whose `hash` and recomputed hash are both the key;
/// - metadata: the bytes are environment metadata with a valid embedded checksum and
///   `env_id` equal to the key.
pub fn verify(kind: BlobKind, key: &str, blake3_hex: &str, document: &[u8]) -> Result<(), String> {
    match kind {
        BlobKind::Object => {
            if blake3_hex == key {
                Ok(())
            } else {
                Err(format!("the bytes hash to {blake3_hex}, not to the key"))
            }
        }
        BlobKind::Layer => {
            if blake3_hex == key {
                return Ok(());
            }
            let manifest: LayerManifest = serde_json::from_slice(document).map_err(|e| {
                format!("neither do the bytes hash to the key nor are they a layer manifest ({e})")
            })?;
            if manifest.hash != key {
                return Err("the layer manifest names another hash than the key".into());
            }
            if manifest.expected_hash().as_deref() != Some(key) {
                return Err("the layer manifest's fields do not hash to its key".into());
            }
            Ok(())
        }
        BlobKind::Metadata => decode_metadata(document, key)
            .map(|_| ())
            .map_err(|reason| format!("invalid environment metadata: {reason}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use karapace_store::{LayerKind, layer_hash};

    fn hash(b: &[u8]) -> String {
        blake3::hash(b).to_hex().to_string()
    }

    fn manifest() -> (String, Vec<u8>) {
        let tar = hash(b"tar");
        let h = layer_hash(LayerKind::Base, None, &tar);
        let m = LayerManifest {
            hash: h.clone(),
            kind: LayerKind::Base,
            parent: None,
            object_refs: vec![tar.clone()],
            read_only: true,
            tar_hash: tar,
            env_id: None,
            base_layer: None,
            created_at: None,
            label: None,
        };
        (h.to_string(), serde_json::to_vec_pretty(&m).unwrap())
    }

    #[test]
    fn objects_must_hash_to_their_key() {
        let k = hash(b"x");
        assert!(verify(BlobKind::Object, &k, &k, b"").is_ok());
        assert!(verify(BlobKind::Object, &hash(b"y"), &k, b"").is_err());
    }

    #[test]
    fn layers_verify_by_bytes_or_by_manifest() {
        let (h, bytes) = manifest();
        assert!(verify(BlobKind::Layer, &h, &hash(&bytes), &bytes).is_ok());
        // The standard tool's rule: the key is the hash of the bytes.
        assert!(verify(BlobKind::Layer, &hash(&bytes), &hash(&bytes), &bytes).is_ok());
        // A manifest under someone else's key, and a manifest whose fields were edited.
        assert!(verify(BlobKind::Layer, &hash(b"other"), &hash(&bytes), &bytes).is_err());
        let mut m: LayerManifest = serde_json::from_slice(&bytes).unwrap();
        m.tar_hash = hash(b"evil");
        let edited = serde_json::to_vec(&m).unwrap();
        assert!(verify(BlobKind::Layer, &h, &hash(&edited), &edited).is_err());
        assert!(verify(BlobKind::Layer, &h, &hash(b"junk"), b"junk").is_err());
    }

    #[test]
    fn uploads_that_fail_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let k = hash(b"hello");
        assert!(matches!(
            store.put(BlobKind::Object, &hash(b"other"), &mut &b"hello"[..], 100),
            Err(PutError::Mismatch(_))
        ));
        assert!(matches!(
            store.put(BlobKind::Object, &k, &mut &b"hello"[..], 4),
            Err(PutError::TooLarge { limit: 4 })
        ));
        assert!(store.list(BlobKind::Object).unwrap().is_empty());
        assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
        assert_eq!(
            store
                .put(BlobKind::Object, &k, &mut &b"hello"[..], 100)
                .unwrap(),
            Stored::Created
        );
        assert_eq!(
            store
                .put(BlobKind::Object, &k, &mut &b"hello"[..], 100)
                .unwrap(),
            Stored::Existed
        );
        assert_eq!(store.list(BlobKind::Object).unwrap(), vec![k.clone()]);
        let (mut f, len) = store.open_blob(BlobKind::Object, &k).unwrap().unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!((s.as_str(), len), ("hello", 5));
        assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
    }

    #[test]
    fn a_newer_environment_record_replaces_the_stored_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let id = hash(b"env");
        let record = |snapshots: &[&str]| {
            let doc = serde_json::json!({
                "env_id": id, "short_id": &id[..12], "name": null, "state": "Built",
                "manifest_hash": hash(b"m"), "base_layer": hash(b"b"),
                "dependency_layers": [], "policy_layer": null,
                "created_at": "", "updated_at": "", "snapshots": snapshots,
            });
            karapace_store::seal_document(doc).unwrap().into_bytes()
        };
        let first = record(&[]);
        let second = record(&[&hash(b"s")]);
        let put = |bytes: &[u8]| store.put(BlobKind::Metadata, &id, &mut &bytes[..], 1 << 20);
        assert_eq!(put(&first).unwrap(), Stored::Created);
        assert_eq!(put(&second).unwrap(), Stored::Replaced);
        let (mut f, _) = store.open_blob(BlobKind::Metadata, &id).unwrap().unwrap();
        let mut stored = Vec::new();
        f.read_to_end(&mut stored).unwrap();
        assert_eq!(stored, second);
        // A forged record never replaces it.
        let forged = String::from_utf8(second.clone())
            .unwrap()
            .replace("Built", "Frozen");
        assert!(matches!(put(forged.as_bytes()), Err(PutError::Mismatch(_))));
        assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
    }

    #[test]
    fn start_up_removes_stale_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("tmp")).unwrap();
        fs::write(dir.path().join("tmp/upload-1-0"), b"partial").unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
    }
}

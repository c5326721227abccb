//! Moving environments between stores (push/pull): which layers an environment shares, and
//! receiving blobs that come from elsewhere — verified before anything is recorded, so a
//! remote can never make this store hold bytes that do not match their key.
//!
//! A pull writes objects first (each verified as it streams in, published only if it hashes to
//! its key), then the layer manifests, then the environment's metadata: until the metadata
//! exists nothing is listed, and what was received is unreferenced, valid content that the
//! next pull reuses and gc collects. The caller holds a build lease meanwhile, so gc cannot
//! collect a half-received environment.

use std::io::{self, Read};

use crate::error::{Result, StoreError, io_err};
use crate::layers::{LayerKind, LayerManifest};
use crate::meta::EnvMetadata;
use crate::objects::{ObjectWriter, is_valid_key};
use crate::store::{StagingDir, Store};

/// What an environment shares with another machine, besides its metadata: the read-only
/// layers it is built from (base, then dependencies, bottom to top) and its snapshots (oldest
/// first). The policy layer is not part of it: it holds facts of this machine (the user's
/// identity, the manifest's directory) and the receiving side writes its own.
#[derive(Debug, Clone)]
pub struct EnvContent {
    pub meta: EnvMetadata,
    pub layers: Vec<LayerManifest>,
    pub snapshots: Vec<LayerManifest>,
}

impl EnvContent {
    /// Every object the layers and snapshots reference, in order, each once.
    pub fn objects(&self) -> Vec<String> {
        let mut seen = std::collections::BTreeSet::new();
        self.layers
            .iter()
            .chain(&self.snapshots)
            .flat_map(|m| m.object_refs.iter())
            .filter(|k| seen.insert(k.as_str()))
            .cloned()
            .collect()
    }
}

impl Store {
    /// The shareable content of an environment (see [`EnvContent`]).
    pub fn env_content(&self, env_id: &str) -> Result<EnvContent> {
        let _l = self.lock_shared()?;
        let meta = self.read_meta_raw(env_id)?;
        let layers = std::iter::once(&meta.base_layer)
            .chain(&meta.dependency_layers)
            .map(|h| self.read_layer(h))
            .collect::<Result<Vec<_>>>()?;
        let snapshots = self.snapshot_manifests(Some(env_id))?;
        Ok(EnvContent {
            meta,
            layers,
            snapshots,
        })
    }

    /// Size in bytes of a stored object.
    pub fn object_len(&self, key: &str) -> Result<u64> {
        if !is_valid_key(key) {
            return Err(StoreError::Invalid(format!("'{key}' is not an object key")));
        }
        let path = crate::objects::object_path(&self.layout.objects, key);
        std::fs::metadata(&path)
            .map(|m| m.len())
            .map_err(crate::error::io_at("stat", &path))
    }

    /// Receives an object from elsewhere: streams `r` into a temp file in `staging` while
    /// hashing, and publishes it under `key` only if the bytes hash to it; otherwise nothing is
    /// stored and the error names the key and what the bytes hash to. Returns the size.
    pub fn receive_object(&self, staging: &StagingDir, key: &str, r: &mut dyn Read) -> Result<u64> {
        if !is_valid_key(key) {
            return Err(StoreError::Invalid(format!("'{key}' is not an object key")));
        }
        // A staging dir, not `tmp/`: recovery empties `tmp/` whenever another command takes the
        // store lock, and the download runs without it.
        let mut w = ObjectWriter::new(staging.path(), &self.layout.objects)?;
        io::copy(r, &mut w).map_err(io_err("receive object"))?;
        let (hash, len) = w.seal()?;
        if hash != key {
            return Err(StoreError::Integrity {
                key: format!("object:{key}"),
                reason: format!("the received bytes hash to {hash}"),
            });
        }
        let _l = self.lock_exclusive()?;
        w.publish(&hash)?;
        Ok(len)
    }

    /// Records a layer manifest received from elsewhere, after checking it describes itself
    /// honestly: its hash is the one its own fields give, it is read-only, references exactly
    /// its tar object, and that object and its parent are already in this store. Recording an
    /// existing layer again is a no-op.
    pub fn receive_layer(&self, m: &LayerManifest) -> Result<()> {
        let bad = |reason: String| StoreError::Integrity {
            key: format!("layer:{}", m.hash),
            reason,
        };
        if !is_valid_key(&m.hash) {
            return Err(StoreError::Invalid(format!(
                "'{}' is not a layer key",
                m.hash
            )));
        }
        match m.expected_hash() {
            Some(h) if h == m.hash => {}
            Some(h) => return Err(bad(format!("its fields hash to {h}"))),
            None => {
                return Err(bad(
                    "a snapshot without its environment or base layer".into()
                ));
            }
        }
        if !m.read_only || m.object_refs != [m.tar_hash.clone()] {
            return Err(bad("not a read-only layer of exactly its tar object".into()));
        }
        let _l = self.lock_exclusive()?;
        if !self.has_object(&m.tar_hash) {
            return Err(bad(format!("its object {} was not received", m.tar_hash)));
        }
        match (&m.parent, m.kind) {
            (None, LayerKind::Base) => {}
            (None, _) => return Err(bad("only a base layer has no parent".into())),
            (Some(_), LayerKind::Base) => return Err(bad("a base layer has a parent".into())),
            (Some(p), _) => {
                if !is_valid_key(p) || !self.layout.layer_file(p).is_file() {
                    return Err(StoreError::UnknownLayer(p.to_string()));
                }
            }
        }
        if self.layout.layer_file(&m.hash).is_file() {
            return Ok(());
        }
        self.write_layer_manifest(m)
    }
}

/// Name of the marker a pull leaves in an environment's directory (`env/<id>/`): the
/// environment's layers came from this remote, not from a build here.
const PULLED_FROM: &str = "pulled-from";

impl Store {
    /// Records that the environment's layers were pulled from `remote` (a URL without
    /// credentials). A later local build of the same lock replaces them.
    pub fn mark_pulled(&self, env_id: &str, remote: &str) -> Result<()> {
        let _l = self.lock_exclusive()?;
        self.read_meta_raw(env_id)?;
        crate::fsutil::write_atomic(
            &self.layout.tmp,
            &self.layout.env_dir(env_id).join(PULLED_FROM),
            remote.as_bytes(),
        )
    }

    /// The remote an environment was pulled from, while its layers are still the pulled ones.
    pub fn pulled_from(&self, env_id: &str) -> Option<String> {
        if !is_valid_key(env_id) {
            return None;
        }
        let path = self.layout.env_dir(env_id).join(PULLED_FROM);
        let text = std::fs::read(path).ok()?;
        Some(String::from_utf8_lossy(&text[..text.len().min(4096)]).into_owned())
    }

    /// Forgets where the environment came from (its layers were just built here).
    pub fn clear_pulled(&self, env_id: &str) -> Result<()> {
        if !is_valid_key(env_id) {
            return Err(StoreError::UnknownEnv(env_id.to_string()));
        }
        let _l = self.lock_exclusive()?;
        let path = self.layout.env_dir(env_id).join(PULLED_FROM);
        match std::fs::remove_file(&path) {
            Ok(()) => crate::fsutil::fsync_dir(&self.layout.env_dir(env_id)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(crate::error::io_at("remove", &path)(e)),
        }
    }
}

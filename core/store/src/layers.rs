//! Layers: a deterministic tar stored as an object plus a JSON manifest
//! (`store/layers/<hash>`), and the cached unpacked tree (`store/trees/<hash>/`) used as an
//! overlay lowerdir.

use crate::crash::crash_point;
use crate::error::{Result, StoreError, io_at, io_err};
use crate::fsutil::{
    CONTENT_ROOT_MODE, create_dir_mode, exists_nofollow, fsync_dir, unique_name, write_atomic,
};
use crate::objects::{ObjectHash, ObjectReader, ObjectWriter, is_valid_key, object_path, read_err};
use crate::read_ahead::ReadAhead;
use crate::store::Store;
use crate::tar::UnpackOptions;
use crate::wal::WalOp;
use karapace_ids::{EnvId, LayerHash};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// What a layer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LayerKind {
    Base,
    Dependency,
    Policy,
    Snapshot,
}

impl fmt::Display for LayerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayerKind::Base => "base",
            LayerKind::Dependency => "dependency",
            LayerKind::Policy => "policy",
            LayerKind::Snapshot => "snapshot",
        })
    }
}

/// The JSON layer manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerManifest {
    pub hash: LayerHash,
    pub kind: LayerKind,
    pub parent: Option<LayerHash>,
    pub object_refs: Vec<String>,
    pub read_only: bool,
    pub tar_hash: String,
    /// Snapshots only: the environment and base layer the hash was derived from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_id: Option<EnvId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_layer: Option<LayerHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Snapshots only: the user's label (`commit --message`). Not part of the hash: a label
    /// names a snapshot, it is not its content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// How to import a directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Move the directory into the tree cache (rename, same filesystem only) so it never
    /// has to be unpacked again. The caller's directory is gone afterwards on success.
    /// Its regular files lose their setuid/setgid bits and `security.capability` xattrs
    /// first, as they would in a tree unpacked from the layer.
    pub adopt_tree: bool,
}

/// Hash of a non-snapshot layer: `blake3("layer:<kind>:<parent or empty>:<tar_hash>")`.
pub fn layer_hash(kind: LayerKind, parent: Option<&str>, tar_hash: &str) -> LayerHash {
    let digest =
        blake3::hash(format!("layer:{kind}:{}:{tar_hash}", parent.unwrap_or("")).as_bytes());
    LayerHash::from_digest(digest.as_bytes())
}

/// Hash of a snapshot: `blake3("snapshot:<env_id>:<base_layer>:<tar_hash>")`.
pub fn snapshot_hash(env_id: &str, base_layer: &str, tar_hash: &str) -> LayerHash {
    let digest = blake3::hash(format!("snapshot:{env_id}:{base_layer}:{tar_hash}").as_bytes());
    LayerHash::from_digest(digest.as_bytes())
}

impl LayerManifest {
    /// Recompute the manifest's hash from its own fields.
    pub fn expected_hash(&self) -> Option<LayerHash> {
        match self.kind {
            LayerKind::Snapshot => Some(snapshot_hash(
                self.env_id.as_deref()?,
                self.base_layer.as_deref()?,
                &self.tar_hash,
            )),
            k => Some(layer_hash(k, self.parent.as_deref(), &self.tar_hash)),
        }
    }
}

impl Store {
    pub(crate) fn new_object_writer(&self) -> Result<ObjectWriter> {
        ObjectWriter::new(&self.layout.tmp, &self.layout.objects)
    }

    /// Store an object from a reader (streamed, hashed while written).
    pub fn put_object(&self, mut r: impl Read) -> Result<ObjectHash> {
        let _l = self.lock_exclusive()?;
        let mut w = self.new_object_writer()?;
        io::copy(&mut r, &mut w).map_err(io_err("store object"))?;
        Ok(w.finish()?.0)
    }

    /// Open an object for reading; the reader fails at EOF if the content is corrupt.
    pub fn open_object(&self, hash: &str) -> Result<ObjectReader> {
        if !is_valid_key(hash) {
            return Err(StoreError::Invalid(format!(
                "'{hash}' is not an object key"
            )));
        }
        ObjectReader::open(&object_path(&self.layout.objects, hash), hash)
    }

    /// True if the object exists (not verified).
    pub fn has_object(&self, hash: &str) -> bool {
        is_valid_key(hash) && object_path(&self.layout.objects, hash).is_file()
    }

    pub(crate) fn write_layer_manifest(&self, m: &LayerManifest) -> Result<()> {
        let body = serde_json::to_vec_pretty(m).map_err(|e| StoreError::Invalid(e.to_string()))?;
        write_atomic(&self.layout.tmp, &self.layout.layer_file(&m.hash), &body)
    }

    fn check_parent(&self, parent: Option<&str>) -> Result<()> {
        if let Some(p) = parent
            && (!is_valid_key(p) || !self.layout.layer_file(p).is_file())
        {
            return Err(StoreError::UnknownLayer(p.to_string()));
        }
        Ok(())
    }

    fn finish_import(
        &self,
        kind: LayerKind,
        parent: Option<&LayerHash>,
        tar_hash: String,
    ) -> Result<LayerManifest> {
        let hash = layer_hash(kind, parent.map(LayerHash::as_str), &tar_hash);
        let m = LayerManifest {
            hash: hash.clone(),
            kind,
            parent: parent.cloned(),
            object_refs: vec![tar_hash.clone()],
            read_only: true,
            tar_hash,
            env_id: None,
            base_layer: None,
            created_at: None,
            label: None,
        };
        if !self.layout.layer_file(&hash).exists() {
            self.write_layer_manifest(&m)?;
        }
        crash_point("import.after_manifest");
        Ok(m)
    }

    /// Pack a directory into a layer. See [`Store::import_layer_dir_with`].
    pub fn import_layer_dir(
        &self,
        dir: &Path,
        kind: LayerKind,
        parent: Option<&LayerHash>,
    ) -> Result<LayerManifest> {
        self.import_layer_dir_with(dir, kind, parent, ImportOptions::default())
    }

    /// Pack a directory into a deterministic tar streamed straight into the object store.
    pub fn import_layer_dir_with(
        &self,
        dir: &Path,
        kind: LayerKind,
        parent: Option<&LayerHash>,
        opts: ImportOptions,
    ) -> Result<LayerManifest> {
        if kind == LayerKind::Snapshot {
            return Err(StoreError::Invalid(
                "snapshots are created by commit".into(),
            ));
        }
        let _l = self.lock_exclusive()?;
        self.check_parent(parent.map(LayerHash::as_str))?;
        self.run_op(WalOp::Import, || {
            // An adopted directory becomes a layer tree as it is: whatever a build step or
            // an image left in it must carry no privileges (the packed tar never does).
            let mut w = self.new_object_writer()?;
            self.tree_worker().pack(dir, opts.adopt_tree, &mut w)?;
            let (tar_hash, _) = w.finish()?;
            crash_point("import.after_object");
            let hash = layer_hash(kind, parent.map(LayerHash::as_str), &tar_hash);
            let tree = self.layout.trees.join(&hash);
            if opts.adopt_tree && !exists_nofollow(&tree) {
                match fs::rename(dir, &tree) {
                    Ok(()) => fsync_dir(&self.layout.trees)?,
                    // Different filesystem: the tree will be unpacked on demand instead.
                    Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EXDEV as i32) => {}
                    Err(e) => return Err(io_at("adopt tree", dir)(e)),
                }
                crash_point("import.after_tree");
            }
            self.finish_import(kind, parent, tar_hash)
        })
    }

    /// Import a tar stream (already deterministic, e.g. produced by the helper).
    pub fn import_layer_tar(
        &self,
        mut r: impl Read,
        kind: LayerKind,
        parent: Option<&LayerHash>,
    ) -> Result<LayerManifest> {
        if kind == LayerKind::Snapshot {
            return Err(StoreError::Invalid(
                "snapshots are created by commit".into(),
            ));
        }
        let _l = self.lock_exclusive()?;
        self.check_parent(parent.map(LayerHash::as_str))?;
        self.run_op(WalOp::Import, || {
            let mut w = self.new_object_writer()?;
            io::copy(&mut r, &mut w).map_err(io_err("import layer tar"))?;
            let (tar_hash, _) = w.finish()?;
            crash_point("import.after_object");
            self.finish_import(kind, parent, tar_hash)
        })
    }

    pub(crate) fn read_layer(&self, hash: &str) -> Result<LayerManifest> {
        if !is_valid_key(hash) {
            return Err(StoreError::UnknownLayer(hash.to_string()));
        }
        let p = self.layout.layer_file(hash);
        let text = match fs::read(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::UnknownLayer(hash.to_string()));
            }
            Err(e) => return Err(io_at("read", &p)(e)),
        };
        let m: LayerManifest =
            serde_json::from_slice(&text).map_err(|e| StoreError::Integrity {
                key: format!("layer:{hash}"),
                reason: format!("invalid manifest: {e}"),
            })?;
        if m.hash != hash {
            return Err(StoreError::Integrity {
                key: format!("layer:{hash}"),
                reason: format!("manifest names {}", m.hash),
            });
        }
        Ok(m)
    }

    /// A layer manifest.
    pub fn layer(&self, hash: &str) -> Result<LayerManifest> {
        let _l = self.lock_shared()?;
        self.read_layer(hash)
    }

    /// Hashes of every layer manifest file (sorted).
    pub(crate) fn layer_hashes(&self) -> Result<Vec<String>> {
        let mut v = Vec::new();
        for e in fs::read_dir(&self.layout.layers).map_err(io_at("read", &self.layout.layers))? {
            let e = e.map_err(io_at("read", &self.layout.layers))?;
            v.push(e.file_name().to_string_lossy().into_owned());
        }
        v.sort();
        Ok(v)
    }

    /// Unpack a layer's object into `dest` (which must exist), verifying the object hash.
    pub(crate) fn unpack_layer_into(&self, m: &LayerManifest, dest: &Path) -> Result<()> {
        let r = self.open_object(&m.tar_hash)?;
        // Read and hashed on a thread of its own while this one unpacks (the tar reader's many
        // small reads are served from its buffers).
        let mut r = ReadAhead::spawn(r).map_err(io_err("start reading the object"))?;
        let opts = UnpackOptions {
            limits: self.archive_limits(),
            ..UnpackOptions::overlay()
        };
        self.tree_worker().unpack(&mut r, dest, opts)?;
        // Read to the end so the object's hash is checked even past the tar trailer.
        io::copy(&mut r, &mut io::sink()).map_err(read_err(&m.tar_hash))?;
        Ok(())
    }

    /// The unpacked read-only tree of a layer (overlay lowerdir), unpacked on first use into
    /// a staging dir and renamed into place.
    pub fn layer_tree(&self, hash: &str) -> Result<PathBuf> {
        let _l = self.lock_shared()?;
        let m = self.read_layer(hash)?;
        let tree = self.layout.trees.join(hash);
        if tree.is_dir() {
            return Ok(tree);
        }
        let staging = self.layout.tmp.join(unique_name("tree"));
        create_dir_mode(&staging, CONTENT_ROOT_MODE).map_err(io_at("create", &staging))?;
        let res = self.unpack_layer_into(&m, &staging).and_then(|()| {
            crash_point("tree.after_unpack");
            match fs::rename(&staging, &tree) {
                Ok(()) => fsync_dir(&self.layout.trees),
                // Someone else finished first: theirs is identical.
                Err(_) if tree.is_dir() => Ok(()),
                Err(e) => Err(io_at("install tree", &tree)(e)),
            }
        });
        let _ = self.remove_tree(&staging);
        res.map(|()| tree)
    }
}

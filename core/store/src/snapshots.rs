//! Snapshots of an environment's writable upper: commit, list, restore.

use crate::crash::crash_point;
use crate::error::{Result, StoreError, io_at};
use crate::fsutil::{CONTENT_ROOT_MODE, create_dir_mode, fsync_dir};
use crate::layers::{LayerKind, LayerManifest, snapshot_hash};
use crate::meta::now_rfc3339;
use crate::store::Store;
use crate::wal::WalOp;
use karapace_ids::LayerHash;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};

/// One snapshot as listed by `snapshots`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub hash: LayerHash,
    pub parent: Option<LayerHash>,
    /// The value `restore` accepts (equal to `hash`).
    pub restore_hash: LayerHash,
    pub tar_hash: String,
    #[serde(default)]
    pub created_at: Option<String>,
    /// The user's label (`commit --message`), if any.
    #[serde(default)]
    pub label: Option<String>,
}

/// The longest snapshot label.
pub const MAX_LABEL_LEN: usize = 200;

/// A snapshot label: at most [`MAX_LABEL_LEN`] characters, no control characters (it is shown
/// in terminals and JSON; a label from a remote is as hostile as any other input).
pub fn check_label(label: &str) -> std::result::Result<(), String> {
    if label.chars().count() > MAX_LABEL_LEN {
        return Err(format!(
            "a snapshot label has at most {MAX_LABEL_LEN} characters"
        ));
    }
    if label.chars().any(char::is_control) {
        return Err("a snapshot label must not contain control characters".into());
    }
    Ok(())
}

impl Store {
    /// Pack the env's upper (whiteout-aware) into a Snapshot layer; returns its hash.
    /// Idempotent: unchanged content gives the same hash and writes nothing new.
    pub fn commit(&self, env_id: &str) -> Result<LayerHash> {
        self.commit_labelled(env_id, None)
    }

    /// [`Store::commit`] with a label for the snapshot; committing unchanged content again with
    /// another label relabels the existing snapshot.
    pub fn commit_labelled(&self, env_id: &str, label: Option<&str>) -> Result<LayerHash> {
        let _starts = self.hold_session_starts(env_id)?;
        let _l = self.lock_exclusive()?;
        let meta = self.read_meta_raw(env_id)?;
        self.ensure_idle(env_id)?;
        self.run_op(
            WalOp::Commit {
                env_id: env_id.to_string(),
            },
            || {
                let mut w = self.new_object_writer()?;
                self.tree_worker()
                    .pack(&self.layout.upper(env_id), false, &mut w)?;
                let (tar_hash, _) = w.finish()?;
                crash_point("commit.after_object");
                let hash = snapshot_hash(env_id, &meta.base_layer, &tar_hash);
                if !self.layout.layer_file(&hash).is_file() {
                    let m = LayerManifest {
                        hash: hash.clone(),
                        kind: LayerKind::Snapshot,
                        parent: Some(meta.top_layer().clone()),
                        object_refs: vec![tar_hash.clone()],
                        read_only: true,
                        tar_hash,
                        env_id: Some(meta.env_id.clone()),
                        base_layer: Some(meta.base_layer.clone()),
                        created_at: Some(now_rfc3339()),
                        label: label.map(str::to_owned),
                    };
                    self.write_layer_manifest(&m)?;
                } else if let Some(label) = label {
                    let mut m = self.read_layer(&hash)?;
                    if m.label.as_deref() != Some(label) {
                        m.label = Some(label.to_owned());
                        self.write_layer_manifest(&m)?;
                    }
                }
                crash_point("commit.after_manifest");
                Ok(hash)
            },
        )
    }

    pub(crate) fn snapshot_manifests(&self, env_id: Option<&str>) -> Result<Vec<LayerManifest>> {
        let mut v = Vec::new();
        for h in self.layer_hashes()? {
            let Ok(m) = self.read_layer(&h) else { continue };
            if m.kind == LayerKind::Snapshot && (env_id.is_none() || m.env_id.as_deref() == env_id)
            {
                v.push(m);
            }
        }
        v.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.hash.cmp(&b.hash))
        });
        Ok(v)
    }

    /// Snapshots of an environment, oldest first.
    pub fn snapshots(&self, env_id: &str) -> Result<Vec<SnapshotInfo>> {
        let _l = self.lock_shared()?;
        self.read_meta_raw(env_id)?;
        Ok(self
            .snapshot_manifests(Some(env_id))?
            .into_iter()
            .map(|m| SnapshotInfo {
                restore_hash: m.hash.clone(),
                hash: m.hash,
                parent: m.parent,
                tar_hash: m.tar_hash,
                created_at: m.created_at,
                label: m.label,
            })
            .collect())
    }

    /// Replace the env's upper with a snapshot: unpack into a staging dir, then swap under
    /// the WAL (the old upper is kept until the commit point, then moved to the trash, which
    /// [`Store::empty_trash`] empties later).
    pub fn restore(&self, env_id: &str, snapshot: &str) -> Result<()> {
        let _starts = self.hold_session_starts(env_id)?;
        let _l = self.lock_exclusive()?;
        self.read_meta_raw(env_id)?;
        let m = match self.read_layer(snapshot) {
            Ok(m) if m.kind == LayerKind::Snapshot && m.env_id.as_deref() == Some(env_id) => m,
            Ok(_) | Err(StoreError::UnknownLayer(_)) => {
                return Err(StoreError::UnknownSnapshot(snapshot.to_string()));
            }
            Err(e) => return Err(e),
        };
        self.ensure_idle(env_id)?;
        let upper = self.layout.upper(env_id);
        let staging = self.restore_staging(env_id);
        let old = self.restore_old(env_id);
        let env_dir = self.layout.env_dir(env_id);
        self.run_op(
            WalOp::Restore {
                env_id: env_id.to_string(),
            },
            || {
                self.remove_tree(&staging)?;
                create_dir_mode(&staging, CONTENT_ROOT_MODE).map_err(io_at("create", &staging))?;
                crash_point("restore.mid_unpack");
                self.unpack_layer_into(&m, &staging)?;
                // Everything unpacked must be durable before the swap becomes the truth.
                let f = File::open(&staging).map_err(io_at("open", &staging))?;
                nix::unistd::syncfs(&f).map_err(|e| io_at("syncfs", &staging)(e.into()))?;
                crash_point("restore.after_unpack");
                fs::rename(&upper, &old).map_err(io_at("move old upper", &upper))?;
                fsync_dir(&env_dir)?;
                crash_point("restore.after_move_old");
                fs::rename(&staging, &upper).map_err(io_at("install restored upper", &upper))?;
                fsync_dir(&env_dir)?;
                crash_point("restore.after_swap");
                // The old upper leaves the critical path: one rename into the trash, removed
                // after the operation (see trash.rs).
                self.discard_tree(&old)
            },
        )
    }
}

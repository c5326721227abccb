//! Garbage collection with an exact dry run.
//!
//! Roots: every environment with metadata that is not an orphan. Orphans are env dirs
//! without metadata, and `Defined` leftovers (a build that never finished) without a live
//! session. From the roots, reachable = base/dependency/policy layers, the env's snapshots,
//! and every parent of a reachable layer; reachable objects = their `object_refs`.
//! Archived and running environments are roots, so they and what they use are protected.

use crate::error::{Result, StoreError, io_at};
use crate::layers::LayerManifest;
use crate::meta::EnvState;
use crate::objects::is_valid_key;
use crate::store::Store;
use crate::wal::WalOp;
use karapace_ids::LayerHash;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::fs;

/// What gc removed (or, in a dry run, would remove).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub orphaned_envs: Vec<String>,
    pub orphaned_layers: Vec<String>,
    pub orphaned_objects: Vec<String>,
    pub removed_envs: usize,
    pub removed_layers: usize,
    pub removed_objects: usize,
    /// Bytes the removal frees (would free, in a dry run): objects, layer manifests and their
    /// unpacked trees, orphaned environment directories, and the trash (old writable layers
    /// replaced by `restore`, not yet removed). Ours, after the standard tool's keys.
    #[serde(default)]
    pub freed_bytes: u64,
}

impl Store {
    fn object_keys(&self) -> Result<Vec<String>> {
        let mut v = Vec::new();
        for shard in
            fs::read_dir(&self.layout.objects).map_err(io_at("read", &self.layout.objects))?
        {
            let shard = shard.map_err(io_at("read", &self.layout.objects))?;
            if !shard.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            for e in fs::read_dir(shard.path()).map_err(io_at("read", &shard.path()))? {
                let e = e.map_err(io_at("read", &shard.path()))?;
                v.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        v.sort();
        Ok(v)
    }

    pub(crate) fn all_object_keys(&self) -> Result<Vec<String>> {
        self.object_keys()
    }

    fn gc_plan(&self) -> Result<GcReport> {
        let (envs, bad) = self.scan_metadata()?;
        if !bad.is_empty() {
            // Without every env's references we cannot know what is garbage.
            return Err(StoreError::CorruptMetadata(bad));
        }
        let mut orphan_envs = BTreeSet::new();
        let mut roots = Vec::new();
        for m in envs {
            if m.state == EnvState::Defined && self.live_session_count(&m.env_id)? == 0 {
                orphan_envs.insert(m.env_id.to_string());
            } else {
                roots.push(m);
            }
        }
        for e in fs::read_dir(&self.layout.envs).map_err(io_at("read", &self.layout.envs))? {
            let e = e.map_err(io_at("read", &self.layout.envs))?;
            let id = e.file_name().to_string_lossy().into_owned();
            if !self.layout.meta_file(&id).exists() && self.live_session_count(&id)? == 0 {
                orphan_envs.insert(id);
            }
        }
        let mut layers: HashMap<String, LayerManifest> = HashMap::new();
        for h in self.layer_hashes()? {
            let m = self.read_layer(&h)?;
            layers.insert(h, m);
        }
        let mut reachable: BTreeSet<String> = BTreeSet::new();
        let mut todo: Vec<String> = Vec::new();
        for m in &roots {
            todo.extend(
                m.lower_layers_top_first()
                    .into_iter()
                    .map(LayerHash::into_string),
            );
        }
        let root_ids: BTreeSet<&str> = roots.iter().map(|m| m.env_id.as_str()).collect();
        for l in layers.values() {
            if l.env_id.as_deref().is_some_and(|id| root_ids.contains(id)) {
                todo.push(l.hash.to_string());
            }
        }
        while let Some(h) = todo.pop() {
            if reachable.insert(h.clone())
                && let Some(p) = layers.get(&h).and_then(|l| l.parent.as_ref())
            {
                todo.push(p.to_string());
            }
        }
        let mut live_objects: BTreeSet<&str> = BTreeSet::new();
        for h in &reachable {
            if let Some(l) = layers.get(h) {
                live_objects.extend(l.object_refs.iter().map(String::as_str));
                live_objects.insert(l.tar_hash.as_str());
            }
        }
        let mut orphaned_layers: Vec<String> = layers
            .keys()
            .filter(|h| !reachable.contains(*h))
            .cloned()
            .collect();
        orphaned_layers.sort();
        let orphaned_objects: Vec<String> = self
            .object_keys()?
            .into_iter()
            .filter(|k| is_valid_key(k) && !live_objects.contains(k.as_str()))
            .collect();
        let orphaned_envs: Vec<String> = orphan_envs.into_iter().collect();
        let freed_bytes = orphaned_objects
            .iter()
            .map(|k| self.object_bytes(k))
            .chain(orphaned_layers.iter().map(|h| {
                let tree = crate::usage::tree_bytes(&self.layout.trees.join(h));
                let manifest = fs::symlink_metadata(self.layout.layer_file(h))
                    .map_or(0, |m| std::os::unix::fs::MetadataExt::blocks(&m) * 512);
                tree + manifest
            }))
            .chain(orphaned_envs.iter().map(|id| self.env_dir_bytes(id)))
            .chain(std::iter::once(self.trash_bytes()))
            .sum();
        Ok(GcReport {
            freed_bytes,
            dry_run: true,
            removed_envs: orphaned_envs.len(),
            removed_layers: orphaned_layers.len(),
            removed_objects: orphaned_objects.len(),
            orphaned_envs,
            orphaned_layers,
            orphaned_objects,
        })
    }

    /// Collect garbage. A dry run reports exactly what a real run would remove.
    pub fn gc(&self, dry_run: bool) -> Result<GcReport> {
        // Wait for running builds (their fresh layers are not referenced yet); the dry run too,
        // so that it reports exactly what a real run would remove.
        let _lease = self.gc_lease()?;
        let _l = self.lock_exclusive()?;
        let mut plan = self.gc_plan()?;
        plan.dry_run = dry_run;
        if dry_run {
            return Ok(plan);
        }
        for id in self.metadata_ids()? {
            self.prune_dead_sessions(&id);
        }
        // Cached trees of layers that no longer exist are pure cache: drop them too.
        let op = WalOp::Gc {
            envs: plan.orphaned_envs.clone(),
            layers: plan.orphaned_layers.clone(),
            objects: plan.orphaned_objects.clone(),
        };
        let op2 = op.clone();
        self.run_op(op, || self.settle(&op2))?;
        for e in fs::read_dir(&self.layout.trees)
            .map_err(io_at("read", &self.layout.trees))?
            .flatten()
        {
            let h = e.file_name().to_string_lossy().into_owned();
            if !self.layout.layer_file(&h).exists() {
                self.remove_tree(&e.path())?;
            }
        }
        self.prune_digests()?;
        // Trees discarded by restores (unless another process is emptying the trash right now).
        self.empty_trash()?;
        Ok(plan)
    }
}

//! Disk usage: what environments, layers and the garbage cost on disk.
//!
//! Sizes are allocated bytes (`st_blocks × 512`, as `du` counts them), hard links counted once,
//! nothing followed out of a tree. A file that cannot be read (a directory a workload made
//! unreadable) counts as what could be measured: usage is an estimate for people, never an input
//! to a decision that could lose data.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::objects::{is_valid_key, object_path};
use crate::store::Store;
use karapace_ids::{EnvId, LayerHash};

/// Allocated bytes of one file (not followed).
fn file_bytes(path: &Path) -> u64 {
    fs::symlink_metadata(path).map_or(0, |m| m.blocks().saturating_mul(512))
}

/// Allocated bytes of everything beneath `root` (included), hard links once.
pub fn tree_bytes(root: &Path) -> u64 {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total = total.saturating_add(meta.blocks().saturating_mul(512));
        if meta.is_dir()
            && let Ok(rd) = fs::read_dir(&path)
        {
            stack.extend(rd.flatten().map(|e| e.path()));
        }
    }
    total
}

impl Store {
    /// Bytes of one stored object.
    pub fn object_bytes(&self, key: &str) -> u64 {
        if !is_valid_key(key) {
            return 0;
        }
        file_bytes(&object_path(&self.layout.objects, key))
    }

    /// Bytes of one layer as stored: its manifest and its objects (its unpacked tree is a cache,
    /// counted by [`Store::tree_cache_bytes`]).
    pub fn layer_bytes(&self, hash: &str) -> u64 {
        if !is_valid_key(hash) {
            return 0;
        }
        let objects: u64 = self.read_layer(hash).map_or(0, |m| {
            let mut keys: Vec<&str> = m.object_refs.iter().map(String::as_str).collect();
            keys.push(&m.tar_hash);
            keys.sort_unstable();
            keys.dedup();
            keys.iter().map(|k| self.object_bytes(k)).sum()
        });
        file_bytes(&self.layout.layer_file(hash)).saturating_add(objects)
    }

    /// Bytes of every unpacked layer tree (a cache gc trims with the layers).
    pub fn tree_cache_bytes(&self) -> u64 {
        tree_bytes(&self.layout.trees)
    }

    /// The snapshots of every environment, by `env_id`, each environment's oldest first: one
    /// read of the layer manifests for a whole store (asking for each of N environments would
    /// read them N times).
    pub fn snapshot_hashes_by_env(&self) -> std::collections::HashMap<EnvId, Vec<LayerHash>> {
        let mut by_env: std::collections::HashMap<EnvId, Vec<LayerHash>> =
            std::collections::HashMap::new();
        for m in self.snapshot_manifests(None).unwrap_or_default() {
            if let Some(env) = m.env_id {
                by_env.entry(env).or_default().push(m.hash);
            }
        }
        by_env
    }

    /// Bytes of an environment's own directory: its writable layer and work directory.
    pub fn env_dir_bytes(&self, env_id: &str) -> u64 {
        if !is_valid_key(env_id) {
            return 0;
        }
        tree_bytes(&self.layout.env_dir(env_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_links_count_once_and_links_are_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let big = vec![7u8; 1 << 20];
        fs::write(t.path().join("a"), &big).unwrap();
        let alone = tree_bytes(t.path());
        assert!(alone >= 1 << 20, "{alone}");
        fs::hard_link(t.path().join("a"), t.path().join("b")).unwrap();
        std::os::unix::fs::symlink("/usr", t.path().join("usr")).unwrap();
        let linked = tree_bytes(t.path());
        assert!(linked < alone + 8192, "{alone} → {linked}");
    }
}

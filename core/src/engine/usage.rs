//! `du`, and the sizes `inspect` and `list --json` add: what each environment costs on disk,
//! what its environments share, what gc would give back.

use std::collections::HashMap;

use karapace_store::{EnvId, EnvMetadata, LayerHash, Store};
use serde::Serialize;

use super::Engine;
use crate::error::Result;

/// One layer of an environment and its stored bytes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LayerUsage {
    pub hash: String,
    /// `base`, `dependency`, `policy` or `snapshot`.
    pub kind: &'static str,
    pub bytes: u64,
    /// How many environments of the store use it.
    pub shared_by: usize,
}

/// What one environment costs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EnvUsage {
    pub env_id: String,
    pub short_id: String,
    pub name: Option<String>,
    /// Its writable layer and work directory.
    pub writable_bytes: u64,
    pub layers: Vec<LayerUsage>,
    /// Everything destroying it (and then gc) would free: its directory, its snapshots and
    /// the layers no other environment uses.
    pub exclusive_bytes: u64,
}

/// The whole store, `du --json`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DiskUsage {
    pub environments: Vec<EnvUsage>,
    /// Layers used by more than one environment, each counted once.
    pub shared_bytes: u64,
    /// Unpacked layer trees (a cache of the layers).
    pub tree_cache_bytes: u64,
    /// The image cache (`$XDG_CACHE_HOME/karapace/images`, shared by every store of the user).
    pub image_cache: String,
    pub image_cache_bytes: u64,
    /// What `gc` would free now.
    pub reclaimable_bytes: u64,
    /// The store's directory as a whole.
    pub store_bytes: u64,
}

/// The layers of `env`: its base, dependency and policy layers, and its snapshots (from
/// `snapshots`, the store's snapshots by environment).
fn layers_of(
    env: &EnvMetadata,
    snapshots: &HashMap<EnvId, Vec<LayerHash>>,
) -> Vec<(LayerHash, &'static str)> {
    let mut v = vec![(env.base_layer.clone(), "base")];
    v.extend(
        env.dependency_layers
            .iter()
            .map(|h| (h.clone(), "dependency")),
    );
    v.extend(env.policy_layer.iter().map(|h| (h.clone(), "policy")));
    v.extend(
        snapshots
            .get(&env.env_id)
            .into_iter()
            .flatten()
            .map(|h| (h.clone(), "snapshot")),
    );
    v
}

/// The usage of `envs`, layers' sharing counted among them.
fn env_usages(store: &Store, envs: &[EnvMetadata]) -> Vec<EnvUsage> {
    usages_of(store, envs, |_| true)
}

/// The usage of the environments of `envs` that `wanted` picks, their layers' sharing counted
/// across all of `envs`: only the picked ones' trees are measured (the TUI's detail view asks
/// for one environment at every refresh; walking every environment's writable layer for it
/// would make a large store slow).
fn usages_of(
    store: &Store,
    envs: &[EnvMetadata],
    wanted: impl Fn(&EnvMetadata) -> bool,
) -> Vec<EnvUsage> {
    let snapshots = store.snapshot_hashes_by_env();
    let per_env: Vec<Vec<(LayerHash, &'static str)>> =
        envs.iter().map(|e| layers_of(e, &snapshots)).collect();
    let mut users: HashMap<&str, usize> = HashMap::new();
    for layers in &per_env {
        for (h, _) in layers {
            *users.entry(h.as_str()).or_default() += 1;
        }
    }
    let mut sizes: HashMap<&str, u64> = HashMap::new();
    envs.iter()
        .zip(&per_env)
        .filter(|(env, _)| wanted(env))
        .map(|(env, layers)| {
            let layers: Vec<LayerUsage> = layers
                .iter()
                .map(|(h, kind)| LayerUsage {
                    hash: h.to_string(),
                    kind,
                    bytes: *sizes
                        .entry(h.as_str())
                        .or_insert_with(|| store.layer_bytes(h)),
                    shared_by: users.get(h.as_str()).copied().unwrap_or(1),
                })
                .collect();
            let writable_bytes = store.env_dir_bytes(&env.env_id);
            let exclusive_bytes = writable_bytes
                + layers
                    .iter()
                    .filter(|l| l.shared_by <= 1)
                    .map(|l| l.bytes)
                    .sum::<u64>();
            EnvUsage {
                env_id: env.env_id.to_string(),
                short_id: env.short_id.clone(),
                name: env.name.clone(),
                writable_bytes,
                layers,
                exclusive_bytes,
            }
        })
        .collect()
}

impl Engine {
    /// The usage of `envs` (all of the store's, for sharing to be counted right), in order.
    pub fn env_usages(&self, envs: &[EnvMetadata]) -> Result<Vec<EnvUsage>> {
        Ok(match self.open_read()? {
            Some(store) => env_usages(&store, envs),
            None => Vec::new(),
        })
    }

    /// The usage of one environment (its layers' sharing counted across the store).
    pub fn env_usage(&self, env: &EnvMetadata) -> Result<Option<EnvUsage>> {
        let Some(store) = self.open_read()? else {
            return Ok(None);
        };
        let (envs, unreadable) = self.list_readable()?;
        if !unreadable.is_empty() {
            // Which layers are shared cannot be known: no figures rather than wrong ones.
            return Ok(None);
        }
        Ok(usages_of(&store, &envs, |e| e.env_id == env.env_id)
            .into_iter()
            .next())
    }

    /// `du`: every environment, what they share, the caches, and what gc would free. Read-only.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let image_cache = karapace_images::ImageConfig::load()
            .map_or_else(|_| karapace_images::default_cache_dir(), |c| c.cache_dir);
        let image_cache_bytes = karapace_store::usage::tree_bytes(&image_cache);
        let Some(store) = self.open_read()? else {
            return Ok(DiskUsage {
                environments: Vec::new(),
                shared_bytes: 0,
                tree_cache_bytes: 0,
                image_cache: image_cache.display().to_string(),
                image_cache_bytes,
                reclaimable_bytes: 0,
                store_bytes: 0,
            });
        };
        let envs = self.list()?;
        let environments = env_usages(&store, &envs);
        let mut shared: HashMap<&str, u64> = HashMap::new();
        for e in &environments {
            for l in e.layers.iter().filter(|l| l.shared_by > 1) {
                shared.insert(&l.hash, l.bytes);
            }
        }
        let shared_bytes = shared.values().sum();
        let reclaimable_bytes = store.gc(true).map_or(0, |r| r.freed_bytes);
        Ok(DiskUsage {
            shared_bytes,
            tree_cache_bytes: store.tree_cache_bytes(),
            image_cache: image_cache.display().to_string(),
            image_cache_bytes,
            reclaimable_bytes,
            store_bytes: karapace_store::usage::tree_bytes(self.root()),
            environments,
        })
    }

    /// `gc --images`: removes cached images (and their recorded base layers) that no environment
    /// of this store was built from. Returns the images removed and the bytes freed. The cache is
    /// shared by the user's stores: an environment of another store built from a removed image
    /// downloads it again if it is rebuilt.
    pub fn prune_images(&self, dry_run: bool) -> Result<(Vec<String>, u64)> {
        let cfg = karapace_images::ImageConfig::load()?;
        let mut keep = std::collections::BTreeSet::new();
        if let Some(store) = self.open_read()? {
            for env in store.list_envs()? {
                // An environment whose lock cannot be read keeps nothing alive; stop rather
                // than remove its image on a guess.
                let tree = super::policy_layer::layer_tree(&store, &env)?;
                let lock = super::policy_layer::read_lock(&tree)?;
                if let Some(hex) = lock.base_image_digest.strip_prefix("sha256:") {
                    keep.insert(hex.to_owned());
                }
            }
        }
        Ok(karapace_images::ImageCache::new(&cfg.cache_dir).prune(&keep, dry_run)?)
    }
}

//! `verify-store`: re-hash every object (in parallel, bounded memory), check every layer
//! manifest and every metadata checksum.

use crate::error::Result;
use crate::layers::LayerKind;
use crate::meta;
use crate::objects::{is_valid_key, object_path, verify_object};
use crate::store::Store;
use karapace_ids::LayerHash;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyFailure {
    pub key: String,
    pub reason: String,
}

/// Result of [`Store::verify`].
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub checked: usize,
    pub passed: usize,
    pub failed: usize,
    pub failures: Vec<VerifyFailure>,
    pub objects: usize,
    pub layers: usize,
    pub metadata: usize,
    pub bytes_hashed: u64,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.failed == 0
    }
    fn record(&mut self, key: String, outcome: Option<String>) {
        self.checked += 1;
        match outcome {
            None => self.passed += 1,
            Some(reason) => {
                self.failed += 1;
                self.failures.push(VerifyFailure { key, reason });
            }
        }
    }
}

impl Store {
    /// Check everything in the store. Failures are listed, never skipped.
    pub fn verify(&self) -> Result<VerifyReport> {
        let _l = self.lock_shared()?;
        let mut r = VerifyReport::default();
        let keys = self.all_object_keys()?;
        let objects_dir = self.layout.objects.clone();
        // Each rayon task holds one 1 MiB buffer: memory is bounded by the thread count.
        let results: Vec<(String, Result<Option<String>>, u64)> = keys
            .par_iter()
            .map(|k| {
                if !is_valid_key(k) {
                    return (
                        k.clone(),
                        Ok(Some("file name is not an object key".to_string())),
                        0,
                    );
                }
                let p = object_path(&objects_dir, k);
                let size = fs::symlink_metadata(&p).map_or(0, |m| m.len());
                (k.clone(), verify_object(&p, k), size)
            })
            .collect();
        let mut object_ok: HashMap<String, bool> = HashMap::new();
        for (k, res, size) in results {
            let outcome = match res {
                Ok(o) => o,
                Err(e) => Some(e.to_string()),
            };
            object_ok.insert(k.clone(), outcome.is_none());
            r.bytes_hashed += size;
            r.objects += 1;
            r.record(format!("object:{k}"), outcome);
        }
        for h in self.layer_hashes()? {
            r.layers += 1;
            let outcome = match self.read_layer(&h) {
                Err(e) => Some(e.to_string()),
                Ok(m) => {
                    let mut problems = Vec::new();
                    match m.expected_hash() {
                        Some(x) if x == m.hash => {}
                        Some(x) => problems.push(format!("hash does not recompute (expected {x})")),
                        None => problems.push("snapshot without env_id/base_layer".to_string()),
                    }
                    if m.kind == LayerKind::Snapshot && m.parent.is_none() {
                        problems.push("snapshot without parent".to_string());
                    }
                    for o in m.object_refs.iter().chain(std::iter::once(&m.tar_hash)) {
                        match object_ok.get(o) {
                            Some(true) => {}
                            Some(false) => problems.push(format!("object {o} is corrupt")),
                            None => problems.push(format!("object {o} is missing")),
                        }
                    }
                    if let Some(p) = &m.parent
                        && !self.layout.layer_file(p).is_file()
                    {
                        problems.push(format!("parent layer {p} is missing"));
                    }
                    problems.dedup();
                    (!problems.is_empty()).then(|| problems.join("; "))
                }
            };
            r.record(format!("layer:{h}"), outcome);
        }
        for id in self.metadata_ids()? {
            r.metadata += 1;
            let path = self.layout.meta_file(&id);
            let outcome = match fs::read(&path) {
                Err(e) => Some(format!("unreadable: {e}")),
                Ok(text) => match meta::decode(&text, &id) {
                    Err(reason) => Some(reason),
                    Ok(m) => {
                        let missing: Vec<String> = m
                            .lower_layers_top_first()
                            .into_iter()
                            .filter(|l| !self.layout.layer_file(l).is_file())
                            .map(LayerHash::into_string)
                            .collect();
                        (!missing.is_empty() && m.state != meta::EnvState::Defined)
                            .then(|| format!("missing layers: {}", missing.join(", ")))
                    }
                },
            };
            r.record(format!("metadata:{id}"), outcome);
        }
        Ok(r)
    }
}

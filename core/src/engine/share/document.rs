//! The environment record a remote holds under `metadata/<env_id>`: the environment's metadata
//! as the store keeps it, plus what a pulling machine needs and cannot derive — the objects
//! holding the lock and the normalized manifest, and the environment's snapshots. Sealed with
//! the store's metadata checksum (which covers every key), so a server can verify it without
//! knowing these extra keys, and the standard tool's server stores it like any metadata.

use karapace_store::{
    EnvMetadata, EnvState, LayerHash, is_valid_key, open_document, seal_document,
};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// Largest record accepted from a remote (real ones are about 1 KiB plus 70 bytes a snapshot).
pub const MAX_RECORD_BYTES: u64 = 4 << 20;
/// Most layers (dependency layers and snapshots together) a record may name: each is a request,
/// and a hostile record must not turn a pull into an endless crawl.
pub const MAX_LAYERS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedEnv {
    #[serde(flatten)]
    pub meta: EnvMetadata,
    /// Object holding the environment's `karapace.lock` (its `env_id` is computed from it).
    pub lock_object: String,
    /// Object holding the normalized manifest's canonical JSON (its blake3 is `manifest_hash`).
    pub manifest_object: String,
    /// Snapshot layers, oldest first.
    #[serde(default)]
    pub snapshots: Vec<LayerHash>,
}

impl SharedEnv {
    /// The sealed JSON text to upload.
    pub fn encode(&self) -> Result<String> {
        let mut doc = self.clone();
        doc.meta.checksum = String::new();
        let mut value = serde_json::to_value(&doc).map_err(|e| CoreError::Encode {
            what: "the environment record".into(),
            message: e.to_string(),
        })?;
        if let Some(m) = value.as_object_mut() {
            m.remove("checksum");
        }
        Ok(seal_document(value)?)
    }

    /// Parses and checks a record received for `env_id`: sealed, about that environment,
    /// every reference a well-formed key. What the keys point at is checked when fetched.
    pub fn decode(bytes: &[u8], env_id: &str) -> std::result::Result<SharedEnv, String> {
        let value = open_document(bytes)?;
        let doc: SharedEnv =
            serde_json::from_value(value).map_err(|e| format!("not an environment record: {e}"))?;
        if doc.meta.env_id != env_id {
            return Err(format!("it describes environment {}", doc.meta.env_id));
        }
        // Layer hashes were checked when the record was read; the object keys are checked here.
        let keys = [
            &doc.lock_object,
            &doc.manifest_object,
            &doc.meta.manifest_hash,
        ];
        if let Some(bad) = keys.into_iter().find(|k| !is_valid_key(k)) {
            return Err(format!("'{bad}' is not a key"));
        }
        if doc.meta.dependency_layers.len() + doc.snapshots.len() > MAX_LAYERS {
            return Err(format!("it names more than {MAX_LAYERS} layers"));
        }
        if doc.meta.state == EnvState::Defined {
            return Err("the environment was never built".into());
        }
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    fn layer(c: char) -> LayerHash {
        LayerHash::parse(&key(c)).unwrap()
    }

    fn sample() -> SharedEnv {
        SharedEnv {
            meta: EnvMetadata {
                env_id: key('e').parse().unwrap(),
                short_id: key('e')[..12].to_string(),
                name: Some("dev".into()),
                state: EnvState::Built,
                manifest_hash: key('a'),
                base_layer: layer('b'),
                dependency_layers: vec![layer('c')],
                policy_layer: None,
                created_at: "2026-12-04T00:00:00Z".into(),
                updated_at: "2026-12-04T00:00:00Z".into(),
                checksum: String::new(),
            },
            lock_object: key('1'),
            manifest_object: key('2'),
            snapshots: vec![layer('3')],
        }
    }

    #[test]
    fn a_record_round_trips_and_its_seal_covers_the_extra_keys() {
        let text = sample().encode().unwrap();
        let back = SharedEnv::decode(text.as_bytes(), &key('e')).unwrap();
        assert_eq!(back.snapshots, sample().snapshots);
        assert_eq!(back.lock_object, key('1'));
        // The store's own metadata check accepts it too (a server verifies it that way).
        karapace_store::decode_metadata(text.as_bytes(), &key('e')).unwrap();
        let forged = text.replace(&key('3'), &key('4'));
        let err = SharedEnv::decode(forged.as_bytes(), &key('e')).unwrap_err();
        assert!(err.contains("checksum"), "{err}");
    }

    #[test]
    fn a_record_for_another_environment_or_with_bad_keys_is_refused() {
        let text = sample().encode().unwrap();
        assert!(SharedEnv::decode(text.as_bytes(), &key('f')).is_err());
        // A record sealed correctly around a layer "hash" that is a path.
        let mut value = serde_json::to_value(sample()).unwrap();
        let doc = value.as_object_mut().unwrap();
        doc.remove("checksum");
        doc.insert("snapshots".into(), serde_json::json!(["../../etc/passwd"]));
        let text = karapace_store::seal_document(value).unwrap();
        let err = SharedEnv::decode(text.as_bytes(), &key('e')).unwrap_err();
        assert!(err.contains("not a layer hash"), "{err}");
        let mut bad = sample();
        bad.lock_object = "../x".into();
        let text = bad.encode().unwrap();
        let err = SharedEnv::decode(text.as_bytes(), &key('e')).unwrap_err();
        assert!(err.contains("is not a key"), "{err}");
    }
}

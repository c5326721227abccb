//! Environment metadata (`store/metadata/<env_id>`, JSON with a blake3 checksum) and
//! name rules.

use crate::error::{Result, StoreError};
use karapace_ids::{EnvId, LayerHash};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Lifecycle state of an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EnvState {
    Defined,
    Built,
    Running,
    Frozen,
    Archived,
}

impl fmt::Display for EnvState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EnvState::Defined => "defined",
            EnvState::Built => "built",
            EnvState::Running => "running",
            EnvState::Frozen => "frozen",
            EnvState::Archived => "archived",
        })
    }
}

/// Stored description of one environment; also the JSON shape of `list --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvMetadata {
    pub env_id: EnvId,
    pub short_id: String,
    pub name: Option<String>,
    pub state: EnvState,
    pub manifest_hash: String,
    /// Bottom layer (the base image).
    pub base_layer: LayerHash,
    /// Read-only layers above the base, bottom to top.
    #[serde(default)]
    pub dependency_layers: Vec<LayerHash>,
    /// Topmost read-only layer, if any.
    #[serde(default)]
    pub policy_layer: Option<LayerHash>,
    /// RFC 3339 UTC.
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    /// blake3 hex over the canonical JSON of every other field (set by the store).
    #[serde(default)]
    pub checksum: String,
}

impl EnvMetadata {
    /// Layers as overlay lowerdirs, top first.
    pub fn lower_layers_top_first(&self) -> Vec<LayerHash> {
        let mut v = Vec::new();
        if let Some(p) = &self.policy_layer {
            v.push(p.clone());
        }
        v.extend(self.dependency_layers.iter().rev().cloned());
        v.push(self.base_layer.clone());
        v
    }

    /// The topmost read-only layer (a snapshot's parent).
    pub fn top_layer(&self) -> &LayerHash {
        self.policy_layer
            .as_ref()
            .or(self.dependency_layers.last())
            .unwrap_or(&self.base_layer)
    }
}

/// Validate an environment name: `[A-Za-z0-9_-]{1,64}`.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(StoreError::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return bad("must not be empty");
    }
    if name.len() > 64 {
        return bad("must be at most 64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return bad("only letters, digits, '_' and '-' are allowed");
    }
    Ok(())
}

/// Serialize a JSON value with object keys sorted at every level (independent of
/// `serde_json`'s `preserve_order` feature).
pub(crate) fn canonical_json(v: &Value) -> String {
    fn go(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String((*k).clone()).to_string());
                    out.push(':');
                    go(&m[*k], out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    go(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    go(v, &mut s);
    s
}

fn checksum_of(v: &Value) -> String {
    let mut v = v.clone();
    if let Value::Object(m) = &mut v {
        m.remove("checksum");
    }
    blake3::hash(canonical_json(&v).as_bytes())
        .to_hex()
        .to_string()
}

/// Serialize metadata with a fresh checksum.
pub(crate) fn encode(meta: &EnvMetadata) -> Result<(EnvMetadata, String)> {
    let mut m = meta.clone();
    m.checksum = String::new();
    let v = serde_json::to_value(&m).map_err(|e| StoreError::Invalid(e.to_string()))?;
    m.checksum = checksum_of(&v);
    let text = serde_json::to_string_pretty(&m).map_err(|e| StoreError::Invalid(e.to_string()))?;
    Ok((m, text))
}

/// Seals a JSON object the way metadata is sealed: sets its `checksum` key to the blake3 of the
/// canonical JSON of everything else, and returns it as pretty text. Used for metadata shared
/// with a remote, which carries more keys than the store's own file.
pub fn seal_document(mut v: Value) -> Result<String> {
    let sum = checksum_of(&v);
    let Value::Object(m) = &mut v else {
        return Err(StoreError::Invalid(
            "a sealed document is a JSON object".into(),
        ));
    };
    m.insert("checksum".into(), Value::String(sum));
    serde_json::to_string_pretty(&v).map_err(|e| StoreError::Invalid(e.to_string()))
}

/// Parses a sealed JSON document and checks its checksum (every key but `checksum` counts,
/// known or not). `Err(reason)` when unreadable or the checksum fails.
pub fn open_document(text: &[u8]) -> std::result::Result<Value, String> {
    let v: Value = serde_json::from_slice(text).map_err(|e| format!("invalid JSON: {e}"))?;
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    let stored = v
        .get("checksum")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let computed = checksum_of(&v);
    if stored != computed {
        return Err(format!(
            "checksum mismatch (stored '{stored}', computed '{computed}')"
        ));
    }
    Ok(v)
}

/// Parse and check metadata text. `Err(reason)` when unreadable or the checksum fails.
pub(crate) fn decode(text: &[u8], expected_id: &str) -> std::result::Result<EnvMetadata, String> {
    let v = open_document(text)?;
    let m: EnvMetadata = serde_json::from_value(v).map_err(|e| format!("invalid metadata: {e}"))?;
    if m.env_id != expected_id {
        return Err(format!(
            "file names env {expected_id} but contains {}",
            m.env_id
        ));
    }
    Ok(m)
}

/// Serialize metadata as the store writes it (pretty JSON with a fresh checksum), e.g. to
/// send it to a remote or to build test documents; the inverse of [`decode_metadata`].
pub fn encode_metadata(meta: &EnvMetadata) -> Result<String> {
    encode(meta).map(|(_, text)| text)
}

/// Check metadata received from elsewhere (a remote, an upload) by the store's own rules: the
/// bytes must parse, carry a valid embedded checksum and name `expected_id` as their `env_id`.
/// `Err(reason)` says which rule failed. The one definition of the checksum rule stays here.
pub fn decode_metadata(text: &[u8], expected_id: &str) -> std::result::Result<EnvMetadata, String> {
    decode(text, expected_id)
}

/// Current time as RFC 3339 UTC (seconds).
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("dev_env-1").is_ok());
        assert!(validate_name(&"a".repeat(64)).is_ok());
        assert!(validate_name(&"a".repeat(65)).is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name("é").is_err());
    }

    #[test]
    fn state_serde_and_display() {
        assert_eq!(
            serde_json::to_string(&EnvState::Archived).unwrap(),
            "\"Archived\""
        );
        assert_eq!(EnvState::Frozen.to_string(), "frozen");
    }

    #[test]
    fn canonical_sorts_keys() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[1,{"z":1,"y":2}],"c":"x"}}"#).unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":"x","d":[1,{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn metadata_round_trips_through_the_public_codec() {
        let meta = EnvMetadata {
            env_id: "ab".repeat(32).parse().unwrap(),
            short_id: "ab".repeat(6),
            name: None,
            state: EnvState::Built,
            manifest_hash: "cd".repeat(32),
            base_layer: "ef".repeat(32).parse().unwrap(),
            dependency_layers: vec![],
            policy_layer: None,
            created_at: now_rfc3339(),
            updated_at: now_rfc3339(),
            checksum: String::new(),
        };
        let text = encode_metadata(&meta).unwrap();
        let back = decode_metadata(text.as_bytes(), &meta.env_id).unwrap();
        assert_eq!(back.env_id, meta.env_id);
        assert!(decode_metadata(text.as_bytes(), &"cd".repeat(32)).is_err());
        let tampered = text.replace("Built", "Frozen");
        assert!(decode_metadata(tampered.as_bytes(), &meta.env_id).is_err());
    }

    #[test]
    fn rfc3339_shape() {
        let s = now_rfc3339();
        assert_eq!(s.len(), 20);
        assert!(s.ends_with('Z'));
    }
}

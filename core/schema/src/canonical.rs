//! Canonical JSON of a normalized manifest and the manifest hash.
//!
//! Compact JSON, fields in the fixed order of formats.md, absent resource
//! limits written as `null`. The text is written by hand (rather than through
//! a serializer) so the byte layout is visibly fixed here; a test checks it is
//! byte-identical to `serde_json`'s rendering of the same struct, which is what
//! the standard tool hashes.

use std::fmt::Write as _;

use crate::normalize::NormalizedManifest;

impl NormalizedManifest {
    /// The compact canonical JSON: `{"manifest_version":1,"base_image":…,"memory_limit_mb":null}`.
    pub fn canonical_json(&self) -> String {
        let mut out = String::with_capacity(256);
        let _ = write!(
            out,
            "{{\"manifest_version\":{},\"base_image\":{},\"system_packages\":{},\"gui_apps\":{},\
             \"hardware_gpu\":{},\"hardware_audio\":{},\"mounts\":[",
            self.manifest_version,
            json_string(&self.base_image),
            json_string_array(&self.system_packages),
            json_string_array(&self.gui_apps),
            self.hardware_gpu,
            self.hardware_audio,
        );
        for (i, m) in self.mounts.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"label\":{},\"host_path\":{},\"container_path\":{}}}",
                json_string(&m.label),
                json_string(&m.host_path),
                json_string(&m.container_path)
            );
        }
        let _ = write!(
            out,
            "],\"runtime_backend\":{},\"network_isolation\":{},\"cpu_shares\":{},\"memory_limit_mb\":{}}}",
            json_string(self.runtime_backend.as_str()),
            self.network_isolation,
            json_opt_u64(self.cpu_shares),
            json_opt_u64(self.memory_limit_mb),
        );
        out
    }

    /// blake3 of [`canonical_json`](Self::canonical_json), 64 lowercase hex.
    pub fn manifest_hash(&self) -> String {
        blake3::hash(self.canonical_json().as_bytes())
            .to_hex()
            .to_string()
    }
}

/// JSON string literal with `serde_json`'s escaping (infallible, unlike
/// `serde_json::to_string`).
fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn json_string_array(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| json_string(s)).collect();
    format!("[{}]", parts.join(","))
}

fn json_opt_u64(v: Option<u64>) -> String {
    v.map_or_else(|| "null".to_owned(), |n| n.to_string())
}

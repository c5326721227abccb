//! An environment as `list --json` and `inspect --json` show it: the standard tool's keys, in its
//! order, which users' scripts read (`../spec/cli.md`, "Text and JSON outputs").
//!
//! The store's record (`EnvMetadata`) is not serialised directly: its checksum covers its own
//! fields, and the standard tool's `ref_count` is not one of them.

use karapace_store::{EnvMetadata, EnvState};
use serde::Serialize;

/// The standard tool counts the builds that share an environment in `ref_count`. Here an
/// environment is kept by its record alone (gc follows records and snapshots, not a counter),
/// so every environment reports one reference.
pub const REF_COUNT: u32 = 1;

#[derive(Debug, Serialize)]
pub struct EnvView<'a> {
    pub env_id: &'a str,
    pub short_id: &'a str,
    pub name: Option<&'a str>,
    pub state: EnvState,
    pub manifest_hash: &'a str,
    pub base_layer: &'a str,
    pub dependency_layers: &'a [karapace_store::LayerHash],
    pub policy_layer: Option<&'a str>,
    pub created_at: &'a str,
    pub updated_at: &'a str,
    pub ref_count: u32,
    pub checksum: &'a str,
    /// Ours, after the standard tool's keys: what the environment costs on disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageView>,
    /// Ours: the environment's desktop entries (`inspect` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desktop_entries: Option<Vec<String>>,
}

/// Sizes in an environment object (`engine::usage`).
#[derive(Debug, Serialize)]
pub struct UsageView {
    pub writable_bytes: u64,
    pub exclusive_bytes: u64,
    pub layers: Vec<crate::engine::usage::LayerUsage>,
}

impl From<crate::engine::usage::EnvUsage> for UsageView {
    fn from(u: crate::engine::usage::EnvUsage) -> Self {
        UsageView {
            writable_bytes: u.writable_bytes,
            exclusive_bytes: u.exclusive_bytes,
            layers: u.layers,
        }
    }
}

impl<'a> From<&'a EnvMetadata> for EnvView<'a> {
    fn from(m: &'a EnvMetadata) -> Self {
        EnvView {
            env_id: &m.env_id,
            short_id: &m.short_id,
            name: m.name.as_deref(),
            state: m.state,
            manifest_hash: &m.manifest_hash,
            base_layer: &m.base_layer,
            dependency_layers: &m.dependency_layers,
            policy_layer: m.policy_layer.as_deref(),
            created_at: &m.created_at,
            updated_at: &m.updated_at,
            ref_count: REF_COUNT,
            checksum: &m.checksum,
            usage: None,
            desktop_entries: None,
        }
    }
}

/// The `key: value` lines of `inspect` in their order: the standard tool's nine, then ours
/// (`manifest_hash`, one `dependency` per dependency layer, `policy_layer`). The terminal UI's
/// detail view shows the same fields.
pub fn inspect_fields(env: &EnvMetadata) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("env_id", env.env_id.to_string()),
        ("short_id", env.short_id.clone()),
        ("name", env.name.clone().unwrap_or_else(|| "(none)".into())),
        ("state", env.state.to_string()),
        ("base_layer", env.base_layer.to_string()),
        ("deps", env.dependency_layers.len().to_string()),
        ("ref_count", REF_COUNT.to_string()),
        ("created_at", env.created_at.clone()),
        ("updated_at", env.updated_at.clone()),
        ("manifest_hash", env.manifest_hash.clone()),
    ];
    fields.extend(
        env.dependency_layers
            .iter()
            .map(|layer| ("dependency", layer.to_string())),
    );
    fields.push((
        "policy_layer",
        env.policy_layer
            .as_ref()
            .map_or_else(|| "(none)".into(), ToString::to_string),
    ));
    fields
}

/// The lines `inspect` (and the TUI's detail view) adds after the standard tool's fields: disk
/// usage when the store could measure it, then each desktop entry written for the environment.
pub fn usage_and_desktop_fields(
    usage: Option<&crate::engine::usage::EnvUsage>,
    desktop_entries: &[String],
) -> Vec<(&'static str, String)> {
    let mut fields = Vec::new();
    if let Some(u) = usage {
        fields.push(("writable", crate::output::bytes(u.writable_bytes)));
        let layers: u64 = u.layers.iter().map(|l| l.bytes).sum();
        let shared = u.layers.iter().filter(|l| l.shared_by > 1).count();
        fields.push((
            "layers",
            format!(
                "{} in {} layers ({shared} shared with other environments)",
                crate::output::bytes(layers),
                u.layers.len()
            ),
        ));
        fields.push((
            "exclusive",
            format!(
                "{} (what destroy and then gc would free)",
                crate::output::bytes(u.exclusive_bytes)
            ),
        ));
    }
    fields.extend(
        desktop_entries
            .iter()
            .map(|entry| ("desktop_entry", entry.clone())),
    );
    fields
}

/// One `inspect` line: the key and its colon padded to 12 columns (the value column at 13).
pub fn inspect_line(key: &str, value: &str) -> String {
    format!("{:<12} {value}", format!("{key}:"))
}

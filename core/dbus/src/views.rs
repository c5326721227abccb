//! The JSON each method returns (docs/dbus.md), one type per shape. Keys come out in the order of
//! the fields, which is the order the spec lists them in.

use karapace_store::{EnvMetadata, GcReport, VerifyReport};
use serde::Serialize;

/// One environment in `ListEnvironments` and `GetEnvironmentStatus`.
#[derive(Debug, Serialize)]
pub struct EnvSummary<'a> {
    pub env_id: &'a str,
    pub short_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    /// Lowercase, as `karapace list` prints it.
    pub state: String,
}

impl<'a> From<&'a EnvMetadata> for EnvSummary<'a> {
    fn from(env: &'a EnvMetadata) -> Self {
        EnvSummary {
            env_id: &env.env_id,
            short_id: &env.short_id,
            name: env.name.as_deref(),
            state: env.state.to_string(),
        }
    }
}

/// `BuildEnvironment` (no `name`) and `BuildNamedEnvironment` (with it).
#[derive(Debug, Serialize)]
pub struct Built<'a> {
    pub env_id: &'a str,
    pub short_id: &'a str,
    /// The environment's state after the build: `built` (a running environment stays `running`).
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
}

impl<'a> Built<'a> {
    pub fn new(env: &'a EnvMetadata, with_name: bool) -> Self {
        Built {
            env_id: &env.env_id,
            short_id: &env.short_id,
            state: env.state.to_string(),
            name: env.name.as_deref().filter(|_| with_name),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Destroyed<'a> {
    pub destroyed: &'a str,
}

#[derive(Debug, Serialize)]
pub struct Entered<'a> {
    pub entered: &'a str,
}

#[derive(Debug, Serialize)]
pub struct Renamed<'a> {
    pub env_id: &'a str,
    pub name: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct Preset {
    pub name: &'static str,
    pub description: String,
}

/// The `karapace new` templates, in the CLI's order.
pub fn presets() -> Vec<Preset> {
    karapace_schema::templates::NAMES
        .iter()
        .map(|&name| Preset {
            name,
            description: karapace_schema::templates::description(name).unwrap_or_default(),
        })
        .collect()
}

/// `GarbageCollect`: for a dry run, the counts are what a real run would remove.
#[derive(Debug, Serialize)]
pub struct Collected {
    pub dry_run: bool,
    pub removed_envs: usize,
    pub removed_layers: usize,
    pub removed_objects: usize,
}

impl From<&GcReport> for Collected {
    fn from(r: &GcReport) -> Self {
        Collected {
            dry_run: r.dry_run,
            removed_envs: r.removed_envs,
            removed_layers: r.removed_layers,
            removed_objects: r.removed_objects,
        }
    }
}

/// `VerifyStore`: failures are data here, not an error (the CLI exits 3 for them).
#[derive(Debug, Default, Serialize)]
pub struct Verified {
    pub checked: usize,
    pub passed: usize,
    pub failed: usize,
}

impl From<&VerifyReport> for Verified {
    fn from(r: &VerifyReport) -> Self {
        Verified {
            checked: r.checked,
            passed: r.passed,
            failed: r.failed,
        }
    }
}

/// The JSON text of `value`. Serialising these plain structs cannot fail; if it ever did, the
/// client gets an error rather than a broken string.
pub fn json(value: &impl Serialize) -> Result<String, crate::error::ManagerError> {
    serde_json::to_string(value)
        .map_err(|e| crate::error::ManagerError::Failed(format!("cannot encode the reply: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use karapace_store::EnvState;

    fn env(name: Option<&str>) -> EnvMetadata {
        EnvMetadata {
            env_id: "ab".repeat(32).parse().unwrap(),
            short_id: "ab".repeat(6),
            name: name.map(str::to_owned),
            state: EnvState::Built,
            manifest_hash: String::new(),
            base_layer: "0".repeat(64).parse().unwrap(),
            dependency_layers: Vec::new(),
            policy_layer: None,
            created_at: String::new(),
            updated_at: String::new(),
            checksum: String::new(),
        }
    }

    #[test]
    fn summaries_omit_an_unset_name_and_keep_the_spec_order() {
        let e = env(None);
        assert_eq!(
            json(&EnvSummary::from(&e)).unwrap(),
            format!(
                r#"{{"env_id":"{}","short_id":"{}","state":"built"}}"#,
                e.env_id, e.short_id
            )
        );
        let e = env(Some("web"));
        assert_eq!(
            json(&EnvSummary::from(&e)).unwrap(),
            format!(
                r#"{{"env_id":"{}","short_id":"{}","name":"web","state":"built"}}"#,
                e.env_id, e.short_id
            )
        );
    }

    #[test]
    fn a_named_build_adds_the_name() {
        let e = env(Some("web"));
        let plain: serde_json::Value =
            serde_json::from_str(&json(&Built::new(&e, false)).unwrap()).unwrap();
        assert!(plain.get("name").is_none());
        assert_eq!(plain["state"], "built");
        let named: serde_json::Value =
            serde_json::from_str(&json(&Built::new(&e, true)).unwrap()).unwrap();
        assert_eq!(named["name"], "web");
    }

    #[test]
    fn presets_are_the_templates_with_descriptions() {
        let p = presets();
        assert_eq!(p.len(), karapace_schema::templates::NAMES.len());
        assert!(p.iter().all(|p| !p.description.is_empty()));
    }
}

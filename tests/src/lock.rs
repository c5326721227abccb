//! Reading `karapace.lock` as plain TOML, independently of `karapace-schema`, so the tests check
//! the file format itself.

use std::collections::BTreeMap;
use std::path::Path;

/// The parts of a lock file the end-to-end tests look at.
#[derive(Debug, Clone)]
pub struct LockInfo {
    pub lock_version: i64,
    pub env_id: String,
    pub short_id: String,
    pub base_image: String,
    pub base_image_digest: String,
    /// name → version
    pub packages: BTreeMap<String, String>,
    pub runtime_backend: String,
    pub network_isolation: bool,
    /// The file as written.
    pub text: String,
}

impl LockInfo {
    /// Parses `path`; panics with the file's text on any deviation from lock v2.
    pub fn read(path: &Path) -> LockInfo {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read lock file {}: {e}", path.display()));
        let table: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("lock file {} is not TOML: {e}\n{text}", path.display()));
        let s = |key: &str| -> String {
            table
                .get(key)
                .and_then(toml::Value::as_str)
                .unwrap_or_else(|| panic!("lock file has no string `{key}`:\n{text}"))
                .to_owned()
        };
        let mut packages = BTreeMap::new();
        if let Some(list) = table.get("resolved_packages") {
            let list = list
                .as_array()
                .unwrap_or_else(|| panic!("`resolved_packages` is not an array:\n{text}"));
            for p in list {
                let field = |k: &str| {
                    p.get(k)
                        .and_then(toml::Value::as_str)
                        .unwrap_or_else(|| panic!("resolved package without `{k}`: {p}\n{text}"))
                        .to_owned()
                };
                packages.insert(field("name"), field("version"));
            }
        }
        LockInfo {
            lock_version: table
                .get("lock_version")
                .and_then(toml::Value::as_integer)
                .unwrap_or_else(|| panic!("lock file has no integer `lock_version`:\n{text}")),
            env_id: s("env_id"),
            short_id: s("short_id"),
            base_image: s("base_image"),
            base_image_digest: s("base_image_digest"),
            packages,
            runtime_backend: s("runtime_backend"),
            network_isolation: table
                .get("network_isolation")
                .and_then(toml::Value::as_bool)
                .unwrap_or_else(|| panic!("lock file has no bool `network_isolation`:\n{text}")),
            text,
        }
    }
}

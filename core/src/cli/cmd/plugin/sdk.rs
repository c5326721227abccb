//! The plugin SDK and the WIT it is generated from, embedded in the binary, so `plugin build`
//! needs no Karapace checkout: they are written once to a content-addressed directory in the
//! user's cache and a crate depending on `karapace-plugin-sdk = "1"` is built against that copy
//! (a `[patch.crates-io]` on cargo's command line; the crate is not on crates.io).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{CoreError, Result};

/// The SDK crate's version (the guest workspace's; it implements WIT 1.1.0), as the embedded
/// manifest declares it: a plugin's `karapace-plugin-sdk = "1"` matches it.
pub const SDK_VERSION: &str = "1.0.0";

/// The SDK's own manifest (the repository's uses its workspace's settings; this is the same
/// package, stand-alone). `sdk_manifest_matches_the_guest_workspace` keeps them equal.
const SDK_MANIFEST: &str = r#"# Written by `karapace plugin build` from the copy embedded in karapace.
[package]
name = "karapace-plugin-sdk"
version = "1.0.0"
edition = "2024"
rust-version = "1.95"
license = "Apache-2.0"
publish = false

[dependencies]
wit-bindgen = { version = "=0.63.0", default-features = false, features = ["macros", "realloc"] }
"#;

/// Every embedded file, by its path under the extracted root (the repository's layout, so the
/// SDK's `../../wit/...` path holds).
const FILES: &[(&str, &str)] = &[
    ("plugins/sdk/Cargo.toml", SDK_MANIFEST),
    (
        "plugins/sdk/src/lib.rs",
        include_str!("../../../../../plugins/sdk/src/lib.rs"),
    ),
    (
        "plugins/sdk/src/rpm.rs",
        include_str!("../../../../../plugins/sdk/src/rpm.rs"),
    ),
    (
        "plugins/sdk/src/testing.rs",
        include_str!("../../../../../plugins/sdk/src/testing.rs"),
    ),
    (
        "wit/resolver@1.1.0/resolver.wit",
        include_str!("../../../../../wit/resolver@1.1.0/resolver.wit"),
    ),
    (
        "wit/resolver@1.0.0/resolver.wit",
        include_str!("../../../../../wit/resolver@1.0.0/resolver.wit"),
    ),
];

/// Writes the embedded SDK under `cache` (once per content) and returns the SDK crate's
/// directory. The copy is complete or absent: it is assembled in a temporary directory and
/// renamed into place.
pub fn extract(cache: &Path) -> Result<PathBuf> {
    let mut hash = blake3::Hasher::new();
    for (path, text) in FILES {
        hash.update(path.as_bytes());
        hash.update(&[0]);
        hash.update(text.as_bytes());
        hash.update(&[0]);
    }
    let id = hash.finalize().to_hex();
    let root = cache.join(format!("{SDK_VERSION}-{}", &id.as_str()[..16]));
    let sdk = root.join("plugins/sdk");
    if sdk.join("Cargo.toml").is_file() {
        return Ok(sdk);
    }
    let io = |what: &Path, e| CoreError::io(format!("cannot write {}", what.display()), e);
    std::fs::create_dir_all(cache).map_err(|e| io(cache, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".sdk-")
        .tempdir_in(cache)
        .map_err(|e| io(cache, e))?;
    for (path, text) in FILES {
        let file = staging.path().join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        std::fs::File::create(&file)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| io(&file, e))?;
    }
    match std::fs::rename(staging.path(), &root) {
        Ok(()) => {}
        // Another build extracted the same content first.
        Err(_) if sdk.join("Cargo.toml").is_file() => {}
        Err(e) => return Err(io(&root, e)),
    }
    Ok(sdk)
}

/// `$XDG_CACHE_HOME/karapace/plugin-sdk`, else `~/.cache/karapace/plugin-sdk`.
pub fn default_cache() -> Result<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|x| Path::new(x).is_absolute()) {
        return Ok(PathBuf::from(xdg).join("karapace/plugin-sdk"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".cache/karapace/plugin-sdk"))
        .ok_or_else(|| CoreError::Usage("HOME is not set: no cache for the plugin SDK".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded manifest says what the repository's SDK manifest inherits.
    #[test]
    fn sdk_manifest_matches_the_guest_workspace() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let workspace: toml::Table =
            toml::from_str(&std::fs::read_to_string(root.join("plugins/Cargo.toml")).unwrap())
                .unwrap();
        let embedded: toml::Table = toml::from_str(SDK_MANIFEST).unwrap();
        let ws = &workspace["workspace"];
        assert_eq!(
            embedded["dependencies"]["wit-bindgen"],
            ws["dependencies"]["wit-bindgen"]
        );
        for key in ["version", "edition", "rust-version", "license"] {
            assert_eq!(embedded["package"][key], ws["package"][key], "{key}");
        }
        assert_eq!(embedded["package"]["version"].as_str(), Some(SDK_VERSION));
        // Every source file of the SDK is embedded.
        let mut sources: Vec<String> = std::fs::read_dir(root.join("plugins/sdk/src"))
            .unwrap()
            .map(|e| {
                format!(
                    "plugins/sdk/src/{}",
                    e.unwrap().file_name().to_string_lossy()
                )
            })
            .collect();
        sources.sort();
        let mut embedded_sources: Vec<&str> = FILES
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| p.starts_with("plugins/sdk/src/"))
            .collect();
        embedded_sources.sort_unstable();
        assert_eq!(sources, embedded_sources);
    }

    #[test]
    fn extraction_is_complete_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let sdk = extract(dir.path()).unwrap();
        assert!(sdk.join("src/lib.rs").is_file());
        assert!(sdk.join("../../wit/resolver@1.1.0/resolver.wit").is_file());
        assert_eq!(extract(dir.path()).unwrap(), sdk);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no leftovers"
        );
    }
}

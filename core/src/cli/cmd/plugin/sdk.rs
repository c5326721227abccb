//! The plugin SDK and the WIT it is generated from, embedded in the binary, so `plugin build`
//! needs no Karapace checkout: they are written once to a content-addressed directory in the
//! user's cache and a crate depending on `karapace-plugin-sdk = "1"` is built against that copy
//! (a `[patch.crates-io]` on cargo's command line, always given: the name is not Karapace's on
//! crates.io, so nothing may ever resolve it there).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
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
/// renamed into place. Cargo runs what the copy says (a build script, were one added), so a
/// copy is used only when `cache` is the caller's and closed to others and every file of the
/// copy is a plain file holding exactly the embedded bytes: a copy another user pre-created in
/// a shared cache, or one a workload edited through a shared home, is refused.
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
    let io = |what: &Path, e| CoreError::io(format!("cannot write {}", what.display()), e);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(cache)
        .map_err(|e| io(cache, e))?;
    check_private(cache)?;
    if std::fs::symlink_metadata(&root).is_ok() {
        verify(&root)?;
        return Ok(sdk);
    }
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
        Err(_) if std::fs::symlink_metadata(&root).is_ok() => verify(&root)?,
        Err(e) => return Err(io(&root, e)),
    }
    Ok(sdk)
}

/// `dir` is a directory (not a link) of the caller's that nobody else may write to.
fn check_private(dir: &Path) -> Result<()> {
    let m = std::fs::symlink_metadata(dir)
        .map_err(|e| CoreError::io(format!("cannot read {}", dir.display()), e))?;
    let me = nix::unistd::geteuid().as_raw();
    if !m.is_dir() || m.uid() != me || m.mode() & 0o022 != 0 {
        return Err(CoreError::PluginBuild(format!(
            "{}: the plugin SDK cache must be a directory of yours that others cannot write to; \
             fix or remove it (or point XDG_CACHE_HOME elsewhere)",
            dir.display()
        )));
    }
    Ok(())
}

/// An extracted copy holds exactly the embedded files, reached without links.
fn verify(root: &Path) -> Result<()> {
    check_private(root)?;
    for (path, text) in FILES {
        let mut cur = root.to_path_buf();
        let mut ok = true;
        for c in Path::new(path).components() {
            cur.push(c);
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => ok = false,
                Ok(_) => {}
                Err(_) => ok = false,
            }
        }
        let same = ok
            && std::fs::symlink_metadata(&cur).is_ok_and(|m| m.is_file())
            && std::fs::read(&cur).is_ok_and(|bytes| bytes == text.as_bytes());
        if !same {
            return Err(CoreError::PluginBuild(format!(
                "{}: this copy of the plugin SDK differs from the one embedded in karapace \
                 ({path} changed or missing); remove the directory and build again",
                root.display()
            )));
        }
    }
    Ok(())
}

/// `plugin-sdk` in the user's karapace cache.
pub fn default_cache() -> Result<PathBuf> {
    karapace_dirs::karapace_cache()
        .map(|root| root.join("plugin-sdk"))
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

    /// Cargo would run what a tampered copy says (a build script added to its manifest): a
    /// copy that differs from the embedded files, or a cache others can write to, is refused.
    #[test]
    fn a_tampered_copy_or_an_open_cache_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let sdk = extract(&cache).unwrap();
        let manifest = sdk.join("Cargo.toml");
        let mut text = std::fs::read_to_string(&manifest).unwrap();
        text.push_str("build = \"build.rs\"\n");
        std::fs::write(&manifest, text).unwrap();
        let err = extract(&cache).unwrap_err().to_string();
        assert!(err.contains("differs from the one embedded"), "{err}");
        std::fs::write(&manifest, SDK_MANIFEST).unwrap();
        assert_eq!(extract(&cache).unwrap(), sdk, "restored: accepted again");
        // A file replaced by a link to the same bytes elsewhere is not the copy either.
        let lib = sdk.join("src/lib.rs");
        let elsewhere = dir.path().join("lib.rs");
        std::fs::rename(&lib, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &lib).unwrap();
        assert!(extract(&cache).is_err(), "a linked file");
        std::fs::remove_file(&lib).unwrap();
        std::fs::rename(&elsewhere, &lib).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(extract(&cache).is_err(), "a cache others can write to");
    }
}

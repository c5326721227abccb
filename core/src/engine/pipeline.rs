//! The real build pipeline (namespace backend):
//! image → base layer → plugin detection → install once in a helper-run environment → query exact
//! versions → Dependency layer → lock. The user's writable layer is not involved, so `diff` right
//! after a build reports no drift.

use std::fs;
use std::path::{Path, PathBuf};

use karapace_helper_client::{self as hc, Network, StdioMode};
use karapace_images::{CachedImage, ImageCache, ImageConfig};
use karapace_plugin_host::{PackageRequest, Plugin, PluginHost, StepOptions};
use karapace_schema::{LockFile, NormalizedManifest, ResolvedPackage};
use karapace_store::{ImportOptions, LayerKind, Store};

use super::BuildRequest;
use super::runtime::{build_step_spec, canonical_root};
use crate::error::{CoreError, Result};
use crate::prereqs;

/// What a namespace build produced.
pub struct Built {
    pub lock: LockFile,
    pub base_layer: String,
    pub dependency_layers: Vec<String>,
}

pub fn build(
    store: &Store,
    manifest: &NormalizedManifest,
    req: &BuildRequest,
    locked: Option<&LockFile>,
    allow_without_landlock: bool,
) -> Result<Built> {
    if !prereqs::skipped() {
        let missing = prereqs::check();
        if !missing.is_empty() {
            let text: Vec<String> = missing
                .iter()
                .map(|m| format!("{} (fix: {})", m.what, m.fix))
                .collect();
            return Err(CoreError::Other(format!(
                "this host cannot run environments: {} (set KARAPACE_SKIP_PREREQS=1 to try anyway)",
                text.join("; ")
            )));
        }
    }
    let mut cfg = ImageConfig::load()?;
    cfg.offline = req.offline;
    let mut resolved = karapace_images::resolve(&manifest.base_image, &cfg)?;
    if let Some(lock) = locked {
        // --locked insists on exactly the locked image: a different archive is a checksum error.
        resolved.expected_sha256 = lock
            .base_image_digest
            .strip_prefix("sha256:")
            .map(str::to_owned);
    }
    let cache = ImageCache::new(&cfg.cache_dir);
    let image = karapace_images::fetch(&resolved, &cache, req.offline)?;
    let base_layer = base_layer(store, &cache, &image)?;

    let pinned: Vec<ResolvedPackage> = locked
        .map(|l| l.resolved_packages.clone())
        .unwrap_or_default();
    let (packages, dependency_layers) = if manifest.system_packages.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let layer = install(
            store,
            &base_layer,
            &manifest.system_packages,
            &pinned,
            req.offline,
            allow_without_landlock,
        )?;
        (layer.0, vec![layer.1])
    };
    let lock = LockFile::from_resolved(manifest, &image.digest, packages);
    Ok(Built {
        lock,
        base_layer,
        dependency_layers,
    })
}

/// The Base layer of an image, reused across builds: `<image cache>/base-layers/<sha256>` remembers
/// which layer an archive became, and is trusted only if this store has that layer.
fn base_layer(store: &Store, cache: &ImageCache, image: &CachedImage) -> Result<String> {
    let index = cache.root().join("base-layers").join(image.sha256_hex());
    if let Ok(hash) = fs::read_to_string(&index) {
        let hash = hash.trim();
        if store.layer(hash).is_ok() {
            return Ok(hash.to_owned());
        }
    }
    let staging = store.staging_dir()?;
    let tree = staging.path().join("rootfs");
    fs::create_dir(&tree).map_err(|e| CoreError::io("cannot create a staging directory", e))?;
    tracing::info!("extracting {}", image.url);
    karapace_images::extract(image, &tree)?;
    let layer = store.import_layer_dir_with(
        &tree,
        LayerKind::Base,
        None,
        ImportOptions { adopt_tree: true },
    )?;
    if let Some(dir) = index.parent() {
        // Only a cache: failing to write it costs time on the next build, nothing else.
        let _ = fs::create_dir_all(dir).and_then(|()| fs::write(&index, &layer.hash));
    }
    Ok(layer.hash)
}

/// Installs `packages` once over the base, returns their exact versions and the Dependency layer.
fn install(
    store: &Store,
    base_layer: &str,
    packages: &[String],
    pinned: &[ResolvedPackage],
    offline: bool,
    allow_without_landlock: bool,
) -> Result<(Vec<ResolvedPackage>, String)> {
    let base_tree = store.layer_tree(base_layer)?;
    let host = PluginHost::load(&PluginHost::default_dirs()).map_err(CoreError::plugin)?;
    let plugin = host
        .try_detect(&base_tree)
        .map_err(CoreError::plugin)?
        .ok_or_else(|| {
            CoreError::Other(
                "no resolver plugin recognises the package manager of this image".into(),
            )
        })?;
    for name in packages {
        plugin
            .validate_name(name)
            .map_err(|e| CoreError::PackageName {
                name: name.clone(),
                plugin: plugin.name().to_owned(),
                reason: e.to_string(),
            })?;
    }
    if offline {
        return Err(CoreError::Other(
            "--offline: installing packages needs the network (only cached images and unchanged, already built environments work offline)".into(),
        ));
    }
    let requests: Vec<PackageRequest> = packages
        .iter()
        .map(|name| match pinned.iter().find(|p| &p.name == name) {
            Some(p) => PackageRequest::pinned(name, &p.version),
            None => PackageRequest::latest(name),
        })
        .collect();
    let options = StepOptions {
        single_uid_map: true,
    };
    let mut steps = plugin.refresh_steps(options).map_err(CoreError::plugin)?;
    steps.extend(
        plugin
            .install_steps(&requests, options)
            .map_err(CoreError::plugin)?,
    );

    let staging = store.staging_dir()?;
    let (upper, work) = (staging.path().join("upper"), staging.path().join("work"));
    for d in [&upper, &work] {
        fs::create_dir(d).map_err(|e| CoreError::io("cannot create a staging directory", e))?;
    }
    let root = canonical_root(store)?;
    let lowers = vec![base_tree.clone()];
    for step in &steps {
        let mut spec = build_step_spec(
            &root,
            lowers.clone(),
            &upper,
            &work,
            step.argv.clone(),
            &step.env,
            Network::Host,
        );
        spec.allow_without_landlock = allow_without_landlock;
        tracing::info!("{}: {}", plugin.name(), step.argv.join(" "));
        let status = hc::run(&spec, StdioMode::Null).map_err(CoreError::helper)?;
        if status.code() != 0 {
            let hint = if pinned.is_empty() {
                ""
            } else {
                " (a locked version may no longer be available)"
            };
            return Err(CoreError::Other(format!(
                "package installation failed: `{}` exited with status {}{hint}",
                step.argv.join(" "),
                status.code()
            )));
        }
    }
    let dirs = StepDirs {
        root: &root,
        lowers: &lowers,
        upper: &upper,
        work: &work,
        allow_without_landlock,
    };
    let resolved = query(plugin, &dirs, packages)?;
    for p in pinned.iter().filter(|p| packages.contains(&p.name)) {
        if !resolved
            .iter()
            .any(|r| r.name == p.name && r.version == p.version)
        {
            return Err(CoreError::Other(format!(
                "--locked: {} {} was requested but a different version was installed",
                p.name, p.version
            )));
        }
    }
    make_removable(&work);
    let layer = store.import_layer_dir_with(
        &upper,
        LayerKind::Dependency,
        Some(base_layer),
        ImportOptions { adopt_tree: true },
    )?;
    Ok((resolved, layer.hash))
}

/// Where a build step runs, and whether it may run without Landlock.
struct StepDirs<'a> {
    root: &'a Path,
    lowers: &'a [PathBuf],
    upper: &'a Path,
    work: &'a Path,
    allow_without_landlock: bool,
}

/// Asks the package manager inside the environment for the exact installed versions.
fn query(
    plugin: &Plugin,
    dirs: &StepDirs<'_>,
    packages: &[String],
) -> Result<Vec<ResolvedPackage>> {
    let argv = plugin.query_argv(packages).map_err(CoreError::plugin)?;
    let mut spec = build_step_spec(
        dirs.root,
        dirs.lowers.to_vec(),
        dirs.upper,
        dirs.work,
        argv.clone(),
        &[],
        Network::Isolated,
    );
    spec.allow_without_landlock = dirs.allow_without_landlock;
    // Read at most the cap the plugin host accepts (+1, to notice more): a hostile package's
    // query output must not fill the core's memory.
    let (status, out) = hc::capture_bounded(&spec, karapace_plugin_host::MAX_QUERY_OUTPUT_BYTES)
        .map_err(CoreError::helper)?;
    if status.code() != 0 {
        return Err(CoreError::Other(format!(
            "`{}` exited with status {}",
            argv.join(" "),
            status.code()
        )));
    }
    let text = String::from_utf8_lossy(&out);
    let found = plugin.parse_query(&text).map_err(CoreError::plugin)?;
    let mut resolved = Vec::with_capacity(packages.len());
    for name in packages {
        let p = found.iter().find(|p| &p.name == name).ok_or_else(|| {
            CoreError::Other(format!(
                "package '{name}' is not installed after the build (query output did not list it)"
            ))
        })?;
        resolved.push(p.clone());
    }
    Ok(resolved)
}

/// overlayfs leaves `work/work` with mode 000; make it removable by its owner.
fn make_removable(work: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(entries) = fs::read_dir(work) {
        for e in entries.flatten() {
            let _ = fs::set_permissions(e.path(), fs::Permissions::from_mode(0o700));
        }
    }
}

//! The real build pipeline (namespace backend):
//! image → base layer → plugin detection → refresh the package index → check the requested names
//! against it (plugins with an availability query) → install once in a helper-run environment →
//! query exact versions → Dependency layer → lock. The user's writable layer is not involved, so `diff` right
//! after a build reports no drift.

use std::fs;
use std::path::{Path, PathBuf};

use std::process::Stdio;

use karapace_helper_client::{self as hc, IdMapMode, Network};
use karapace_images::{CachedImage, ImageCache, ImageConfig};
use karapace_plugin_host::{
    ImageContext, PackageRequest, Plugin, PluginError, PluginHost, ResolverError, StepOptions,
};
use karapace_schema::{
    LockFile, ManifestError, ManifestErrorKind, NormalizedManifest, ResolvedPackage, UnknownPackage,
};
use karapace_store::{ImportOptions, LayerHash, LayerKind, Owners, Store};

use super::BuildRequest;
use super::progress;
use super::reproducible;
use super::runtime::{build_step_spec, canonical_root, in_root};
use super::trees::Ownership;
use crate::error::{CoreError, Result};
use crate::prereqs;

/// What a build produced (every backend's, `backends::RuntimeBackend::build`).
pub struct Built {
    pub lock: LockFile,
    pub base_layer: LayerHash,
    pub dependency_layers: Vec<LayerHash>,
    /// Where the installer steps' output went (when packages were installed).
    pub install_log: Option<PathBuf>,
    /// Why files of system users belong to the caller in this environment, and how to change
    /// that (a caller without a subordinate id range).
    pub ownership_note: Option<String>,
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
            return Err(CoreError::Host(format!(
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
    let ownership = Ownership::detect();
    let base_layer = base_layer(store, &cache, &image, &ownership)?;

    let pinned: Vec<ResolvedPackage> = locked
        .map(|l| l.resolved_packages.clone())
        .unwrap_or_default();
    let (packages, dependency_layers, install_log) = if manifest.system_packages.is_empty() {
        (Vec::new(), Vec::new(), None)
    } else {
        let layer = install(
            store,
            &base_layer,
            &manifest.system_packages,
            &pinned,
            req,
            &Step {
                id_map: ownership.build_id_map(),
                allow_without_landlock,
            },
        )
        .map_err(|e| match ownership.note() {
            Some(note) => e.with_hint(&note),
            None => e,
        })?;
        (layer.0, vec![layer.1], Some(layer.2))
    };
    let lock = LockFile::from_resolved(manifest, &image.digest, packages);
    let ownership_note = if manifest.system_packages.is_empty() {
        None
    } else {
        ownership.note()
    };
    Ok(Built {
        lock,
        base_layer,
        dependency_layers,
        install_log,
        ownership_note,
    })
}

/// The Base layer of an image, reused across builds: `<image cache>/base-layers/<sha256>[-owners]`
/// remembers which layer an archive became (with owners kept or not), and is trusted only if
/// this store has that layer.
fn base_layer(
    store: &Store,
    cache: &ImageCache,
    image: &CachedImage,
    ownership: &Ownership,
) -> Result<LayerHash> {
    let key = match ownership.owners() {
        Owners::Keep => format!("{}-owners", image.sha256_hex()),
        Owners::Collapse => image.sha256_hex().to_string(),
    };
    let index = cache.root().join("base-layers").join(key);
    // A cache file anyone with the user's rights could have edited: only a valid hash of a
    // layer the store holds counts.
    if let Ok(text) = fs::read_to_string(&index)
        && let Some(hash) = LayerHash::parse(text.trim())
        && store.layer(&hash).is_ok()
    {
        return Ok(hash);
    }
    let staging = store.staging_dir()?;
    let tree = staging.path().join("rootfs");
    fs::create_dir(&tree).map_err(|e| CoreError::io("cannot create a staging directory", e))?;
    tracing::info!("extracting {}", image.url);
    karapace_images::extract_with_worker(image, &tree, &*store.tree_worker())?;
    let layer = store.import_layer_dir_with(
        &tree,
        LayerKind::Base,
        None,
        ImportOptions { adopt_tree: true },
    )?;
    if let Some(dir) = index.parent() {
        // Only a cache: failing to write it costs time on the next build, nothing else.
        let _ = fs::create_dir_all(dir).and_then(|()| fs::write(&index, layer.hash.as_bytes()));
    }
    Ok(layer.hash)
}

/// Installs `packages` once over the base, returns their exact versions and the Dependency layer.
/// After the refresh steps and before the install steps, a plugin with an availability query
/// checks the names against the image's package index (see [`check_available`]).
fn install(
    store: &Store,
    base_layer: &LayerHash,
    packages: &[String],
    pinned: &[ResolvedPackage],
    req: &BuildRequest,
    how: &Step,
) -> Result<(Vec<ResolvedPackage>, LayerHash, PathBuf)> {
    let offline = req.offline;
    let base_tree = store.layer_tree(base_layer)?;
    let host = PluginHost::load(&PluginHost::default_dirs()).map_err(CoreError::plugin)?;
    // A plugin file that is not loaded (broken, or one another user could have written) must
    // not go unnoticed: detection falls to the next plugin that claims the image.
    for failure in host.failures() {
        tracing::warn!("{}", failure.error);
    }
    let (plugin, image) = host
        .try_detect_image(&base_tree)
        .map_err(CoreError::plugin)?
        .ok_or_else(|| {
            CoreError::Plugin(
                "no resolver plugin recognises the package manager of this image".into(),
            )
        })?;
    validate_names(plugin, &image, packages)?;
    if offline {
        return Err(CoreError::Build(
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
    // apt keeps its `_apt` sandbox only where `_apt` exists in the id maps.
    let options = StepOptions {
        single_uid_map: how.id_map != IdMapMode::Full,
    };
    let mut steps = plugin
        .refresh_steps(&image, options)
        .map_err(CoreError::plugin)?;
    let refreshing = steps.len();
    steps.extend(
        plugin
            .install_steps(&image, &requests, options)
            .map_err(CoreError::plugin)?,
    );

    let staging = store.staging_dir()?;
    let (upper, work) = (staging.path().join("upper"), staging.path().join("work"));
    for d in [&upper, &work] {
        fs::create_dir(d).map_err(|e| CoreError::io("cannot create a staging directory", e))?;
    }
    let root = canonical_root(store)?;
    // The helper's spelling of the store's paths (its root resolved).
    let beneath = |p: &Path| in_root(store, &root, p);
    let lowers = vec![beneath(&base_tree)];
    let (spec_upper, spec_work) = (beneath(&upper), beneath(&work));
    let (log_path, mut log) = store.new_build_log()?;
    let dirs = StepDirs {
        root: &root,
        lowers: &lowers,
        upper: &spec_upper,
        work: &spec_work,
        how,
    };
    for (i, step) in steps.iter().enumerate() {
        if i == refreshing {
            check_available(plugin, &image, &dirs, packages, &req.manifest)?;
        }
        let mut spec = build_step_spec(
            &root,
            lowers.clone(),
            &spec_upper,
            &spec_work,
            step.argv.clone(),
            &reproducible::step_env(&step.env),
            Network::Host,
        );
        spec.id_map = how.id_map;
        spec.allow_without_landlock = how.allow_without_landlock;
        tracing::info!("{}: {}", plugin.name(), step.argv.join(" "));
        let shown = progress::Step::of_build(i, steps.len(), refreshing);
        let status = run_logged(&spec, &mut log, shown)?;
        if status.code() != 0 {
            return Err(install_failed(
                &step.argv,
                status.code(),
                !pinned.is_empty(),
                &log_path,
            ));
        }
    }
    let resolved = query(plugin, &image, &dirs, packages)?;
    for p in pinned.iter().filter(|p| packages.contains(&p.name)) {
        if !resolved
            .iter()
            .any(|r| r.name == p.name && r.version == p.version)
        {
            return Err(CoreError::Build(format!(
                "--locked: {} {} was requested but a different version was installed",
                p.name, p.version
            )));
        }
    }
    let layer = dependency_layer(store, &upper, &work, base_layer)?;
    Ok((resolved, layer, log_path))
}

/// Logs which package manager (and variant) was found and checks every requested name with its
/// plugin (a name it refuses is a manifest error).
fn validate_names(plugin: &Plugin, image: &ImageContext, packages: &[String]) -> Result<()> {
    if image.variant.is_empty() {
        tracing::info!("package manager: {}", plugin.name());
    } else {
        tracing::info!("package manager: {} ({})", plugin.name(), image.variant);
    }
    for name in packages {
        plugin
            .validate_name(image, name)
            .map_err(|e| CoreError::PackageName {
                name: name.clone(),
                plugin: plugin.name().to_owned(),
                reason: refusal_reason(e),
            })?;
    }
    Ok(())
}

/// Why a plugin refused a name, without the `plugin <name>: validate-name: invalid package
/// name:` prefix: [`CoreError::PackageName`] already says which plugin and what (errors name the
/// plugin once).
fn refusal_reason(e: PluginError) -> String {
    match e {
        PluginError::Resolver {
            error: ResolverError::InvalidName(detail) | ResolverError::InvalidVersion(detail),
            ..
        } => detail,
        other => other.to_string(),
    }
}

/// The Dependency layer of a finished install: the build's upper without what only describes
/// the build (caches, logs, secrets: removed from the upper, so the base's copies show
/// through), adopted as the layer's tree.
fn dependency_layer(
    store: &Store,
    upper: &Path,
    work: &Path,
    base_layer: &LayerHash,
) -> Result<LayerHash> {
    let mut remove = |path: &Path| -> Result<()> {
        store.remove_tree(path)?;
        Ok(())
    };
    let left_out = reproducible::clean_upper(upper, &mut remove)?;
    tracing::debug!("left out of the Dependency layer: {left_out:?}");
    make_removable(work);
    let layer = store.import_layer_dir_with(
        upper,
        LayerKind::Dependency,
        Some(base_layer),
        ImportOptions { adopt_tree: true },
    )?;
    Ok(layer.hash)
}

/// How every step of a build runs: its id maps, and whether it may run without Landlock.
struct Step {
    id_map: IdMapMode,
    allow_without_landlock: bool,
}

/// Where a build step runs.
struct StepDirs<'a> {
    root: &'a Path,
    lowers: &'a [PathBuf],
    upper: &'a Path,
    work: &'a Path,
    how: &'a Step,
}

/// Runs `argv` inside the build's environment without network and returns its exit status and
/// stdout, read up to the cap the plugin host accepts (a hostile package's output must not fill
/// the core's memory).
fn capture(dirs: &StepDirs<'_>, argv: &[String]) -> Result<(i32, String)> {
    let mut spec = build_step_spec(
        dirs.root,
        dirs.lowers.to_vec(),
        dirs.upper,
        dirs.work,
        argv.to_vec(),
        &[],
        Network::Isolated,
    );
    spec.id_map = dirs.how.id_map;
    spec.allow_without_landlock = dirs.how.allow_without_landlock;
    let (status, out) = hc::capture_bounded(&spec, karapace_plugin_host::MAX_QUERY_OUTPUT_BYTES)
        .map_err(CoreError::helper)?;
    Ok((status.code(), String::from_utf8_lossy(&out).into_owned()))
}

/// Most "did you mean" suggestions for an unknown package.
const MAX_SUGGESTIONS: usize = 3;

/// Checks the requested names against the package index the refresh steps just fetched, with the
/// plugin's availability query (one command, no network). A name the index does not know fails
/// the build before anything is installed, as a manifest error at that name's line with close
/// names from the index. Plugins without the query (interface 1.0) skip the check, and so does a
/// query that exits non-zero (a warning: the install steps will report what is wrong).
fn check_available(
    plugin: &Plugin,
    image: &ImageContext,
    dirs: &StepDirs<'_>,
    packages: &[String],
    manifest_path: &Path,
) -> Result<()> {
    let Some(argv) = plugin
        .available_argv(image, packages)
        .map_err(CoreError::plugin)?
    else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    let (code, text) = capture(dirs, &argv)?;
    tracing::info!(
        "availability check finished in {:.2} s with status {code}: {}",
        started.elapsed().as_secs_f64(),
        argv.join(" ")
    );
    if code != 0 {
        tracing::warn!(
            "{}: `{}` exited with status {code}; package names not checked against the index",
            plugin.name(),
            argv.join(" ")
        );
        return Ok(());
    }
    let answer = plugin
        .parse_available(image, packages, &text)
        .map_err(CoreError::plugin)?;
    // The manifest's order (packages are sorted), so the first unknown is the first to fix.
    let Some(first) = packages.iter().find(|p| answer.unknown.contains(p)) else {
        return Ok(());
    };
    let candidates: Vec<&str> = answer.candidates.iter().map(String::as_str).collect();
    let suggestions = karapace_schema::similar(first, &candidates, MAX_SUGGESTIONS);
    let also = packages
        .iter()
        .filter(|p| *p != first && answer.unknown.contains(p))
        .cloned()
        .collect();
    let source_index = if image.variant.is_empty() {
        plugin.name().to_owned()
    } else {
        format!("{}, {}", plugin.name(), image.variant)
    };
    // Re-read only for the position: the normalized manifest no longer has it.
    let location = karapace_schema::load_manifest(manifest_path)
        .ok()
        .and_then(|m| m.package_location(first));
    Err(CoreError::Manifest(ManifestError::Invalid {
        path: Some(manifest_path.to_path_buf()),
        location,
        kind: ManifestErrorKind::UnknownPackage {
            name: first.clone(),
            detail: Box::new(UnknownPackage {
                source_index,
                suggestions,
                also,
            }),
        },
    }))
}

/// Asks the package manager inside the environment for the exact installed versions.
fn query(
    plugin: &Plugin,
    image: &ImageContext,
    dirs: &StepDirs<'_>,
    packages: &[String],
) -> Result<Vec<ResolvedPackage>> {
    let argv = plugin
        .query_argv(image, packages)
        .map_err(CoreError::plugin)?;
    let (code, text) = capture(dirs, &argv)?;
    if code != 0 {
        return Err(CoreError::Build(format!(
            "`{}` exited with status {code}",
            argv.join(" "),
        )));
    }
    let found = plugin
        .parse_query(image, packages, &text)
        .map_err(CoreError::plugin)?;
    let mut resolved = Vec::with_capacity(packages.len());
    for name in packages {
        let p = found.iter().find(|p| &p.name == name).ok_or_else(|| {
            CoreError::Build(format!(
                "package '{name}' is not installed after the build (query output did not list it)"
            ))
        })?;
        resolved.push(p.clone());
    }
    Ok(resolved)
}

/// The error for a failed installer step: what ran, its status, and the installer's last lines
/// (its real message, e.g. dpkg's) with the path of the whole log.
fn install_failed(argv: &[String], code: i32, locked: bool, log: &Path) -> CoreError {
    let hint = if locked {
        " (a locked version may no longer be available)"
    } else {
        ""
    };
    // The package dpkg or apt said failed, first: the user's first question. Then dpkg's
    // first error (the cause) when the last lines no longer show it.
    let found = progress::diagnose(log, TAIL_LINES);
    let failed = match found.packages.as_slice() {
        [] => String::new(),
        [one] => format!("{one}: "),
        [first, rest @ ..] => format!("{first} (and {} more): ", rest.len()),
    };
    let cause = if found.first_error.is_empty() {
        String::new()
    } else {
        let lines: Vec<String> = found
            .first_error
            .iter()
            .map(|l| format!("  | {l}"))
            .collect();
        format!("\ndpkg's first error:\n{}", lines.join("\n"))
    };
    CoreError::Build(format!(
        "package installation failed: {failed}`{}` exited with status {code}{hint}{cause}\n\
         the installer's last lines (the whole log is {}):\n{}",
        argv.join(" "),
        log.display(),
        log_tail(log, TAIL_LINES)
    ))
}

/// Lines of the installer's output an installation failure shows.
const TAIL_LINES: usize = 25;

/// Runs one installer step with its stdout and stderr appended to `log` (after a `$ argv`
/// line). With `-v` (debug logging) the output is also streamed to stderr as it comes;
/// otherwise, on a terminal, a progress line for `step` is kept on stderr.
fn run_logged(
    spec: &hc::RunSpec,
    log: &mut fs::File,
    step: progress::Step,
) -> Result<hc::WaitStatus> {
    use std::io::Write;
    let io = |e| CoreError::io("cannot write the build log", e);
    writeln!(log, "$ {}", spec.argv.join(" ")).map_err(io)?;
    let started = std::time::Instant::now();
    let live = tracing::enabled!(tracing::Level::DEBUG);
    let session = if live || progress::wanted() {
        let (read, write) = std::io::pipe().map_err(io)?;
        let err = write.try_clone().map_err(io)?;
        let mut sink = log.try_clone().map_err(io)?;
        let tee = std::thread::spawn(move || {
            if live {
                tee_to_stderr(read, &mut sink);
            } else {
                progress::relay(read, &mut sink, step);
            }
        });
        let session = hc::spawn_with(spec, Stdio::null(), write.into(), err.into());
        // The helper's copies of the pipe end with it; the thread ends at its end of file.
        let waited = session.and_then(hc::Session::wait);
        let _ = tee.join();
        waited
    } else {
        let out = log.try_clone().map_err(io)?;
        let err = log.try_clone().map_err(io)?;
        hc::spawn_with(spec, Stdio::null(), out.into(), err.into()).and_then(hc::Session::wait)
    };
    let status = session.map_err(CoreError::helper)?.status;
    // Where a build's time goes (`-v`, and the build benchmark reads it).
    tracing::info!(
        "step finished in {:.2} s with status {}: {}",
        started.elapsed().as_secs_f64(),
        status.code(),
        spec.argv.join(" ")
    );
    Ok(status)
}

/// Copies the installer's output to the log and to stderr (escaped: it is a package's text).
fn tee_to_stderr(mut from: impl std::io::Read, log: &mut fs::File) {
    use std::io::Write;
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let _ = log.write_all(&buf[..n]);
                let text = String::from_utf8_lossy(&buf[..n]);
                let _ = write!(
                    std::io::stderr(),
                    "{}",
                    crate::output::escape(&text, crate::output::Newlines::Keep)
                );
            }
        }
    }
}

/// The last `lines` lines of the log at `path` (at most its last 64 KiB), for an error message.
fn log_tail(path: &Path, lines: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    const WINDOW: u64 = 64 * 1024;
    let Ok(mut f) = fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(WINDOW)));
    let mut bytes = Vec::new();
    let _ = f.take(WINDOW).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
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

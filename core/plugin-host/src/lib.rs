//! Host for sandboxed WebAssembly package-manager resolver plugins.
//!
//! A resolver plugin is a WebAssembly component implementing
//! `karapace:resolver@1.1.0` or the frozen `@1.0.0` (see `wit/`). It imports nothing, so it can only
//! compute: it returns argv lists (run by the engine *inside* an environment,
//! never here), parses query output and validates names. Every call runs in a
//! fresh store with fuel, memory and stack limits; everything it returns is
//! validated again here.
//!
//! Plugins come from the binary (built-ins: apt, dnf, zypper, pacman, apk,
//! precompiled at build time) and from plugin directories (compiled once, then
//! cached). A directory plugin with the same name as an earlier one replaces it.
//!
//! ```no_run
//! use karapace_plugin_host::{PluginHost, PackageRequest, StepOptions};
//! let host = PluginHost::load(&PluginHost::default_dirs())?;
//! if let Some((apt, image)) = host.try_detect_image(std::path::Path::new("/tmp/rootfs"))? {
//!     let steps =
//!         apt.install_steps(&image, &[PackageRequest::latest("curl")], StepOptions::default())?;
//! }
//! # Ok::<(), karapace_plugin_host::PluginError>(())
//! ```

mod bindings;
mod builtin;
mod cache;
mod engine_config;
mod error;
mod limits;
mod overlap;
mod plugin;
mod rootfs;
mod trust;
mod types;
mod validate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use wasmtime::Engine;

pub use builtin::builtin_names;
pub use cache::{CacheOutcome, default_cache_dir};
pub use error::{PluginError, ResolverError};
pub use karapace_schema::ResolvedPackage;
pub use limits::Limits;
pub use overlap::paths_overlap;
pub use plugin::Plugin;
pub use trust::{Untrusted, open_nonblocking, untrusted_file};
pub use types::{
    Availability, ImageContext, LoadFailure, PackageRequest, PluginInfo, PluginSource, Step,
    StepOptions,
};
pub use validate::MAX_QUERY_OUTPUT_BYTES;

/// System-wide plugin directory (distribution packages install here).
pub const SYSTEM_PLUGIN_DIR: &str = "/usr/lib/karapace/plugins";
/// Largest plugin file accepted from a directory (and by `karapace plugin install`).
pub const MAX_PLUGIN_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Whether builds would load the plugin directory `dir` (it and every directory above it pass
/// the trust rule; a missing one passes): what [`PluginHost::load`] reports as
/// [`PluginError::Unsafe`] for it, without loading anything.
pub fn check_plugin_dir(dir: &Path) -> Result<(), PluginError> {
    trust::open_plugin_dir(dir)
        .map(drop)
        .map_err(|reason| PluginError::Unsafe {
            path: dir.to_path_buf(),
            reason,
        })
}

/// A plugin file's bytes from an open handle, or `None` when it holds more than
/// [`MAX_PLUGIN_FILE_BYTES`]: at most one byte past the cap is read, whatever size the file
/// claimed when it was checked (it may be growing, or not be what was checked).
pub fn read_plugin_file(file: &std::fs::File) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    file.take(MAX_PLUGIN_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= MAX_PLUGIN_FILE_BYTES).then_some(bytes))
}

/// How to load plugins.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Plugin directories, lowest priority first; missing ones are skipped.
    pub dirs: Vec<PathBuf>,
    /// Compile cache for directory plugins; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Per-call limits.
    pub limits: Limits,
}

/// The loaded plugins, in detection order.
#[derive(Debug)]
pub struct PluginHost {
    /// Highest priority first: later directories, earlier ones, built-ins.
    plugins: Vec<Plugin>,
    failures: Vec<LoadFailure>,
}

impl PluginHost {
    /// `/usr/lib/karapace/plugins`, then `~/.local/share/karapace/plugins`
    /// (`$XDG_DATA_HOME/karapace/plugins`).
    pub fn default_dirs() -> Vec<PathBuf> {
        let mut dirs = vec![PathBuf::from(SYSTEM_PLUGIN_DIR)];
        dirs.extend(Self::user_dir());
        dirs
    }

    /// The user's plugin directory: `$XDG_DATA_HOME/karapace/plugins` when
    /// `XDG_DATA_HOME` is an absolute path, else `~/.local/share/karapace/plugins`;
    /// `None` without either (`karapace plugin install` copies here).
    pub fn user_dir() -> Option<PathBuf> {
        karapace_dirs::data_home().map(|data| data.join("karapace/plugins"))
    }

    /// One plugin file, loaded exactly as a directory plugin is (size cap,
    /// imports refused, metadata and detect paths validated, the same
    /// limits), but outside any directory scan: for trying and validating a
    /// plugin before it is installed. Compiles without the cache.
    pub fn load_file(path: &Path, limits: Limits) -> Result<Plugin, PluginError> {
        let engine =
            Engine::new(&engine_config::plugin_engine_config()).map_err(|e| PluginError::Load {
                path: PathBuf::from("<engine>"),
                reason: format!("{e:#}"),
            })?;
        // Not blocking on a FIFO: what is not a regular file is refused once opened.
        let file = trust::open_nonblocking(path).map_err(|e| PluginError::Load {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        load_file(&engine, &cache::Cache::new(None), path, &file, limits)
    }

    /// Built-ins plus the plugins in `dirs` (lowest priority first), with the
    /// default compile cache and limits. Broken plugin files do not fail the
    /// load: they are listed by [`PluginHost::failures`].
    pub fn load(dirs: &[PathBuf]) -> Result<PluginHost, PluginError> {
        Self::load_with(&LoadOptions {
            dirs: dirs.to_vec(),
            cache_dir: default_cache_dir(),
            limits: Limits::default(),
        })
    }

    /// Only the built-in plugins (no compiler work, no file access).
    pub fn load_builtin_only() -> Result<PluginHost, PluginError> {
        Self::load_with(&LoadOptions::default())
    }

    /// Loads with explicit options.
    pub fn load_with(options: &LoadOptions) -> Result<PluginHost, PluginError> {
        let engine =
            Engine::new(&engine_config::plugin_engine_config()).map_err(|e| PluginError::Load {
                path: PathBuf::from("<engine>"),
                reason: format!("{e:#}"),
            })?;
        let mut failures = Vec::new();
        // (rank, plugin): built-ins rank 0, directory i rank i + 1.
        let mut loaded: Vec<(usize, Plugin)> = Vec::new();

        for b in builtin::embedded() {
            loaded.push((0, Plugin::builtin(&engine, b, options.limits)));
        }

        let cache = cache::Cache::new(options.cache_dir.clone());
        for (i, dir) in options.dirs.iter().enumerate() {
            let mut seen: HashMap<String, PathBuf> = HashMap::new();
            for (path, file) in plugin_files(dir, &mut failures) {
                match load_file(&engine, &cache, &path, &file, options.limits) {
                    Ok(p) => {
                        if let Some(other) = seen.get(p.name()) {
                            failures.push(LoadFailure {
                                error: PluginError::Duplicate {
                                    path: path.clone(),
                                    name: p.name().to_string(),
                                    other: other.clone(),
                                },
                                path,
                            });
                            continue;
                        }
                        seen.insert(p.name().to_string(), path);
                        // Same name from a lower-priority source: replaced.
                        loaded.retain(|(_, q)| q.name() != p.name());
                        loaded.push((i + 1, p));
                    }
                    Err(error) => failures.push(LoadFailure { path, error }),
                }
            }
        }
        // Stable: within a rank, keep load order (built-in order, file names).
        loaded.sort_by_key(|(rank, _)| std::cmp::Reverse(*rank));
        Ok(PluginHost {
            plugins: loaded.into_iter().map(|(_, p)| p).collect(),
            failures,
        })
    }

    /// The first plugin (in priority order) that claims the rootfs. Plugins
    /// that fail during detection are skipped; use [`PluginHost::try_detect`]
    /// to see their errors.
    pub fn detect(&self, rootfs: &Path) -> Option<&Plugin> {
        self.plugins
            .iter()
            .find(|p| p.claims(rootfs).unwrap_or(false))
    }

    /// Like [`PluginHost::detect`] but stops at the first plugin error.
    pub fn try_detect(&self, rootfs: &Path) -> Result<Option<&Plugin>, PluginError> {
        Ok(self.try_detect_image(rootfs)?.map(|(p, _)| p))
    }

    /// The first plugin that claims the rootfs, with what it found (pass the
    /// context to every later call about this image). Stops at the first
    /// plugin error.
    pub fn try_detect_image(
        &self,
        rootfs: &Path,
    ) -> Result<Option<(&Plugin, ImageContext)>, PluginError> {
        for p in &self.plugins {
            if let Some(image) = p.detect_image(rootfs)? {
                return Ok(Some((p, image)));
            }
        }
        Ok(None)
    }

    /// The plugin named `name` (e.g. "apt").
    pub fn get(&self, name: &str) -> Option<&Plugin> {
        self.plugins.iter().find(|p| p.name() == name)
    }

    /// Loaded plugins in detection order.
    pub fn plugins(&self) -> &[Plugin] {
        &self.plugins
    }

    /// Name, version, source and path of every loaded plugin.
    pub fn list(&self) -> Vec<PluginInfo> {
        self.plugins.iter().map(|p| p.info().clone()).collect()
    }

    /// Plugin files that could not be loaded, with the reason.
    pub fn failures(&self) -> &[LoadFailure] {
        &self.failures
    }
}

/// The `*.wasm` files of `dir`, sorted by name, each opened once: what was checked
/// ([`trust`]) is what is read. A missing directory is normal; a directory, a directory above it
/// or a file that another user could have written is not loaded.
fn plugin_files(dir: &Path, failures: &mut Vec<LoadFailure>) -> Vec<(PathBuf, std::fs::File)> {
    let untrusted = |path: &Path, reason: trust::Untrusted| LoadFailure {
        path: path.to_path_buf(),
        error: PluginError::Unsafe {
            path: path.to_path_buf(),
            reason,
        },
    };
    let plugins = match trust::open_plugin_dir(dir) {
        Ok(Some(handle)) => handle,
        Ok(None) => return Vec::new(),
        Err(reason) => {
            failures.push(untrusted(dir, reason));
            return Vec::new();
        }
    };
    let names = match plugins.wasm_names() {
        Ok(names) => names,
        Err(reason) => {
            failures.push(untrusted(dir, reason));
            return Vec::new();
        }
    };
    let mut files = Vec::new();
    for name in names {
        let path = dir.join(&name);
        match plugins.open_file(&name) {
            Ok(file) => files.push((path, file)),
            Err(reason) => failures.push(untrusted(&path, reason)),
        }
    }
    files
}

/// Reads, compiles (or loads from cache) and links one directory plugin, from `file` (opened
/// at `path`, which names it in messages).
fn load_file(
    engine: &Engine,
    cache: &cache::Cache,
    path: &Path,
    file: &std::fs::File,
    limits: Limits,
) -> Result<Plugin, PluginError> {
    let load_err = |reason: String| PluginError::Load {
        path: path.to_path_buf(),
        reason,
    };
    let meta = file.metadata().map_err(|e| load_err(e.to_string()))?;
    if !meta.is_file() {
        return Err(load_err("not a regular file".into()));
    }
    if meta.len() > MAX_PLUGIN_FILE_BYTES {
        return Err(load_err(format!(
            "{} bytes (max {MAX_PLUGIN_FILE_BYTES})",
            meta.len()
        )));
    }
    let bytes = read_plugin_file(file)
        .map_err(|e| load_err(e.to_string()))?
        .ok_or_else(|| load_err(format!("more than {MAX_PLUGIN_FILE_BYTES} bytes")))?;
    let (component, outcome) = cache
        .load(engine, &bytes)
        .map_err(|e| load_err(format!("not a valid component: {e:#}")))?;
    let mut plugin = Plugin::new(engine, &component, PluginSource::Directory, path, limits)?;
    plugin.set_cache_outcome(outcome);
    Ok(plugin)
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::PluginHost>();
        assert_send_sync::<super::Plugin>();
    }
}

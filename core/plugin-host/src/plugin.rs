//! One loaded resolver plugin and its calls. Every call runs in a fresh
//! `Store` (a trapped store cannot be reused, and no state leaks between
//! calls) with the fuel and memory limits, and every result is validated.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use karapace_schema::ResolvedPackage;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap};

use crate::bindings::v1_0_0;
use crate::builtin::{Builtin, deserialize_trusted};
use crate::cache::CacheOutcome;
use crate::error::{PluginError, ResolverError};
use crate::limits::{CallState, Limits, MemoryLimitExceeded};
use crate::rootfs;
use crate::types::{PackageRequest, PluginInfo, PluginSource, Step, StepOptions};
use crate::validate;

/// Pre-linked bindings, one variant per supported interface version.
enum Bindings {
    V1_0_0(v1_0_0::PluginPre<CallState>),
}

/// A loaded, validated resolver plugin.
pub struct Plugin {
    info: PluginInfo,
    detect_paths: Vec<String>,
    /// Linked code; for a built-in, deserialized on first call.
    bindings: OnceLock<Bindings>,
    /// A built-in's precompiled code (not yet deserialized).
    artifact: Option<&'static [u8]>,
    /// Names the file in load errors.
    label: PathBuf,
    engine: Engine,
    limits: Limits,
    cache_outcome: Option<CacheOutcome>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("info", &self.info)
            .field("detect_paths", &self.detect_paths)
            .finish_non_exhaustive()
    }
}

/// Checks the component's imports (none allowed) and interface version, and
/// pre-links it against an empty linker.
fn link(engine: &Engine, component: &Component, path: &Path) -> Result<Bindings, PluginError> {
    let (imports, exports) = component_names(engine, component);
    if !imports.is_empty() {
        return Err(PluginError::HasImports {
            path: path.to_path_buf(),
            imports,
        });
    }
    if !exports.iter().any(|e| e == v1_0_0::EXPORT) {
        return Err(PluginError::UnsupportedInterface {
            path: path.to_path_buf(),
            exports,
        });
    }
    // An empty linker: the plugin gets no host functions at all.
    let linker = Linker::<CallState>::new(engine);
    let load_err = |e: wasmtime::Error| PluginError::Load {
        path: path.to_path_buf(),
        reason: format!("{e:#}"),
    };
    let pre = linker.instantiate_pre(component).map_err(load_err)?;
    Ok(Bindings::V1_0_0(
        v1_0_0::PluginPre::new(pre).map_err(load_err)?,
    ))
}

/// Names of the component's imports and exports.
fn component_names(engine: &Engine, component: &Component) -> (Vec<String>, Vec<String>) {
    let ty = component.component_type();
    let imports = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let exports = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    (imports, exports)
}

impl Plugin {
    /// Links `component` (refusing any import), asks it for its metadata and
    /// detect paths, and validates them. `path` names the plugin in errors.
    pub(crate) fn new(
        engine: &Engine,
        component: &Component,
        source: PluginSource,
        path: &Path,
        limits: Limits,
    ) -> Result<Plugin, PluginError> {
        let bindings = link(engine, component, path)?;
        let mut plugin = Plugin {
            info: PluginInfo {
                // Until the plugin names itself, errors name its file.
                name: path.display().to_string(),
                version: String::new(),
                source,
                path: (source == PluginSource::Directory).then(|| path.to_path_buf()),
                interface: v1_0_0::VERSION,
            },
            detect_paths: Vec::new(),
            bindings: OnceLock::from(bindings),
            artifact: None,
            label: path.to_path_buf(),
            engine: engine.clone(),
            limits,
            cache_outcome: None,
        };
        let meta = plugin.call("metadata", |s, api| api.call_metadata(s))?;
        validate::plugin_name(&meta.name)
            .and_then(|()| validate::plugin_version(&meta.version))
            .map_err(|reason| plugin.invalid("metadata", reason))?;
        plugin.info.name = meta.name;
        plugin.info.version = meta.version;

        let paths = plugin.call("detect-paths", |s, api| api.call_detect_paths(s))?;
        validate::detect_paths(&paths).map_err(|r| plugin.invalid("detect-paths", r))?;
        plugin.detect_paths = paths;
        Ok(plugin)
    }

    /// A built-in: metadata and detect paths were obtained at build time, the
    /// code is deserialized on first call (loading the host stays cheap).
    pub(crate) fn builtin(engine: &Engine, b: &'static Builtin, limits: Limits) -> Plugin {
        Plugin {
            info: PluginInfo {
                name: b.name.to_string(),
                version: b.version.to_string(),
                source: PluginSource::Builtin,
                path: None,
                interface: v1_0_0::VERSION,
            },
            detect_paths: b.detect_paths.iter().map(|p| (*p).to_string()).collect(),
            bindings: OnceLock::new(),
            artifact: Some(b.artifact),
            label: builtin_label(b.name),
            engine: engine.clone(),
            limits,
            cache_outcome: None,
        }
    }

    /// The linked code, deserializing a built-in on first use.
    fn bindings(&self) -> Result<&Bindings, PluginError> {
        if self.bindings.get().is_none()
            && let Some(artifact) = self.artifact
        {
            let component =
                deserialize_trusted(&self.engine, artifact).map_err(|e| PluginError::Load {
                    path: self.label.clone(),
                    reason: format!("{e:#}"),
                })?;
            // Another thread may have won the race; either result is the same.
            let _ = self
                .bindings
                .set(link(&self.engine, &component, &self.label)?);
        }
        self.bindings.get().ok_or_else(|| PluginError::Load {
            path: self.label.clone(),
            reason: "no code".into(),
        })
    }

    /// Package-manager name (e.g. "apt").
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The plugin's own version.
    pub fn version(&self) -> &str {
        &self.info.version
    }

    /// Built-in or directory.
    pub fn source(&self) -> PluginSource {
        self.info.source
    }

    /// The `.wasm` file of a directory plugin.
    pub fn path(&self) -> Option<&Path> {
        self.info.path.as_deref()
    }

    /// Everything `karapace doctor` shows.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// For directory plugins: whether the compiled code came from the cache.
    pub fn cache_outcome(&self) -> Option<CacheOutcome> {
        self.cache_outcome
    }

    pub(crate) fn set_cache_outcome(&mut self, outcome: CacheOutcome) {
        self.cache_outcome = Some(outcome);
    }

    /// Rootfs-relative paths this plugin looks for.
    pub fn detect_paths(&self) -> &[String] {
        &self.detect_paths
    }

    /// Does this plugin claim the image unpacked at `rootfs`? Checks which
    /// detect paths exist (symlinks resolved inside `rootfs`), then asks.
    pub fn claims(&self, rootfs: &Path) -> Result<bool, PluginError> {
        let present: Vec<String> = self
            .detect_paths
            .iter()
            .filter(|p| rootfs::exists_in_root(rootfs, p))
            .cloned()
            .collect();
        if present.is_empty() {
            return Ok(false);
        }
        self.call("detect", |s, api| api.call_detect(s, &present))
    }

    /// Steps that refresh package metadata (may be empty).
    pub fn refresh_steps(&self, options: StepOptions) -> Result<Vec<Step>, PluginError> {
        let call = "refresh-steps";
        let opts = v1_0_0::api::StepOptions {
            single_uid_map: options.single_uid_map,
        };
        let steps = self.call(call, |s, api| api.call_refresh_steps(s, opts))?;
        self.steps(call, steps)
    }

    /// Steps that install `packages` (pinned where a version is given).
    pub fn install_steps(
        &self,
        packages: &[PackageRequest],
        options: StepOptions,
    ) -> Result<Vec<Step>, PluginError> {
        let call = "install-steps";
        if packages.is_empty() {
            return Err(self.refuse(call, "no packages to install".into()));
        }
        let mut requests = Vec::with_capacity(packages.len());
        for p in packages {
            validate::token("package name", &p.name, validate::MAX_NAME_BYTES)
                .map_err(|r| self.refuse(call, r))?;
            if let Some(v) = &p.version {
                validate::token("version", v, validate::MAX_VERSION_BYTES)
                    .map_err(|r| self.refuse(call, r))?;
            }
            requests.push(v1_0_0::api::PackageRequest {
                name: p.name.clone(),
                version: p.version.clone(),
            });
        }
        let opts = v1_0_0::api::StepOptions {
            single_uid_map: options.single_uid_map,
        };
        let steps = self.call(call, |s, api| api.call_install_steps(s, &requests, opts))?;
        let steps = self.steps(call, steps)?;
        if steps.is_empty() {
            return Err(self.invalid(call, "no steps to install packages".into()));
        }
        Ok(steps)
    }

    /// Argv printing the installed versions of `names`.
    pub fn query_argv(&self, names: &[String]) -> Result<Vec<String>, PluginError> {
        let call = "query-argv";
        for n in names {
            validate::token("package name", n, validate::MAX_NAME_BYTES)
                .map_err(|r| self.refuse(call, r))?;
        }
        let argv = self.call(call, |s, api| api.call_query_argv(s, names))?;
        let argv = self.resolver_result(call, argv)?;
        validate::argv(&argv).map_err(|r| self.invalid(call, r))?;
        Ok(argv)
    }

    /// Parses the stdout of [`Plugin::query_argv`] into (name, version) pairs;
    /// every pair is re-validated by the host.
    pub fn parse_query(&self, output: &str) -> Result<Vec<ResolvedPackage>, PluginError> {
        let call = "parse-query";
        if output.len() > validate::MAX_QUERY_OUTPUT_BYTES {
            return Err(self.refuse(
                call,
                format!(
                    "query output is {} bytes (max {})",
                    output.len(),
                    validate::MAX_QUERY_OUTPUT_BYTES
                ),
            ));
        }
        let parsed = self.call(call, |s, api| api.call_parse_query(s, output))?;
        let parsed = self.resolver_result(call, parsed)?;
        if parsed.len() > validate::MAX_PACKAGES {
            return Err(self.invalid(
                call,
                format!("{} packages (max {})", parsed.len(), validate::MAX_PACKAGES),
            ));
        }
        parsed
            .into_iter()
            .map(|p| {
                validate::token("package name", &p.name, validate::MAX_NAME_BYTES)
                    .and_then(|()| {
                        validate::token("version", &p.version, validate::MAX_VERSION_BYTES)
                    })
                    .map_err(|r| self.invalid(call, r))?;
                Ok(ResolvedPackage {
                    name: p.name,
                    version: p.version,
                })
            })
            .collect()
    }

    /// Checks `name` against the manager's grammar (and the host's own rules).
    pub fn validate_name(&self, name: &str) -> Result<(), PluginError> {
        let call = "validate-name";
        validate::token("package name", name, validate::MAX_NAME_BYTES)
            .map_err(|r| self.refuse(call, r))?;
        let result = self.call(call, |s, api| api.call_validate_name(s, name))?;
        self.resolver_result(call, result)
    }

    /// Runs `f` against a fresh instance in a fresh store with the limits.
    fn call<R>(
        &self,
        call: &'static str,
        f: impl FnOnce(&mut Store<CallState>, &v1_0_0::api::Guest) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let Bindings::V1_0_0(pre) = self.bindings()?;
        let mut store = Store::new(&self.engine, CallState::new(self.limits));
        store.limiter(CallState::limiter);
        let run = |store: &mut Store<CallState>| -> wasmtime::Result<R> {
            store.set_fuel(self.limits.fuel)?;
            let instance = pre.instantiate(&mut *store)?;
            f(store, instance.karapace_resolver_resolver())
        };
        run(&mut store).map_err(|e| self.classify(call, &e))
    }

    /// Turns a wasmtime error into the typed error that says what happened.
    fn classify(&self, call: &'static str, err: &wasmtime::Error) -> PluginError {
        let plugin = self.info.name.clone();
        if let Some(m) = err.downcast_ref::<MemoryLimitExceeded>() {
            return PluginError::MemoryLimit {
                plugin,
                call,
                requested: m.requested,
                limit: self.limits.memory_bytes,
            };
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => PluginError::OutOfFuel {
                plugin,
                call,
                fuel: self.limits.fuel,
            },
            Some(Trap::StackOverflow) => PluginError::StackOverflow { plugin, call },
            Some(trap) => PluginError::Trap {
                plugin,
                call,
                detail: trap.to_string(),
            },
            // Not a trap: the host refused to lift what the guest returned
            // (invalid UTF-8, out-of-bounds pointers, bad discriminants...).
            None => PluginError::Abi {
                plugin,
                call,
                detail: format!("{err:#}"),
            },
        }
    }

    fn resolver_result<T>(
        &self,
        call: &'static str,
        r: Result<T, v1_0_0::api::ResolverError>,
    ) -> Result<T, PluginError> {
        use v1_0_0::api::ResolverError as W;
        r.map_err(|e| {
            let error = match e {
                W::InvalidName(m) => ResolverError::InvalidName(bounded(&m)),
                W::InvalidVersion(m) => ResolverError::InvalidVersion(bounded(&m)),
                W::Unsupported(m) => ResolverError::Unsupported(bounded(&m)),
                W::Parse(m) => ResolverError::Parse(bounded(&m)),
            };
            PluginError::Resolver {
                plugin: self.info.name.clone(),
                call,
                error,
            }
        })
    }

    fn steps(
        &self,
        call: &'static str,
        r: Result<Vec<v1_0_0::api::Step>, v1_0_0::api::ResolverError>,
    ) -> Result<Vec<Step>, PluginError> {
        let steps: Vec<Step> = self
            .resolver_result(call, r)?
            .into_iter()
            .map(|s| Step {
                argv: s.argv,
                env: s.env,
            })
            .collect();
        validate::steps(&steps).map_err(|r| self.invalid(call, r))?;
        Ok(steps)
    }

    fn invalid(&self, call: &'static str, reason: String) -> PluginError {
        PluginError::InvalidOutput {
            plugin: self.info.name.clone(),
            call,
            reason,
        }
    }

    fn refuse(&self, call: &'static str, reason: String) -> PluginError {
        PluginError::InvalidRequest {
            plugin: self.info.name.clone(),
            call,
            reason,
        }
    }
}

/// A plugin's error message made safe to print: control characters (terminal
/// escapes) replaced, cut to a sane length.
fn bounded(message: &str) -> String {
    const MAX_CHARS: usize = 1024;
    let mut out: String = message
        .chars()
        .take(MAX_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if message.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Where a plugin file came from, for messages about built-ins.
pub(crate) fn builtin_label(name: &str) -> PathBuf {
    PathBuf::from(format!("<builtin>/{name}.wasm"))
}

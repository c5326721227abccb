//! One loaded resolver plugin and its calls. Every call runs in a fresh
//! `Store` (a trapped store cannot be reused, and no state leaks between
//! calls) with the fuel and memory limits, and every result is validated.
//!
//! Two interface versions are understood: `karapace:resolver@1.0.0` (frozen)
//! and `@1.1.0`. Callers see one API; for a 1.0 plugin the 1.1 additions
//! degrade as the WIT documents (no variant, no name mapping, no
//! availability check, the portable name grammar enforced by the host).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use karapace_schema::ResolvedPackage;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap};

use crate::bindings::{v1_0_0, v1_1_0};
use crate::builtin::{Builtin, deserialize_trusted};
use crate::cache::CacheOutcome;
use crate::error::{PluginError, ResolverError};
use crate::limits::{CallState, Limits, MemoryLimitExceeded};
use crate::rootfs;
use crate::types::{
    Availability, ImageContext, PackageRequest, PluginInfo, PluginSource, Step, StepOptions,
};
use crate::validate;

/// Pre-linked bindings, one variant per supported interface version.
enum Bindings {
    V1_0_0(v1_0_0::PluginPre<CallState>),
    V1_1_0(v1_1_0::PluginPre<CallState>),
}

/// The exports of one fresh instance, by interface version.
enum Api<'a> {
    V1_0(&'a v1_0_0::api::Guest),
    V1_1(&'a v1_1_0::api::Guest),
}

/// What a call returns before the host looks at it: the plugin's typed error
/// already mapped (and bounded), or the value.
type Answer<T> = Result<T, ResolverError>;

/// A loaded, validated resolver plugin.
pub struct Plugin {
    info: PluginInfo,
    detect_paths: Vec<String>,
    /// 1.1 `detect-files` (always empty for a 1.0 plugin).
    detect_files: Vec<String>,
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
            .field("detect_files", &self.detect_files)
            .finish_non_exhaustive()
    }
}

/// Checks the component's imports (none allowed) and interface version, and
/// pre-links it against an empty linker. A component exporting both
/// versions is linked as the newer one.
fn link(engine: &Engine, component: &Component, path: &Path) -> Result<Bindings, PluginError> {
    let (imports, exports) = component_names(engine, component);
    if !imports.is_empty() {
        return Err(PluginError::HasImports {
            path: path.to_path_buf(),
            imports,
        });
    }
    let has = |export: &str| exports.iter().any(|e| e == export);
    let (v1_1, v1_0) = (has(v1_1_0::EXPORT), has(v1_0_0::EXPORT));
    if !v1_1 && !v1_0 {
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
    if v1_1 {
        Ok(Bindings::V1_1_0(
            v1_1_0::PluginPre::new(pre).map_err(load_err)?,
        ))
    } else {
        Ok(Bindings::V1_0_0(
            v1_0_0::PluginPre::new(pre).map_err(load_err)?,
        ))
    }
}

/// The interface version a component implements, as `PluginInfo::interface`.
fn interface_of(bindings: &Bindings) -> &'static str {
    match bindings {
        Bindings::V1_0_0(_) => v1_0_0::VERSION,
        Bindings::V1_1_0(_) => v1_1_0::VERSION,
    }
}

/// Names of the component's imports and exports.
fn component_names(engine: &Engine, component: &Component) -> (Vec<String>, Vec<String>) {
    let ty = component.component_type();
    let imports = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let exports = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    (imports, exports)
}

// ---- conversions from each interface version's types ---------------------

fn error_v1_0(e: v1_0_0::api::ResolverError) -> ResolverError {
    use v1_0_0::api::ResolverError as W;
    match e {
        W::InvalidName(m) => ResolverError::InvalidName(bounded(&m)),
        W::InvalidVersion(m) => ResolverError::InvalidVersion(bounded(&m)),
        W::Unsupported(m) => ResolverError::Unsupported(bounded(&m)),
        W::Parse(m) => ResolverError::Parse(bounded(&m)),
    }
}

fn error_v1_1(e: v1_1_0::api::ResolverError) -> ResolverError {
    use v1_1_0::api::ResolverError as W;
    match e {
        W::InvalidName(m) => ResolverError::InvalidName(bounded(&m)),
        W::InvalidVersion(m) => ResolverError::InvalidVersion(bounded(&m)),
        W::Unsupported(m) => ResolverError::Unsupported(bounded(&m)),
        W::Parse(m) => ResolverError::Parse(bounded(&m)),
    }
}

fn steps_v1_0(r: Result<Vec<v1_0_0::api::Step>, v1_0_0::api::ResolverError>) -> Answer<Vec<Step>> {
    r.map_err(error_v1_0).map(|steps| {
        steps
            .into_iter()
            .map(|s| Step {
                argv: s.argv,
                env: s.env,
            })
            .collect()
    })
}

fn steps_v1_1(r: Result<Vec<v1_1_0::api::Step>, v1_1_0::api::ResolverError>) -> Answer<Vec<Step>> {
    r.map_err(error_v1_1).map(|steps| {
        steps
            .into_iter()
            .map(|s| Step {
                argv: s.argv,
                env: s.env,
            })
            .collect()
    })
}

fn context_v1_1(image: &ImageContext) -> v1_1_0::api::ImageContext {
    v1_1_0::api::ImageContext {
        present: image.present.clone(),
        variant: image.variant.clone(),
    }
}

/// One package `parse-query` reported, in the host's terms.
struct Installed {
    name: String,
    version: String,
    satisfies: Vec<String>,
}

impl Plugin {
    /// Links `component` (refusing any import), asks it for its metadata and
    /// detect paths (and, from 1.1 on, detect files), and validates them.
    /// `path` names the plugin in errors.
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
                interface: interface_of(&bindings),
            },
            detect_paths: Vec::new(),
            detect_files: Vec::new(),
            bindings: OnceLock::from(bindings),
            artifact: None,
            label: path.to_path_buf(),
            engine: engine.clone(),
            limits,
            cache_outcome: None,
        };
        let (name, version) = plugin.call("metadata", |s, api| match api {
            Api::V1_0(api) => api.call_metadata(s).map(|m| (m.name, m.version)),
            Api::V1_1(api) => api.call_metadata(s).map(|m| (m.name, m.version)),
        })?;
        validate::plugin_name(&name)
            .and_then(|()| validate::plugin_version(&version))
            .map_err(|reason| plugin.invalid("metadata", reason))?;
        plugin.info.name = name;
        plugin.info.version = version;

        let paths = plugin.call("detect-paths", |s, api| match api {
            Api::V1_0(api) => api.call_detect_paths(s),
            Api::V1_1(api) => api.call_detect_paths(s),
        })?;
        validate::detect_paths(&paths).map_err(|r| plugin.invalid("detect-paths", r))?;
        plugin.detect_paths = paths;

        let files = plugin.call("detect-files", |s, api| match api {
            Api::V1_0(_) => Ok(Vec::new()),
            Api::V1_1(api) => api.call_detect_files(s),
        })?;
        validate::detect_files(&files).map_err(|r| plugin.invalid("detect-files", r))?;
        plugin.detect_files = files;
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
                interface: b.interface,
            },
            detect_paths: b.detect_paths.iter().map(|p| (*p).to_string()).collect(),
            detect_files: b.detect_files.iter().map(|p| (*p).to_string()).collect(),
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

    /// The WIT interface version the plugin implements ("1.0.0", "1.1.0").
    pub fn interface(&self) -> &'static str {
        self.info.interface
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

    /// Rootfs-relative files whose contents detection reads (1.1).
    pub fn detect_files(&self) -> &[String] {
        &self.detect_files
    }

    /// Does this plugin claim the image unpacked at `rootfs`?
    pub fn claims(&self, rootfs: &Path) -> Result<bool, PluginError> {
        Ok(self.detect_image(rootfs)?.is_some())
    }

    /// Detection: checks which detect paths exist (symlinks resolved inside
    /// `rootfs`), reads the detect files that exist (1.1; at most 16 KiB
    /// each, regular files only), then asks the plugin. `Some` carries what
    /// it found, for every later call about this image.
    pub fn detect_image(&self, rootfs: &Path) -> Result<Option<ImageContext>, PluginError> {
        let call = "detect";
        let present: Vec<String> = self
            .detect_paths
            .iter()
            .filter(|p| rootfs::exists_in_root(rootfs, p))
            .cloned()
            .collect();
        if present.is_empty() {
            return Ok(None);
        }
        let files: Vec<v1_1_0::api::DetectFile> = self
            .detect_files
            .iter()
            .filter_map(|p| {
                let bytes = rootfs::read_in_root(rootfs, p, validate::MAX_DETECT_FILE_BYTES)?;
                Some(v1_1_0::api::DetectFile {
                    path: p.clone(),
                    contents: String::from_utf8_lossy(&bytes).into_owned(),
                })
            })
            .collect();
        let found = self.call(call, |s, api| match api {
            Api::V1_0(api) => api
                .call_detect(s, &present)
                .map(|claimed| claimed.then(String::new)),
            Api::V1_1(api) => api
                .call_detect(s, &present, &files)
                .map(|d| d.map(|d| d.variant)),
        })?;
        let Some(variant) = found else {
            return Ok(None);
        };
        validate::variant(&variant).map_err(|r| self.invalid(call, r))?;
        Ok(Some(ImageContext { present, variant }))
    }

    /// Steps that refresh package metadata (may be empty).
    pub fn refresh_steps(
        &self,
        image: &ImageContext,
        options: StepOptions,
    ) -> Result<Vec<Step>, PluginError> {
        let call = "refresh-steps";
        let steps = self.call(call, |s, api| match api {
            Api::V1_0(api) => {
                let opts = v1_0_0::api::StepOptions {
                    single_uid_map: options.single_uid_map,
                };
                api.call_refresh_steps(s, opts).map(steps_v1_0)
            }
            Api::V1_1(api) => {
                let opts = v1_1_0::api::StepOptions {
                    single_uid_map: options.single_uid_map,
                };
                api.call_refresh_steps(s, &context_v1_1(image), opts)
                    .map(steps_v1_1)
            }
        })?;
        self.steps(call, steps)
    }

    /// Steps that install `packages` (pinned where a version is given).
    pub fn install_steps(
        &self,
        image: &ImageContext,
        packages: &[PackageRequest],
        options: StepOptions,
    ) -> Result<Vec<Step>, PluginError> {
        let call = "install-steps";
        if packages.is_empty() {
            return Err(self.refuse(call, "no packages to install".into()));
        }
        for p in packages {
            self.check_request_name(call, &p.name)?;
            if let Some(v) = &p.version {
                validate::token("version", v, validate::MAX_VERSION_BYTES)
                    .map_err(|r| self.refuse(call, r))?;
            }
        }
        let steps = self.call(call, |s, api| match api {
            Api::V1_0(api) => {
                let requests: Vec<v1_0_0::api::PackageRequest> = packages
                    .iter()
                    .map(|p| v1_0_0::api::PackageRequest {
                        name: p.name.clone(),
                        version: p.version.clone(),
                    })
                    .collect();
                let opts = v1_0_0::api::StepOptions {
                    single_uid_map: options.single_uid_map,
                };
                api.call_install_steps(s, &requests, opts).map(steps_v1_0)
            }
            Api::V1_1(api) => {
                let requests: Vec<v1_1_0::api::PackageRequest> = packages
                    .iter()
                    .map(|p| v1_1_0::api::PackageRequest {
                        name: p.name.clone(),
                        version: p.version.clone(),
                    })
                    .collect();
                let opts = v1_1_0::api::StepOptions {
                    single_uid_map: options.single_uid_map,
                };
                api.call_install_steps(s, &context_v1_1(image), &requests, opts)
                    .map(steps_v1_1)
            }
        })?;
        let steps = self.steps(call, steps)?;
        if steps.is_empty() {
            return Err(self.invalid(call, "no steps to install packages".into()));
        }
        Ok(steps)
    }

    /// Argv printing the installed versions of `names`.
    pub fn query_argv(
        &self,
        image: &ImageContext,
        names: &[String],
    ) -> Result<Vec<String>, PluginError> {
        let call = "query-argv";
        for n in names {
            self.check_request_name(call, n)?;
        }
        let argv = self.call(call, |s, api| match api {
            Api::V1_0(api) => api.call_query_argv(s, names).map(|r| r.map_err(error_v1_0)),
            Api::V1_1(api) => api
                .call_query_argv(s, &context_v1_1(image), names)
                .map(|r| r.map_err(error_v1_1)),
        })?;
        let argv = self.resolver_result(call, argv)?;
        validate::argv(&argv).map_err(|r| self.invalid(call, r))?;
        Ok(argv)
    }

    /// Parses the stdout of [`Plugin::query_argv`] (run for `requested`) into
    /// (name, version) pairs; every pair is re-validated by the host. When a
    /// 1.1 plugin says an installed package satisfies a requested name that
    /// differs from its own (a virtual name, an atom), the result also holds
    /// (requested name, that version).
    pub fn parse_query(
        &self,
        image: &ImageContext,
        requested: &[String],
        output: &str,
    ) -> Result<Vec<ResolvedPackage>, PluginError> {
        let call = "parse-query";
        self.check_output_size(call, output)?;
        let parsed = self.call(call, |s, api| match api {
            Api::V1_0(api) => api.call_parse_query(s, output).map(|r| {
                r.map_err(error_v1_0).map(|list| {
                    list.into_iter()
                        .map(|p| Installed {
                            name: p.name,
                            version: p.version,
                            satisfies: Vec::new(),
                        })
                        .collect::<Vec<_>>()
                })
            }),
            Api::V1_1(api) => api
                .call_parse_query(s, &context_v1_1(image), requested, output)
                .map(|r| {
                    r.map_err(error_v1_1).map(|list| {
                        list.into_iter()
                            .map(|p| Installed {
                                name: p.name,
                                version: p.version,
                                satisfies: p.satisfies,
                            })
                            .collect::<Vec<_>>()
                    })
                }),
        })?;
        let parsed = self.resolver_result(call, parsed)?;
        if parsed.len() > validate::MAX_PACKAGES {
            return Err(self.invalid(
                call,
                format!("{} packages (max {})", parsed.len(), validate::MAX_PACKAGES),
            ));
        }
        let mut out = Vec::with_capacity(parsed.len());
        for p in parsed {
            validate::token("package name", &p.name, validate::MAX_NAME_BYTES)
                .and_then(|()| validate::token("version", &p.version, validate::MAX_VERSION_BYTES))
                .map_err(|r| self.invalid(call, r))?;
            if p.satisfies.len() > requested.len() {
                return Err(self.invalid(
                    call,
                    format!(
                        "{} satisfies {} names, more than the {} requested",
                        validate::preview(&p.name),
                        p.satisfies.len(),
                        requested.len()
                    ),
                ));
            }
            for r in &p.satisfies {
                if !requested.contains(r) {
                    return Err(self.invalid(
                        call,
                        format!(
                            "{} claims to satisfy {}, which was not requested",
                            validate::preview(&p.name),
                            validate::preview(r)
                        ),
                    ));
                }
                out.push(ResolvedPackage {
                    name: r.clone(),
                    version: p.version.clone(),
                });
            }
            out.push(ResolvedPackage {
                name: p.name,
                version: p.version,
            });
        }
        Ok(out)
    }

    /// Checks `name` against the manager's grammar (and the host's own rules).
    pub fn validate_name(&self, image: &ImageContext, name: &str) -> Result<(), PluginError> {
        let call = "validate-name";
        self.check_request_name(call, name)?;
        let result = self.call(call, |s, api| match api {
            Api::V1_0(api) => api
                .call_validate_name(s, name)
                .map(|r| r.map_err(error_v1_0)),
            Api::V1_1(api) => api
                .call_validate_name(s, &context_v1_1(image), name)
                .map(|r| r.map_err(error_v1_1)),
        })?;
        self.resolver_result(call, result)
    }

    /// Checks a version to pin. A 1.0 plugin has no such call (it checks
    /// versions inside `install-steps`), so only the host's rules apply.
    pub fn validate_version(&self, image: &ImageContext, version: &str) -> Result<(), PluginError> {
        let call = "validate-version";
        validate::token("version", version, validate::MAX_VERSION_BYTES)
            .map_err(|r| self.refuse(call, r))?;
        let result = self.call(call, |s, api| match api {
            Api::V1_0(_) => Ok(Ok(())),
            Api::V1_1(api) => api
                .call_validate_version(s, &context_v1_1(image), version)
                .map(|r| r.map_err(error_v1_1)),
        })?;
        self.resolver_result(call, result)
    }

    /// Argv that prints what the package index knows about `names`, to run
    /// after the refresh steps; `None` when the plugin cannot check (every
    /// 1.0 plugin), and the check is skipped.
    pub fn available_argv(
        &self,
        image: &ImageContext,
        names: &[String],
    ) -> Result<Option<Vec<String>>, PluginError> {
        let call = "available-argv";
        for n in names {
            self.check_request_name(call, n)?;
        }
        let argv = self.call(call, |s, api| match api {
            Api::V1_0(_) => Ok(Ok(None)),
            Api::V1_1(api) => api
                .call_available_argv(s, &context_v1_1(image), names)
                .map(|r| r.map_err(error_v1_1)),
        })?;
        let argv = self.resolver_result(call, argv)?;
        if let Some(argv) = &argv {
            validate::argv(argv).map_err(|r| self.invalid(call, r))?;
        }
        Ok(argv)
    }

    /// Parses the stdout of [`Plugin::available_argv`]: which of `names` the
    /// index does not know, and candidates for "did you mean". Refuses an
    /// unknown name that was not asked about, and candidates that are not
    /// safe names or exceed the count and size caps.
    pub fn parse_available(
        &self,
        image: &ImageContext,
        names: &[String],
        output: &str,
    ) -> Result<Availability, PluginError> {
        let call = "parse-available";
        self.check_output_size(call, output)?;
        let answer = self.call(call, |s, api| match api {
            Api::V1_0(_) => Ok(Ok(Availability::default())),
            Api::V1_1(api) => api
                .call_parse_available(s, &context_v1_1(image), names, output)
                .map(|r| {
                    r.map_err(error_v1_1).map(|a| Availability {
                        unknown: a.unknown,
                        candidates: a.candidates,
                    })
                }),
        })?;
        let mut answer = self.resolver_result(call, answer)?;
        for u in &answer.unknown {
            if !names.contains(u) {
                return Err(self.invalid(
                    call,
                    format!(
                        "{} is reported unknown but was not asked about",
                        validate::preview(u)
                    ),
                ));
            }
        }
        answer.unknown.sort_unstable();
        answer.unknown.dedup();
        if answer.unknown.len() > names.len() {
            return Err(self.invalid(call, "more unknown names than were asked about".into()));
        }
        if answer.candidates.len() > validate::MAX_CANDIDATES {
            return Err(self.invalid(
                call,
                format!(
                    "{} candidates (max {})",
                    answer.candidates.len(),
                    validate::MAX_CANDIDATES
                ),
            ));
        }
        let mut total = 0usize;
        for c in &answer.candidates {
            validate::token("candidate name", c, validate::MAX_NAME_BYTES)
                .map_err(|r| self.invalid(call, r))?;
            total += c.len();
        }
        if total > validate::MAX_CANDIDATE_BYTES {
            return Err(self.invalid(
                call,
                format!(
                    "candidates are {total} bytes (max {})",
                    validate::MAX_CANDIDATE_BYTES
                ),
            ));
        }
        Ok(answer)
    }

    /// The host's rules for a name sent to the plugin: safe as one argv
    /// element; for a 1.0 plugin also the portable grammar it was promised.
    fn check_request_name(&self, call: &'static str, name: &str) -> Result<(), PluginError> {
        validate::token("package name", name, validate::MAX_NAME_BYTES)
            .map_err(|r| self.refuse(call, r))?;
        if self.info.interface == v1_0_0::VERSION {
            validate::v1_0_name(name).map_err(|r| self.refuse(call, r))?;
        }
        Ok(())
    }

    fn check_output_size(&self, call: &'static str, output: &str) -> Result<(), PluginError> {
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
        Ok(())
    }

    /// Runs `f` against a fresh instance in a fresh store with the limits.
    fn call<R>(
        &self,
        call: &'static str,
        f: impl FnOnce(&mut Store<CallState>, Api<'_>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let bindings = self.bindings()?;
        let mut store = Store::new(&self.engine, CallState::new(self.limits));
        store.limiter(CallState::limiter);
        let run = |store: &mut Store<CallState>| -> wasmtime::Result<R> {
            store.set_fuel(self.limits.fuel)?;
            match bindings {
                Bindings::V1_0_0(pre) => {
                    let instance = pre.instantiate(&mut *store)?;
                    f(store, Api::V1_0(instance.karapace_resolver_resolver()))
                }
                Bindings::V1_1_0(pre) => {
                    let instance = pre.instantiate(&mut *store)?;
                    f(store, Api::V1_1(instance.karapace_resolver_resolver()))
                }
            }
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

    fn resolver_result<T>(&self, call: &'static str, r: Answer<T>) -> Result<T, PluginError> {
        r.map_err(|error| PluginError::Resolver {
            plugin: self.info.name.clone(),
            call,
            error,
        })
    }

    fn steps(&self, call: &'static str, r: Answer<Vec<Step>>) -> Result<Vec<Step>, PluginError> {
        let steps = self.resolver_result(call, r)?;
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

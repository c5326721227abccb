//! SDK for Karapace resolver plugins.
//!
//! A resolver teaches Karapace one package manager. Implement [`Resolver`] on a
//! unit struct and call [`export_resolver!`]; the SDK generates the WebAssembly
//! component exports for `karapace:resolver@1.1.0` (see `wit/resolver@1.1.0`).
//!
//! ```ignore
//! use karapace_plugin_sdk::prelude::*;
//! struct Xbps;
//! impl Resolver for Xbps { /* ... */ }
//! karapace_plugin_sdk::export_resolver!(Xbps);
//! ```
//!
//! The plugin only returns data. The host re-validates everything it gets back
//! and runs the argv lists inside the environment, never on the host. Test a
//! plugin natively with [`testing::Harness`], which applies exactly the checks
//! the component applies (and the host's own rules on what it sends).

use std::marker::PhantomData;

// Lets the generated code name this crate the same way from inside and outside.
extern crate self as karapace_plugin_sdk;

/// Generated bindings for the 1.1.0 interface. Public so the export macro
/// can reach them from the plugin crate; plugin authors use the re-exports
/// below instead.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/resolver@1.1.0",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "karapace_plugin_sdk::bindings",
        runtime_path: "karapace_plugin_sdk::__wit_bindgen_rt",
        additional_derives: [PartialEq, Eq],
    });
}

pub mod rpm;
pub mod testing;

#[doc(hidden)]
pub use wit_bindgen::rt as __wit_bindgen_rt;

pub use bindings::exports::karapace::resolver::resolver::{
    Availability, DetectFile, Detection, ImageContext, InstalledPackage, PackageRequest,
    PluginInfo, ResolverError, Step, StepOptions,
};

/// Everything a plugin file usually needs.
pub mod prelude {
    pub use super::{
        Availability, DetectFile, Detection, ImageContext, InstalledPackage, PackageRequest,
        Resolver, ResolverError, Step, StepOptions, args, check_name, lines, package, step,
        step_env,
    };
}

impl PackageRequest {
    /// The latest available version of `name`.
    pub fn latest(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: None,
        }
    }

    /// Exactly `version` of `name` (what a lock file asks for).
    pub fn pinned(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: Some(version.into()),
        }
    }
}

/// A full subordinate-id map (`single_uid_map: false`), as on a host where the
/// user has `/etc/subuid` entries.
impl Default for StepOptions {
    fn default() -> Self {
        Self {
            single_uid_map: false,
        }
    }
}

impl StepOptions {
    /// The namespace maps a single uid/gid (no subordinate ids).
    pub fn single_uid_map() -> Self {
        Self {
            single_uid_map: true,
        }
    }
}

/// Nothing known about the image: no detect path present, no variant.
impl Default for ImageContext {
    fn default() -> Self {
        Self {
            present: Vec::new(),
            variant: String::new(),
        }
    }
}

impl ImageContext {
    /// An image where `present` of the detect paths exist and detection
    /// reported `variant`.
    pub fn new(present: &[&str], variant: impl Into<String>) -> Self {
        Self {
            present: present.iter().map(|p| (*p).to_string()).collect(),
            variant: variant.into(),
        }
    }
}

/// Detection without a variant.
impl Default for Detection {
    fn default() -> Self {
        Self {
            variant: String::new(),
        }
    }
}

impl Detection {
    /// Detection that reports `variant` (at most 128 bytes, no control
    /// characters; the host refuses anything else).
    pub fn variant(variant: impl Into<String>) -> Self {
        Self {
            variant: variant.into(),
        }
    }
}

impl DetectFile {
    /// A detect file as the host passes it.
    pub fn new(path: impl Into<String>, contents: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            contents: contents.into(),
        }
    }
}

/// Every name known, no candidates.
impl Default for Availability {
    fn default() -> Self {
        Self {
            unknown: Vec::new(),
            candidates: Vec::new(),
        }
    }
}

impl InstalledPackage {
    /// Says that this installed package satisfies `requested` (a name that
    /// differs from its own: a virtual name, a short name, a version atom).
    pub fn satisfying(mut self, requested: impl Into<String>) -> Self {
        self.satisfies.push(requested.into());
        self
    }
}

/// One package manager's knowledge. Associated functions only: a plugin has no
/// state (every call runs in a fresh instance). Every call after detection
/// gets the [`ImageContext`]: which detect paths were present and the variant
/// [`Resolver::detect`] reported.
pub trait Resolver {
    /// Package-manager name (lowercase ASCII, digits, `-`; at most 32 bytes).
    const NAME: &'static str;
    /// The plugin's own version, shown by `karapace doctor`.
    const VERSION: &'static str;
    /// Rootfs-relative paths (no leading `/`) that indicate this manager.
    const DETECT_PATHS: &'static [&'static str];
    /// Rootfs-relative small text files (e.g. `etc/os-release`) whose
    /// contents [`Resolver::detect`] reads; at most 8. Default: none.
    const DETECT_FILES: &'static [&'static str] = &[];

    /// Claims the image given which of [`Self::DETECT_PATHS`] exist and the
    /// contents of those [`Self::DETECT_FILES`] that exist. Only called when
    /// `present` is not empty. Default: claim it, without a variant.
    fn detect(present: &[String], files: &[DetectFile]) -> Option<Detection> {
        let _ = files;
        (!present.is_empty()).then(Detection::default)
    }

    /// Steps that refresh package metadata. Default: none.
    fn refresh_steps(
        image: &ImageContext,
        options: &StepOptions,
    ) -> Result<Vec<Step>, ResolverError> {
        let _ = (image, options);
        Ok(Vec::new())
    }

    /// Steps that install `packages` (never empty). Names and versions have
    /// already been checked with [`Self::validate_name`] and
    /// [`Self::validate_version`].
    fn install_steps(
        image: &ImageContext,
        packages: &[PackageRequest],
        options: &StepOptions,
    ) -> Result<Vec<Step>, ResolverError>;

    /// Argv printing the installed versions of `names` (already validated).
    fn query_argv(image: &ImageContext, names: &[String]) -> Result<Vec<String>, ResolverError>;

    /// Parses the stdout of [`Self::query_argv`], which was run for
    /// `requested`. Mark a package that answers a requested name other than
    /// its own with [`InstalledPackage::satisfying`].
    fn parse_query(
        image: &ImageContext,
        requested: &[String],
        output: &str,
    ) -> Result<Vec<InstalledPackage>, ResolverError>;

    /// Checks a package name against the manager's grammar. This is the only
    /// grammar applied: the host only refuses names that are unsafe as one
    /// argv element (empty, over 128 bytes in a manifest, a leading `-`,
    /// whitespace, control characters).
    fn validate_name(image: &ImageContext, name: &str) -> Result<(), ResolverError>;

    /// Checks a version to pin. The default rule ([`default_version_rule`]):
    /// 1..=128 bytes of ASCII letters, digits and `. + ~ : _ - ^`, starting
    /// with a letter or digit. Override it when the manager's versions differ.
    fn validate_version(image: &ImageContext, version: &str) -> Result<(), ResolverError> {
        let _ = image;
        default_version_rule(Self::NAME, version)
    }

    /// Argv that prints what the package index knows about `names` (already
    /// validated); run after the refresh steps, without network, before
    /// installing. `None` (the default): no availability check.
    fn available_argv(
        image: &ImageContext,
        names: &[String],
    ) -> Result<Option<Vec<String>>, ResolverError> {
        let _ = (image, names);
        Ok(None)
    }

    /// Parses the stdout of [`Self::available_argv`]: the names of `names`
    /// the index does not know and, only then, index names to suggest.
    fn parse_available(
        image: &ImageContext,
        names: &[String],
        output: &str,
    ) -> Result<Availability, ResolverError> {
        let _ = (image, names, output);
        Ok(Availability::default())
    }
}

/// The default version rule of [`Resolver::validate_version`]: 1..=128 bytes
/// of ASCII letters, digits and `. + ~ : _ - ^`, the first a letter or digit.
pub fn default_version_rule(manager: &str, version: &str) -> Result<(), ResolverError> {
    let ok_first = version
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = version
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".+~:_-^".contains(c));
    if ok_first && ok_rest && version.len() <= 128 {
        Ok(())
    } else {
        // The host names the plugin before the message (see `check_name`).
        let _ = manager;
        Err(ResolverError::InvalidVersion(format!(
            "{version:?} is not a valid version"
        )))
    }
}

/// Adapter from a [`Resolver`] to the generated component exports. It runs the
/// name/version checks before `install_steps`/`query_argv`/`available_argv`,
/// so a plugin cannot forget them. [`testing::Harness`] calls the same code.
#[doc(hidden)]
pub struct Export<R>(PhantomData<R>);

impl<R: Resolver> Export<R> {
    fn check_names(image: &ImageContext, names: &[String]) -> Result<(), ResolverError> {
        names.iter().try_for_each(|n| R::validate_name(image, n))
    }
}

impl<R: Resolver> bindings::exports::karapace::resolver::resolver::Guest for Export<R> {
    fn metadata() -> PluginInfo {
        PluginInfo {
            name: R::NAME.to_string(),
            version: R::VERSION.to_string(),
        }
    }

    fn detect_paths() -> Vec<String> {
        R::DETECT_PATHS.iter().map(|p| (*p).to_string()).collect()
    }

    fn detect_files() -> Vec<String> {
        R::DETECT_FILES.iter().map(|p| (*p).to_string()).collect()
    }

    fn detect(present: Vec<String>, files: Vec<DetectFile>) -> Option<Detection> {
        R::detect(&present, &files)
    }

    fn refresh_steps(
        image: ImageContext,
        options: StepOptions,
    ) -> Result<Vec<Step>, ResolverError> {
        R::refresh_steps(&image, &options)
    }

    fn install_steps(
        image: ImageContext,
        packages: Vec<PackageRequest>,
        options: StepOptions,
    ) -> Result<Vec<Step>, ResolverError> {
        if packages.is_empty() {
            return Err(ResolverError::Unsupported(
                "install needs at least one package".to_string(),
            ));
        }
        for p in &packages {
            R::validate_name(&image, &p.name)?;
            if let Some(v) = &p.version {
                R::validate_version(&image, v)?;
            }
        }
        R::install_steps(&image, &packages, &options)
    }

    fn query_argv(image: ImageContext, names: Vec<String>) -> Result<Vec<String>, ResolverError> {
        Self::check_names(&image, &names)?;
        R::query_argv(&image, &names)
    }

    fn parse_query(
        image: ImageContext,
        requested: Vec<String>,
        output: String,
    ) -> Result<Vec<InstalledPackage>, ResolverError> {
        R::parse_query(&image, &requested, &output)
    }

    fn validate_name(image: ImageContext, name: String) -> Result<(), ResolverError> {
        R::validate_name(&image, &name)
    }

    fn validate_version(image: ImageContext, version: String) -> Result<(), ResolverError> {
        R::validate_version(&image, &version)
    }

    fn available_argv(
        image: ImageContext,
        names: Vec<String>,
    ) -> Result<Option<Vec<String>>, ResolverError> {
        Self::check_names(&image, &names)?;
        R::available_argv(&image, &names)
    }

    fn parse_available(
        image: ImageContext,
        names: Vec<String>,
        output: String,
    ) -> Result<Availability, ResolverError> {
        R::parse_available(&image, &names, &output)
    }
}

/// Exports `$ty` (a type implementing [`Resolver`]) as the plugin component.
/// Use once per plugin crate.
#[macro_export]
macro_rules! export_resolver {
    ($ty:ty) => {
        type __KarapaceResolverExport = $crate::Export<$ty>;
        $crate::bindings::__export_plugin_world!(
            __KarapaceResolverExport with_types_in $crate::bindings
        );
    };
}

/// `&["apt-get", "update"]` → owned argv.
pub fn args(argv: &[&str]) -> Vec<String> {
    argv.iter().map(|a| (*a).to_string()).collect()
}

/// A step without extra environment variables.
pub fn step(argv: Vec<String>) -> Step {
    Step {
        argv,
        env: Vec::new(),
    }
}

/// A step with extra environment variables.
pub fn step_env(argv: Vec<String>, env: &[(&str, &str)]) -> Step {
    Step {
        argv,
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
    }
}

/// An installed package record (satisfying no other name; see
/// [`InstalledPackage::satisfying`]).
pub fn package(name: &str, version: &str) -> InstalledPackage {
    InstalledPackage {
        name: name.to_string(),
        version: version.to_string(),
        satisfies: Vec::new(),
    }
}

/// Non-blank lines of a command's output, with `\r` line ends removed.
pub fn lines(output: &str) -> impl Iterator<Item = &str> {
    output
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim().is_empty())
}

/// Checks `name` against a simple grammar: 1..=`max_len` bytes, first
/// character accepted by `first`, the rest by `rest`. A leading `-` is always
/// refused (it would read as an option). `manager` is no longer part of the
/// message (the host names the plugin in front of it); it stays for the
/// signature's sake.
pub fn check_name(
    _manager: &str,
    name: &str,
    max_len: usize,
    first: impl Fn(char) -> bool,
    rest: impl Fn(char) -> bool,
) -> Result<(), ResolverError> {
    let mut chars = name.chars();
    let why = match chars.next() {
        None => Some("is empty"),
        Some('-') => Some("starts with '-'"),
        Some(c) if !first(c) => Some("starts with a character not allowed there"),
        Some(_) if name.len() > max_len => Some("is too long"),
        Some(_) if !chars.all(&rest) => Some("contains a character not allowed"),
        Some(_) => None,
    };
    match why {
        None => Ok(()),
        // The host puts "plugin <name>:" before the message: naming the manager again here
        // would say it twice.
        Some(why) => Err(ResolverError::InvalidName(format!("{name:?} {why}"))),
    }
}

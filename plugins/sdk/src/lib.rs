//! SDK for Karapace resolver plugins.
//!
//! A resolver teaches Karapace one package manager. Implement [`Resolver`] on a
//! unit struct and call [`export_resolver!`]; the SDK generates the WebAssembly
//! component exports for `karapace:resolver@1.0.0` (see `wit/resolver@1.0.0`).
//!
//! ```ignore
//! use karapace_plugin_sdk::prelude::*;
//! struct Xbps;
//! impl Resolver for Xbps { /* ... */ }
//! karapace_plugin_sdk::export_resolver!(Xbps);
//! ```
//!
//! The plugin only returns data. The host re-validates everything it gets back
//! and runs the argv lists inside the environment, never on the host.

use std::marker::PhantomData;

// Lets the generated code name this crate the same way from inside and outside.
extern crate self as karapace_plugin_sdk;

/// Generated bindings for the frozen 1.0.0 interface. Public so the export
/// macro can reach them from the plugin crate; plugin authors use the
/// re-exports below instead.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/resolver@1.0.0",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "karapace_plugin_sdk::bindings",
        runtime_path: "karapace_plugin_sdk::__wit_bindgen_rt",
    });
}

pub mod rpm;

#[doc(hidden)]
pub use wit_bindgen::rt as __wit_bindgen_rt;

pub use bindings::exports::karapace::resolver::resolver::{
    InstalledPackage, PackageRequest, PluginInfo, ResolverError, Step, StepOptions,
};

/// Everything a plugin file usually needs.
pub mod prelude {
    pub use super::{
        InstalledPackage, PackageRequest, Resolver, ResolverError, Step, StepOptions, args,
        check_name, lines, package, step, step_env,
    };
}

/// One package manager's knowledge. Associated functions only: a plugin has no
/// state (every call runs in a fresh instance).
pub trait Resolver {
    /// Package-manager name (lowercase ASCII, digits, `-`; at most 32 bytes).
    const NAME: &'static str;
    /// The plugin's own version, shown by `karapace doctor`.
    const VERSION: &'static str;
    /// Rootfs-relative paths (no leading `/`) that indicate this manager.
    const DETECT_PATHS: &'static [&'static str];

    /// Claims the image given which of [`Self::DETECT_PATHS`] exist.
    /// Default: any one of them.
    fn detect(present: &[String]) -> bool {
        !present.is_empty()
    }

    /// Steps that refresh package metadata. Default: none.
    fn refresh_steps(options: &StepOptions) -> Result<Vec<Step>, ResolverError> {
        let _ = options;
        Ok(Vec::new())
    }

    /// Steps that install `packages`. Names and versions have already been
    /// checked with [`Self::validate_name`] and [`Self::validate_version`].
    fn install_steps(
        packages: &[PackageRequest],
        options: &StepOptions,
    ) -> Result<Vec<Step>, ResolverError>;

    /// Argv printing the installed versions of `names` (already validated).
    fn query_argv(names: &[String]) -> Result<Vec<String>, ResolverError>;

    /// Parses the stdout of [`Self::query_argv`].
    fn parse_query(output: &str) -> Result<Vec<InstalledPackage>, ResolverError>;

    /// Checks a package name against the manager's grammar.
    fn validate_name(name: &str) -> Result<(), ResolverError>;

    /// Checks a version to pin. Default: 1..=128 bytes of ASCII letters,
    /// digits and `.+~:_-^`, starting with an alphanumeric character.
    fn validate_version(version: &str) -> Result<(), ResolverError> {
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
            Err(ResolverError::InvalidVersion(format!(
                "{version:?} is not a valid {} version",
                Self::NAME
            )))
        }
    }
}

/// Adapter from a [`Resolver`] to the generated component exports. It runs the
/// name/version checks before `install_steps`/`query_argv`, so a plugin cannot
/// forget them.
#[doc(hidden)]
pub struct Export<R>(PhantomData<R>);

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

    fn detect(present: Vec<String>) -> bool {
        R::detect(&present)
    }

    fn refresh_steps(options: StepOptions) -> Result<Vec<Step>, ResolverError> {
        R::refresh_steps(&options)
    }

    fn install_steps(
        packages: Vec<PackageRequest>,
        options: StepOptions,
    ) -> Result<Vec<Step>, ResolverError> {
        if packages.is_empty() {
            return Err(ResolverError::Unsupported(
                "install needs at least one package".to_string(),
            ));
        }
        for p in &packages {
            R::validate_name(&p.name)?;
            if let Some(v) = &p.version {
                R::validate_version(v)?;
            }
        }
        R::install_steps(&packages, &options)
    }

    fn query_argv(names: Vec<String>) -> Result<Vec<String>, ResolverError> {
        for n in &names {
            R::validate_name(n)?;
        }
        R::query_argv(&names)
    }

    fn parse_query(output: String) -> Result<Vec<InstalledPackage>, ResolverError> {
        R::parse_query(&output)
    }

    fn validate_name(name: String) -> Result<(), ResolverError> {
        R::validate_name(&name)
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

/// An installed package record.
pub fn package(name: &str, version: &str) -> InstalledPackage {
    InstalledPackage {
        name: name.to_string(),
        version: version.to_string(),
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
/// refused (it would read as an option).
pub fn check_name(
    manager: &str,
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
        Some(why) => Err(ResolverError::InvalidName(format!(
            "{name:?} {why} in a {manager} package name"
        ))),
    }
}

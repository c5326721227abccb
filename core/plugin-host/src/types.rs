//! Plain data exchanged with the host's callers (independent of the WIT
//! version a plugin was built against).

use std::path::PathBuf;

/// One command to run inside the environment (never on the host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Program and arguments; validated: non-empty, no NUL, bounded.
    pub argv: Vec<String>,
    /// Extra environment variables for this step.
    pub env: Vec<(String, String)>,
}

/// Facts about the environment the steps will run in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepOptions {
    /// The user namespace maps a single uid/gid (no subordinate ids), so a
    /// package manager cannot switch to an unprivileged helper user
    /// (apt then gets `-o APT::Sandbox::User=root`).
    pub single_uid_map: bool,
}

/// What detection found about an image, passed to every call after
/// detection (WIT 1.1 `image-context`; 1.0 plugins never see it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageContext {
    /// The plugin's detect paths present in the image.
    pub present: Vec<String>,
    /// The variant the plugin reported (e.g. "debian 12"); empty when it
    /// does not tell variants apart (always empty for a 1.0 plugin).
    pub variant: String,
}

impl ImageContext {
    /// Nothing known about the image (for tests and direct calls).
    pub const EMPTY: ImageContext = ImageContext {
        present: Vec::new(),
        variant: String::new(),
    };
}

/// What the package index said about requested names (WIT 1.1 `availability`),
/// validated by the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Availability {
    /// Requested names the index does not know (a subset of the request).
    pub unknown: Vec<String>,
    /// Names from the index to rank for "did you mean" (may be empty).
    pub candidates: Vec<String>,
}

/// One package to install; `version: Some(v)` pins it exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRequest {
    pub name: String,
    pub version: Option<String>,
}

impl PackageRequest {
    /// Latest available version of `name`.
    pub fn latest(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: None,
        }
    }

    /// Exactly `version` of `name`.
    pub fn pinned(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: Some(version.into()),
        }
    }
}

/// Where a plugin came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginSource {
    /// Compiled into the karapace binary.
    Builtin,
    /// Loaded from a plugin directory.
    Directory,
}

impl PluginSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginSource::Builtin => "builtin",
            PluginSource::Directory => "directory",
        }
    }
}

/// What `karapace doctor` shows about a loaded plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub source: PluginSource,
    /// The `.wasm` file for directory plugins.
    pub path: Option<PathBuf>,
    /// The WIT interface version the plugin implements, e.g. "1.0.0".
    pub interface: &'static str,
}

/// A plugin file that could not be loaded (shown by `karapace doctor`).
#[derive(Debug)]
pub struct LoadFailure {
    pub path: PathBuf,
    pub error: crate::PluginError,
}

//! The core's error type and the one place where errors become exit codes.
//!
//! Exit codes (spec): 0 success · 1 general failure · 2 manifest or usage error · 3 store error.
//! They are derived from the error's type, never from its message.

use karapace_schema::{LockError, ManifestError};
use karapace_store::StoreError;

/// Everything the core can fail with, one variant per layer below it.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),

    #[error(transparent)]
    Lock(#[from] LockError),

    #[error(transparent)]
    Store(#[from] StoreError),

    #[error(transparent)]
    Image(#[from] karapace_images::ImageError),

    #[error("{0}")]
    Plugin(String),

    #[error(transparent)]
    Helper(#[from] karapace_helper_client::HelperError),

    /// A package name outside the image's package-manager grammar (a manifest error: exit 2).
    #[error("invalid package name '{name}' for {plugin}: {reason}")]
    PackageName {
        name: String,
        plugin: String,
        reason: String,
    },

    /// An environment name given on the command line is invalid (spec: exit 3).
    #[error("invalid environment name '{name}': {reason}")]
    InvalidName { name: String, reason: String },

    #[error("no environment matching '{query}'")]
    NoMatch {
        query: String,
        suggestions: Vec<String>,
    },

    #[error("ambiguous env_id prefix '{prefix}': matches {count} environments")]
    Ambiguous { prefix: String, count: usize },

    /// The operation is not allowed in the environment's current state.
    #[error("{0}")]
    State(String),

    /// A command-line usage problem found after parsing (exit 2).
    #[error("{0}")]
    Usage(String),

    /// A feature that this build does not provide yet. Never reported as success.
    #[error("{what} is not available in this build of karapace yet")]
    Unavailable { what: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// What an environment would share of the host is refused, or a policy file is invalid.
    #[error(transparent)]
    HostSharing(#[from] crate::engine::host_sharing::policy::PolicyError),

    /// This host lacks what environments need (user namespaces, overlayfs, `HOME`, …); the message
    /// says how to fix it.
    #[error("{0}")]
    Host(String),

    /// A value could not be encoded (JSON output, a record for a remote).
    #[error("cannot encode {what}: {message}")]
    Encode { what: String, message: String },

    /// An environment lacks what its build gave it (its policy layer or a record in it).
    #[error("{0}")]
    Damaged(String),

    /// A build failed: the package manager, or what `--locked` / `--offline` forbid.
    #[error("{0}")]
    Build(String),

    /// A session could not be joined, waited for or stopped.
    #[error("{0}")]
    Session(String),

    /// The OCI runtime is not chosen, not found or not one karapace drives.
    #[error("{0}")]
    OciRuntime(String),

    /// Building a plugin failed: the wasm toolchain, the plugin SDK, cargo.
    #[error("{0}")]
    PluginBuild(String),

    /// What the user gave or answered cannot be used (exit 1, unlike a usage error: a file that
    /// exists without `--force`, an unknown template, a base image that cannot be pinned).
    #[error("{0}")]
    Refused(String),

    /// The command could not be executed inside the environment: `code` is 127 when it does not
    /// exist there, 126 otherwise (as shells and `podman exec` say).
    #[error("{command}: {reason} in {env}")]
    CannotExecute {
        command: String,
        env: String,
        reason: String,
        code: i32,
    },

    /// A remote failed, refused or sent something invalid (push/pull; exit 1).
    #[error("{0}")]
    Remote(String),

    /// An error and what the user can do about it (exit code of the error).
    #[error("{error}\nhint: {hint}")]
    Hinted { error: Box<CoreError>, hint: String },
}

impl CoreError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        CoreError::Io {
            context: context.into(),
            source,
        }
    }

    #[allow(clippy::needless_pass_by_value)] // used as `map_err(CoreError::plugin)`
    pub fn plugin(e: karapace_plugin_host::PluginError) -> Self {
        if e.is_invalid_input() {
            return CoreError::Usage(e.to_string());
        }
        CoreError::Plugin(e.to_string())
    }

    pub fn helper(e: karapace_helper_client::HelperError) -> Self {
        CoreError::Helper(e)
    }

    /// The process exit code for this error.
    /// This error with a hint of what to do about it.
    #[must_use]
    pub fn with_hint(self, hint: &str) -> CoreError {
        CoreError::Hinted {
            error: Box::new(self),
            hint: hint.to_owned(),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            CoreError::Hinted { error, .. } => error.exit_code(),
            CoreError::CannotExecute { code, .. } => *code,
            CoreError::Manifest(_) | CoreError::Usage(_) | CoreError::PackageName { .. } => 2,
            CoreError::Helper(e) => e.exit_code(),
            CoreError::Store(e) if e.is_store_error() => 3,
            CoreError::InvalidName { .. } => 3,
            _ => 1,
        }
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;

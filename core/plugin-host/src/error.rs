//! Typed errors of the plugin host. Every variant names the plugin (or the
//! file) and what went wrong, so a message is actionable on its own.

use std::path::PathBuf;

/// A typed error a plugin reported itself (mirror of the WIT `resolver-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolverError {
    /// Package name outside the manager's grammar.
    #[error("invalid package name: {0}")]
    InvalidName(String),
    /// Version the manager cannot pin.
    #[error("invalid version: {0}")]
    InvalidVersion(String),
    /// Well-formed request this manager cannot do (e.g. pacman pinning).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Query output not understood.
    #[error("cannot parse query output: {0}")]
    Parse(String),
}

/// Errors of loading or calling a resolver plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The file could not be read or is not a valid component for this host.
    #[error("plugin {path}: cannot load: {reason}")]
    Load { path: PathBuf, reason: String },
    /// The component imports something; plugins must be pure.
    #[error(
        "plugin {path}: refused: it imports {imports:?} (resolver plugins must import nothing)"
    )]
    HasImports { path: PathBuf, imports: Vec<String> },
    /// The component exports no interface version this host understands.
    #[error(
        "plugin {path}: refused: it exports neither karapace:resolver/resolver@1.1.0 nor @1.0.0 (exports: {exports:?})"
    )]
    UnsupportedInterface { path: PathBuf, exports: Vec<String> },
    /// A plugin directory or file other users may write, or owned by one: what it holds could
    /// be anyone's, and a plugin decides what every build runs.
    #[error("{path}: not loaded: {reason}")]
    Unsafe {
        path: PathBuf,
        reason: crate::trust::Untrusted,
    },
    /// Two plugins with the same name in the same directory.
    #[error("plugin {path}: name {name:?} is already provided by {other}")]
    Duplicate {
        path: PathBuf,
        name: String,
        other: PathBuf,
    },
    /// The fuel budget of one call ran out (e.g. an infinite loop).
    #[error(
        "plugin {plugin}: {call} exceeded its CPU budget of {fuel} fuel units (infinite loop?)"
    )]
    OutOfFuel {
        plugin: String,
        call: &'static str,
        fuel: u64,
    },
    /// The guest tried to grow its memory past the limit.
    #[error("plugin {plugin}: {call} tried to use {requested} bytes of memory (limit {limit})")]
    MemoryLimit {
        plugin: String,
        call: &'static str,
        requested: usize,
        limit: usize,
    },
    /// The guest overflowed its stack (e.g. unbounded recursion).
    #[error("plugin {plugin}: {call} overflowed its stack")]
    StackOverflow { plugin: String, call: &'static str },
    /// Any other trap (panic → `unreachable`, out-of-bounds access, ...).
    #[error("plugin {plugin}: {call} crashed: {detail}")]
    Trap {
        plugin: String,
        call: &'static str,
        detail: String,
    },
    /// The guest broke the component ABI (e.g. a string that is not UTF-8).
    #[error("plugin {plugin}: {call} broke the component ABI: {detail}")]
    Abi {
        plugin: String,
        call: &'static str,
        detail: String,
    },
    /// The guest returned data the host refuses (empty argv, NUL, too large...).
    #[error("plugin {plugin}: {call} returned invalid output: {reason}")]
    InvalidOutput {
        plugin: String,
        call: &'static str,
        reason: String,
    },
    /// The host refused to send a request (bad name, input too large).
    #[error("plugin {plugin}: refusing to call {call}: {reason}")]
    InvalidRequest {
        plugin: String,
        call: &'static str,
        reason: String,
    },
    /// The plugin answered with one of its typed errors.
    #[error("plugin {plugin}: {call}: {error}")]
    Resolver {
        plugin: String,
        call: &'static str,
        error: ResolverError,
    },
    /// Reading a plugin directory failed.
    #[error("plugin directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl PluginError {
    /// True when the plugin rejected a package name or version: a manifest
    /// error for the user (exit 2), not a plugin fault.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            PluginError::Resolver {
                error: ResolverError::InvalidName(_) | ResolverError::InvalidVersion(_),
                ..
            } | PluginError::InvalidRequest { .. }
        )
    }
}

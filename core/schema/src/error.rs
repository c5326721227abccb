//! Error types of the schema layer.
//!
//! Two enums, one per file kind, so the CLI can map them to exit codes without
//! looking at message text: every [`ManifestError`] is a manifest problem
//! (exit 2), every [`LockError`] is a lock problem (exit 1, as `--locked`
//! failures are specified).

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// A 1-based line and column inside a TOML document (column counted in
/// characters, not bytes, so it matches what an editor shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub line: usize,
    pub col: usize,
}

impl Location {
    /// Converts a byte offset into `text` into a line/column pair.
    ///
    /// Offsets past the end (or inside a multi-byte character) are clamped so
    /// a bad span from a parser can never panic here.
    pub fn from_offset(text: &str, offset: usize) -> Location {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        Location { line, col }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// Why a package, app or environment name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name is {len} bytes long (maximum {max})")]
    TooLong { len: usize, max: usize },
    #[error("name starts with '-', which a package manager would read as an option")]
    LeadingDash,
    #[error("name must start with an ASCII letter or digit, not {ch:?}")]
    InvalidFirstChar { ch: char },
    #[error("name contains {ch:?} at position {index}; allowed: {allowed}")]
    InvalidChar {
        ch: char,
        index: usize,
        allowed: &'static str,
    },
}

/// What is wrong with a manifest (the part independent of where it is).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ManifestErrorKind {
    /// TOML syntax error, wrong value type, unknown or missing key.
    #[error("{message}")]
    Syntax { message: String },
    #[error("manifest is not valid UTF-8")]
    NotUtf8,
    #[error("manifest is larger than {max} bytes")]
    TooLarge { max: u64 },
    #[error("unsupported manifest_version {found} (this karapace reads version 1)")]
    UnsupportedVersion { found: i64 },
    #[error("base.image must not be empty")]
    EmptyBaseImage,
    #[error("invalid package name {name:?} in [system] packages: {reason}")]
    InvalidPackage { name: String, reason: NameError },
    #[error("invalid app name {name:?} in [gui] apps: {reason}")]
    InvalidApp { name: String, reason: NameError },
    #[error("mount label must not be empty")]
    EmptyMountLabel,
    #[error("invalid mount label {label:?}: {reason}")]
    InvalidMountLabel { label: String, reason: &'static str },
    #[error("duplicate mount label {label:?} (labels are compared after trimming)")]
    DuplicateMountLabel { label: String },
    #[error(
        "invalid mount {label:?} = {spec:?}: {reason}; expected \"<host path>:<container path>\""
    )]
    InvalidMount {
        label: String,
        spec: String,
        reason: &'static str,
    },
    #[error("unknown runtime.backend {value:?}; expected one of: namespace, oci, mock")]
    InvalidBackend { value: String },
    /// A `[system] packages` name the image's package index does not know,
    /// found by the resolver plugin's availability check before installing.
    #[error(
        "package {name:?} is not in the image's package index ({}){}{}",
        detail.source_index,
        did_you_mean(&detail.suggestions),
        also_unknown(&detail.also)
    )]
    UnknownPackage {
        name: String,
        detail: Box<UnknownPackage>,
    },
    /// `build --require-pinned-image` on an alias (the standard tool's message).
    #[error("base.image is not pinned: '{image}'")]
    NotPinned { image: String },
}

/// What the package index said about an unknown package (boxed in
/// [`ManifestErrorKind::UnknownPackage`] to keep the error small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPackage {
    /// Which index: the plugin, and the variant it detected.
    pub source_index: String,
    /// Close names from the index, closest first.
    pub suggestions: Vec<String>,
    /// Other requested names the index does not know either.
    pub also: Vec<String>,
}

/// A manifest could not be read, parsed or validated. Always exit code 2.
#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("{}: cannot read manifest: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Parse or validation failure. `location` is known whenever the manifest
    /// came from text (not built in code); `path` whenever it came from a file.
    #[error("{}{kind}", prefix(path.as_deref(), *location))]
    Invalid {
        path: Option<PathBuf>,
        location: Option<Location>,
        kind: ManifestErrorKind,
    },
}

fn did_you_mean(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        return String::new();
    }
    let quoted: Vec<String> = suggestions.iter().map(|s| format!("{s:?}")).collect();
    format!("; did you mean {}?", quoted.join(", "))
}

fn also_unknown(also: &[String]) -> String {
    if also.is_empty() {
        return String::new();
    }
    let quoted: Vec<String> = also.iter().map(|s| format!("{s:?}")).collect();
    format!(" (also unknown: {})", quoted.join(", "))
}

fn prefix(path: Option<&Path>, location: Option<Location>) -> String {
    match (path, location) {
        (Some(p), Some(l)) => format!("{}:{l}: ", p.display()),
        (Some(p), None) => format!("{}: ", p.display()),
        (None, Some(l)) => format!("line {}, column {}: ", l.line, l.col),
        (None, None) => String::new(),
    }
}

impl ManifestError {
    pub(crate) fn at(location: Option<Location>, kind: ManifestErrorKind) -> ManifestError {
        ManifestError::Invalid {
            path: None,
            location,
            kind,
        }
    }

    /// The exit code the CLI must use for any manifest problem.
    pub const EXIT_CODE: i32 = 2;

    /// `(line, column)`, both 1-based, when the error points into the text.
    pub fn line_col(&self) -> Option<(usize, usize)> {
        match self {
            ManifestError::Invalid {
                location: Some(l), ..
            } => Some((l.line, l.col)),
            _ => None,
        }
    }

    /// The validation problem, if this is not an I/O error.
    pub fn kind(&self) -> Option<&ManifestErrorKind> {
        match self {
            ManifestError::Invalid { kind, .. } => Some(kind),
            ManifestError::Read { .. } => None,
        }
    }

    /// Attaches the manifest's path so `Display` reads `<file>:<line>:<col>: <msg>`.
    #[must_use]
    pub fn with_path(self, new_path: &Path) -> ManifestError {
        match self {
            ManifestError::Invalid { location, kind, .. } => ManifestError::Invalid {
                path: Some(new_path.to_path_buf()),
                location,
                kind,
            },
            read @ ManifestError::Read { .. } => read,
        }
    }
}

/// A lock file is missing, unreadable, malformed or inconsistent. Always exit code 1.
#[derive(Debug, Error)]
pub enum LockError {
    #[error("{}: lock file not found (run 'karapace build' without --locked to create it)", path.display())]
    Missing { path: PathBuf },
    #[error("{}: cannot read lock file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot write lock file: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}{message}", prefix(path.as_deref(), *location))]
    Parse {
        path: Option<PathBuf>,
        location: Option<Location>,
        message: String,
    },
    #[error("unsupported lock_version {found} (this karapace reads version 2)")]
    UnsupportedVersion { found: i64 },
    /// The `env_id` stored in the lock is not the one its own fields hash to.
    #[error(
        "lock file integrity check failed: its fields hash to {expected} but it records {actual}"
    )]
    IntegrityMismatch { expected: String, actual: String },
    /// The lock no longer describes what the manifest asks for.
    #[error(
        "lock file does not match the manifest: {what} differs (lock: {lock}, manifest: {manifest}); run 'karapace build' without --locked to update it"
    )]
    IntentMismatch {
        what: String,
        lock: String,
        manifest: String,
    },
}

impl LockError {
    /// The exit code the CLI must use for any lock problem.
    pub const EXIT_CODE: i32 = 1;

    /// `(line, column)` of a parse error, when known.
    pub fn line_col(&self) -> Option<(usize, usize)> {
        match self {
            LockError::Parse {
                location: Some(l), ..
            } => Some((l.line, l.col)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_line_and_char_column() {
        let text = "ab\ncdé\nfg";
        assert_eq!(Location::from_offset(text, 0), Location { line: 1, col: 1 });
        assert_eq!(Location::from_offset(text, 3), Location { line: 2, col: 1 });
        // 'é' is two bytes; the 'f' after the newline is line 3 col 1.
        assert_eq!(Location::from_offset(text, 8), Location { line: 3, col: 1 });
        // Inside 'é' clamps back to its start (col 3), past-the-end clamps to the end.
        assert_eq!(Location::from_offset(text, 6), Location { line: 2, col: 3 });
        assert_eq!(
            Location::from_offset(text, 999),
            Location { line: 3, col: 3 }
        );
    }

    #[test]
    fn display_includes_path_and_position() {
        let e = ManifestError::at(
            Some(Location { line: 4, col: 7 }),
            ManifestErrorKind::EmptyBaseImage,
        )
        .with_path(Path::new("dir/karapace.toml"));
        assert_eq!(
            e.to_string(),
            "dir/karapace.toml:4:7: base.image must not be empty"
        );
        assert_eq!(e.line_col(), Some((4, 7)));
        let e = ManifestError::at(None, ManifestErrorKind::EmptyMountLabel);
        assert_eq!(e.to_string(), "mount label must not be empty");
        assert_eq!(e.line_col(), None);
    }
}

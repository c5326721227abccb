//! One error enum for the whole store, classified for the CLI's exit codes.

use std::io;
use std::path::PathBuf;

/// Everything the store can fail with.
///
/// [`StoreError::exit_class`] tells the CLI which exit code to use: 3 for store errors
/// (integrity, lock, version, invalid/duplicate name, unknown layer/snapshot), 1 otherwise.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("no space left on device while {context}; the store was left unchanged")]
    NoSpace { context: String },
    #[error("no store at {0}")]
    NoStore(PathBuf),
    #[error(
        "store format version {found} is not supported (this build uses {expected}); run `karapace migrate`"
    )]
    Version { found: u32, expected: u32 },
    #[error("store lock: {0}")]
    Lock(String),
    #[error("integrity error in {key}: {reason}")]
    Integrity { key: String, reason: String },
    #[error("corrupt metadata: {}", format_corrupt(.0))]
    CorruptMetadata(Vec<CorruptEntry>),
    #[error("invalid environment name '{name}': {reason}")]
    InvalidName { name: String, reason: String },
    #[error("an environment named '{0}' already exists")]
    DuplicateName(String),
    #[error("environment {0} already exists")]
    EnvExists(String),
    #[error("unknown environment {0}")]
    UnknownEnv(String),
    #[error("unknown layer {0}")]
    UnknownLayer(String),
    #[error("unknown snapshot {0}")]
    UnknownSnapshot(String),
    #[error("environment {env_id} has {sessions} live session(s)")]
    EnvBusy { env_id: String, sessions: usize },
    #[error("unsafe archive entry '{path}': {reason}")]
    UnsafeArchive { path: String, reason: String },
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("unsafe store: {0}")]
    Insecure(String),
}

/// One unreadable or checksum-failing metadata file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptEntry {
    pub path: PathBuf,
    pub reason: String,
}

impl CorruptEntry {
    /// The environment the file records, when its name is an `env_id` (a metadata file is named
    /// after its environment): what `destroy` takes to remove an environment it cannot read.
    pub fn env_id(&self) -> Option<&str> {
        self.path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| crate::is_valid_key(n))
    }
}

fn format_corrupt(entries: &[CorruptEntry]) -> String {
    entries
        .iter()
        .map(|e| format!("{}: {}", e.path.display(), e.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

impl StoreError {
    /// True for the errors the CLI reports with exit code 3.
    pub fn is_store_error(&self) -> bool {
        matches!(
            self,
            StoreError::NoStore(_)
                | StoreError::Version { .. }
                | StoreError::Lock(_)
                | StoreError::Integrity { .. }
                | StoreError::CorruptMetadata(_)
                | StoreError::InvalidName { .. }
                | StoreError::DuplicateName(_)
                | StoreError::EnvExists(_)
                | StoreError::UnknownLayer(_)
                | StoreError::UnknownSnapshot(_)
                | StoreError::EnvBusy { .. }
                | StoreError::UnsafeArchive { .. }
                | StoreError::Insecure(_)
        )
    }

    /// Exit code class: 3 for store errors, 1 for everything else.
    pub fn exit_class(&self) -> u8 {
        if self.is_store_error() { 3 } else { 1 }
    }

    /// True when the failure was the filesystem running out of space.
    pub fn is_no_space(&self) -> bool {
        matches!(self, StoreError::NoSpace { .. })
    }
}

impl StoreError {
    /// An I/O error the store owner got for lack of permission (EACCES, EPERM): a job for the
    /// store's [`crate::owners::TreeWorker`] when the files belong to the environment's ids.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, StoreError::Io { source, .. }
            if source.kind() == io::ErrorKind::PermissionDenied
                || source.raw_os_error() == Some(nix::errno::Errno::EPERM as i32))
    }
}

/// Build a closure mapping an `io::Error` into a `StoreError` with context (the tar crate's
/// rule: running out of space is `NoSpace`, whatever wrapped it).
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let to_tar = karapace_tar::error::io_err(context);
    move |source| StoreError::from(to_tar(source))
}

/// Same as [`io_err`] but naming a path. The message is only written when there is an error:
/// unpacking calls this several times for every file it creates.
pub(crate) fn io_at<'a>(
    what: &'a str,
    path: &'a std::path::Path,
) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::from(karapace_tar::error::io_at(what, path)(source))
}

impl From<karapace_tar::TarError> for StoreError {
    /// The same failure under the same name and message.
    fn from(e: karapace_tar::TarError) -> Self {
        use karapace_tar::TarError;
        match e {
            TarError::Io { context, source } => StoreError::Io { context, source },
            TarError::NoSpace { context } => StoreError::NoSpace { context },
            TarError::Integrity { key, reason } => StoreError::Integrity { key, reason },
            TarError::UnsafeArchive { path, reason } => StoreError::UnsafeArchive { path, reason },
            TarError::Invalid(what) | TarError::Worker(what) => StoreError::Invalid(what),
        }
    }
}

impl From<StoreError> for karapace_tar::TarError {
    /// For an [`karapace_tar::UnpackWorker`]: a tar failure under its own name and message,
    /// anything else as its message.
    fn from(e: StoreError) -> Self {
        use karapace_tar::TarError;
        match e {
            StoreError::Io { context, source } => TarError::Io { context, source },
            StoreError::NoSpace { context } => TarError::NoSpace { context },
            StoreError::Integrity { key, reason } => TarError::Integrity { key, reason },
            StoreError::UnsafeArchive { path, reason } => TarError::UnsafeArchive { path, reason },
            StoreError::Invalid(what) => TarError::Invalid(what),
            other => TarError::Worker(other.to_string()),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_archive_is_a_store_error_with_the_same_message() {
        let e = karapace_tar::TarError::UnsafeArchive {
            path: "../evil".into(),
            reason: "'..' component".into(),
        };
        let shown = e.to_string();
        let e = StoreError::from(e);
        assert!(matches!(e, StoreError::UnsafeArchive { .. }), "{e:?}");
        assert_eq!(e.exit_class(), 3);
        assert_eq!(e.to_string(), shown);
    }
}

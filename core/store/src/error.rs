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

/// True for ENOSPC/EDQUOT, however deeply a library wrapped it.
pub(crate) fn io_is_no_space(e: &io::Error) -> bool {
    if e.kind() == io::ErrorKind::StorageFull || e.kind() == io::ErrorKind::QuotaExceeded {
        return true;
    }
    if matches!(e.raw_os_error(), Some(28 | 122)) {
        return true;
    }
    // The tar crate wraps the writer's error in its own type; look one level down.
    e.get_ref()
        .and_then(|inner| inner.source())
        .and_then(|s| s.downcast_ref::<io::Error>())
        .is_some_and(io_is_no_space)
        || e.to_string().contains("No space left on device")
}

/// Build a closure mapping an `io::Error` into a `StoreError` with context.
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let context = context.into();
    move |source| {
        if io_is_no_space(&source) {
            StoreError::NoSpace { context }
        } else {
            StoreError::Io { context, source }
        }
    }
}

/// Same as [`io_err`] but naming a path. The message is only written when there is an error:
/// unpacking calls this several times for every file it creates.
pub(crate) fn io_at<'a>(
    what: &'a str,
    path: &'a std::path::Path,
) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| io_err(format!("{what} {}", shown_path(path)))(source)
}

/// A path for an error message, at most 1 KiB of it: archive entries may carry names of up to a
/// MiB (GNU long names), and an error must not become a megabyte of terminal output.
pub(crate) fn shown_path(path: &std::path::Path) -> String {
    const MAX: usize = 1024;
    let full = path.display().to_string();
    if full.len() <= MAX {
        return full;
    }
    let mut end = MAX;
    while !full.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &full[..end], full.len())
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

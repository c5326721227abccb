//! What packing and unpacking fail with. The store turns each variant into its own error of
//! the same name and message (`karapace_store::StoreError`).

use std::io;

/// Everything packing and unpacking can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("no space left on device while {context}; the store was left unchanged")]
    NoSpace { context: String },
    /// The archive is malformed or corrupt.
    #[error("integrity error in {key}: {reason}")]
    Integrity { key: String, reason: String },
    /// An entry that could write outside the target, or one this unpacking refuses.
    #[error("unsafe archive entry '{path}': {reason}")]
    UnsafeArchive { path: String, reason: String },
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// Any other failure of an [`crate::UnpackWorker`] (its own message, as it gave it).
    #[error("{0}")]
    Worker(String),
}

pub type Result<T, E = TarError> = std::result::Result<T, E>;

/// True for ENOSPC/EDQUOT, however deeply a library wrapped it.
pub fn io_is_no_space(e: &io::Error) -> bool {
    const NO_SPACE: i32 = nix::errno::Errno::ENOSPC as i32;
    const QUOTA: i32 = nix::errno::Errno::EDQUOT as i32;
    if e.kind() == io::ErrorKind::StorageFull || e.kind() == io::ErrorKind::QuotaExceeded {
        return true;
    }
    if matches!(e.raw_os_error(), Some(NO_SPACE | QUOTA)) {
        return true;
    }
    // The tar crate wraps the writer's error in its own type; look one level down.
    e.get_ref()
        .and_then(|inner| inner.source())
        .and_then(|s| s.downcast_ref::<io::Error>())
        .is_some_and(io_is_no_space)
        || e.to_string().contains("No space left on device")
}

/// Build a closure mapping an `io::Error` into a [`TarError`] with context.
pub fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> TarError {
    let context = context.into();
    move |source| {
        if io_is_no_space(&source) {
            TarError::NoSpace { context }
        } else {
            TarError::Io { context, source }
        }
    }
}

/// Same as [`io_err`] but naming a path. The message is only written when there is an error:
/// unpacking calls this several times for every file it creates.
pub fn io_at<'a>(
    what: &'a str,
    path: &'a std::path::Path,
) -> impl FnOnce(io::Error) -> TarError + 'a {
    move |source| io_err(format!("{what} {}", shown_path(path)))(source)
}

/// A path for an error message, at most 1 KiB of it: archive entries may carry names of up to a
/// MiB (GNU long names), and an error must not become a megabyte of terminal output.
pub fn shown_path(path: &std::path::Path) -> String {
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

//! Small file helpers for user-facing files (manifests) the core writes.

use std::path::Path;

use crate::error::{CoreError, Result};

/// Writes `text` to `path` atomically: temp file in the same directory → fsync → rename. A crash
/// leaves either the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    // A user's project file keeps the mode its owner gave it.
    karapace_atomic_file::write(
        path,
        text.as_bytes(),
        karapace_atomic_file::Mode::KeepOr(0o644),
    )
    .map_err(|e| CoreError::io(format!("cannot write {}", path.display()), e))
}

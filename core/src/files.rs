//! Small file helpers for user-facing files (manifests) the core writes.

use std::io::Write;
use std::path::Path;

use crate::error::{CoreError, Result};

/// Writes `text` to `path` atomically: temp file in the same directory → fsync → rename. A crash
/// leaves either the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| CoreError::io("cannot create a temporary file", e))?;
    tmp.write_all(text.as_bytes())
        .map_err(|e| CoreError::io(format!("cannot write {}", path.display()), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| CoreError::io(format!("cannot sync {}", path.display()), e))?;
    // Keep the permissions of the file being replaced (tempfile creates 0600).
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    } else {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(path)
        .map_err(|e| CoreError::io(format!("cannot write {}", path.display()), e.error))?;
    Ok(())
}

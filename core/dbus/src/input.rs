//! Checks on what a bus peer sends, before the engine sees it. The caller is the user (the uid
//! check comes first), but a client can be buggy or fed by something hostile, so every argument
//! is bounded and refused with a message that quotes it only escaped and shortened.

use std::path::{Component, Path, PathBuf};

use crate::error::ManagerError;

/// Longer than any `env_id` (64) or name the store accepts: anything longer is not an identifier.
pub const MAX_ID_BYTES: usize = 256;
/// Linux's `PATH_MAX`.
pub const MAX_PATH_BYTES: usize = 4096;
/// How much of a refused argument an error message quotes.
const QUOTED_CHARS: usize = 64;

/// An environment identifier (`env_id`, `short_id`, unique prefix or name). Refuses the empty
/// string, more than [`MAX_ID_BYTES`], and control characters (which no identifier contains and
/// which would end up in the messages clients show).
pub fn identifier<'a>(what: &str, value: &'a str) -> Result<&'a str, ManagerError> {
    if value.is_empty() {
        return Err(invalid(format!("{what} must not be empty")));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(invalid(format!(
            "{what} is {} bytes long (at most {MAX_ID_BYTES}): '{}'",
            value.len(),
            quoted(value)
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{what} contains control characters: '{}'",
            quoted(value)
        )));
    }
    Ok(value)
}

/// A manifest path. Refuses the empty string, more than [`MAX_PATH_BYTES`], control characters,
/// a relative path (the service's working directory is not the caller's), any `..` component
/// (a path that climbs is a trick, never what a client means), and anything but a regular file
/// after links are followed: a FIFO would block the build forever, a device could be endless.
/// The file is then read by the engine with the service's rights, which are the caller's: only
/// the service's own uid may call it.
pub fn manifest_path(value: &str) -> Result<PathBuf, ManagerError> {
    if value.is_empty() {
        return Err(invalid("the manifest path must not be empty".into()));
    }
    if value.len() > MAX_PATH_BYTES {
        return Err(invalid(format!(
            "the manifest path is {} bytes long (at most {MAX_PATH_BYTES}): '{}'",
            value.len(),
            quoted(value)
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!(
            "the manifest path contains control characters: '{}'",
            quoted(value)
        )));
    }
    let path = Path::new(value);
    if !path.is_absolute() {
        return Err(invalid(format!(
            "the manifest path must be absolute: '{}'",
            quoted(value)
        )));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(invalid(format!(
            "the manifest path must not contain '..': '{}'",
            quoted(value)
        )));
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(path.to_path_buf()),
        Ok(_) => Err(invalid(format!(
            "the manifest path is not a regular file: '{}'",
            quoted(value)
        ))),
        Err(e) => Err(ManagerError::InvalidManifest(format!(
            "cannot read manifest '{}': {e}",
            quoted(value)
        ))),
    }
}

fn invalid(message: String) -> ManagerError {
    ManagerError::InvalidArgument(message)
}

/// `value` escaped (no control characters reach a message) and cut to [`QUOTED_CHARS`].
pub fn quoted(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(QUOTED_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().nth(QUOTED_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(r: Result<impl std::fmt::Debug, ManagerError>) -> String {
        match r {
            Err(ManagerError::InvalidArgument(m)) => m,
            other => panic!("not refused as an invalid argument: {other:?}"),
        }
    }

    #[test]
    fn identifiers_are_bounded_and_printable() {
        assert_eq!(identifier("id", "web").ok(), Some("web"));
        refused(identifier("id", ""));
        let long = "a".repeat(MAX_ID_BYTES + 1);
        let m = refused(identifier("id", &long));
        assert!(m.len() < 200, "the message quotes all of it: {m}");
        let m = refused(identifier("id", "we\u{1b}[2Jb\n"));
        assert!(!m.chars().any(char::is_control), "{m:?}");
    }

    #[test]
    fn manifest_paths_must_be_absolute_regular_files_without_dotdot() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("karapace.toml");
        std::fs::write(&file, "").unwrap();
        let text = file.to_str().unwrap();
        assert_eq!(manifest_path(text).unwrap(), file);
        refused(manifest_path("karapace.toml"));
        refused(manifest_path(&format!(
            "{}/../x/karapace.toml",
            dir.path().display()
        )));
        refused(manifest_path(dir.path().to_str().unwrap()));
        refused(manifest_path("/dev/null"));
        refused(manifest_path(&format!("/{}", "a".repeat(MAX_PATH_BYTES))));
        refused(manifest_path("/tmp/a\u{0}b"));
        assert!(matches!(
            manifest_path("/nonexistent/karapace.toml"),
            Err(ManagerError::InvalidManifest(_))
        ));
    }
}

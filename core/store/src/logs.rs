//! Build logs: everything the installer steps of a build printed, kept in `<root>/logs/` so a
//! user can read why a package failed after the fact. Private like the rest of the store (the
//! directory 0700, each log 0600); only the newest [`KEPT`] logs are kept.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Result, io_at};
use crate::fsutil::{create_dir_all_private, unique_name};
use crate::store::Store;

/// How many build logs a store keeps (the oldest go first).
pub const KEPT: usize = 20;

impl Store {
    /// `<root>/logs/`.
    pub fn logs_dir(&self) -> PathBuf {
        self.root().join("logs")
    }

    /// A new, empty build log (`build-<unix seconds>-<unique>.log`), after removing the oldest
    /// logs beyond [`KEPT`].
    pub fn new_build_log(&self) -> Result<(PathBuf, File)> {
        let dir = self.logs_dir();
        create_dir_all_private(&dir).map_err(io_at("create", &dir))?;
        prune(&dir, KEPT.saturating_sub(1));
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let path = dir.join(format!("build-{secs:012}-{}.log", unique_name("l")));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_at("create", &path))?;
        Ok((path, file))
    }
}

/// Removes the oldest `build-*.log` files of `dir` until at most `keep` remain. Best effort: a
/// log that cannot be removed costs disk space, nothing else.
fn prune(dir: &std::path::Path, keep: usize) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "log")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("build-"))
        })
        .collect();
    if logs.len() <= keep {
        return;
    }
    // The names start with zero-padded seconds: name order is age order.
    logs.sort();
    for old in &logs[..logs.len() - keep] {
        let _ = fs::remove_file(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn logs_are_private_and_only_the_newest_are_kept() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(&t.path().join("s")).unwrap();
        let mut paths = Vec::new();
        for _ in 0..KEPT + 5 {
            paths.push(store.new_build_log().unwrap().0);
        }
        let left: Vec<_> = fs::read_dir(store.logs_dir()).unwrap().flatten().collect();
        assert_eq!(left.len(), KEPT);
        assert!(paths.last().unwrap().exists(), "the newest log is kept");
        let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.logs_dir()), 0o700);
        assert_eq!(mode(paths.last().unwrap()), 0o600);
    }
}

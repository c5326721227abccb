//! Small durable-filesystem helpers: fsync of directories, atomic file writes,
//! idempotent removals.

use crate::error::{Result, io_at};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Make a directory's entries (creations, renames, unlinks) durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_at("fsync directory", dir))
}

/// fsync the parent directory of `path`.
pub(crate) fn fsync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => fsync_dir(p),
        _ => Ok(()),
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name unique within this machine for temp files and staging dirs.
pub(crate) fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{nanos}-{n}", std::process::id())
}

/// Write `bytes` to `dest` atomically: temp file in `tmp_dir` (same filesystem) →
/// fsync → rename → fsync the destination directory.
pub(crate) fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_dir.join(unique_name("write"));
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_at("create temp file", &tmp))?;
        f.write_all(bytes).map_err(io_at("write", &tmp))?;
        f.sync_all().map_err(io_at("fsync", &tmp))?;
        fs::rename(&tmp, dest).map_err(io_at("rename into place", dest))?;
        fsync_parent(dest)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Write `bytes` to `dest` atomically (temp file + rename) but not durably: for runtime state
/// that means nothing after a crash, where two fsyncs would dominate the cost.
pub(crate) fn write_volatile(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_dir.join(unique_name("write"));
    let res = fs::write(&tmp, bytes)
        .map_err(io_at("write", &tmp))
        .and_then(|()| fs::rename(&tmp, dest).map_err(io_at("rename into place", dest)));
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Remove a file if present (idempotent).
pub(crate) fn remove_file_if_exists(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_at("remove", path)(e)),
    }
}

/// Remove a directory tree if present (idempotent; tolerates a partial earlier removal).
/// Read-only directories inside (e.g. from an unpacked layer) are made writable first.
pub(crate) fn remove_tree_if_exists(path: &Path) -> Result<bool> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_at("stat", path)(e)),
    };
    if !meta.is_dir() {
        return remove_file_if_exists(path);
    }
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_tree_writable(path);
            match fs::remove_dir_all(path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(io_at("remove directory", path)(e)),
            }
        }
        Err(e) => Err(io_at("remove directory", path)(e)),
    }
}

fn make_tree_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack: Vec<PathBuf> = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
}

/// Remove a large directory tree using all cores (directories are removed in parallel,
/// bottom-up). Falls back to the sequential, permission-fixing removal on any error.
pub(crate) fn remove_tree_parallel(path: &Path) -> Result<bool> {
    fn go(dir: &Path) -> io::Result<()> {
        use rayon::prelude::*;
        let entries: Vec<fs::DirEntry> = fs::read_dir(dir)?.collect::<io::Result<_>>()?;
        entries.par_iter().try_for_each(|e| {
            if e.file_type()?.is_dir() {
                go(&e.path())
            } else {
                fs::remove_file(e.path())
            }
        })?;
        fs::remove_dir(dir)
    }
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Ok(m) if m.is_dir() => {}
        _ => return remove_tree_if_exists(path),
    }
    match go(path) {
        Ok(()) => Ok(true),
        Err(_) => remove_tree_if_exists(path),
    }
}

/// True if `path` exists (without following a final symlink).
pub(crate) fn exists_nofollow(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

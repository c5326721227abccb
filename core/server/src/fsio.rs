//! Durable file writes for the data directory: temp file in `tmp/` → fsync → rename → fsync
//! the directory. A [`TempFile`] removes itself unless it was renamed into place, so an upload
//! that fails (or a client that vanishes) leaves nothing behind; a crash leaves at most a
//! file in `tmp/`, which start-up empties.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A new file in `tmp/`, removed on drop unless [`TempFile::persist`] moved it.
pub struct TempFile {
    path: Option<PathBuf>,
    pub file: File,
}

impl TempFile {
    /// Creates `<tmp_dir>/<prefix>-<pid>-<n>` (mode 0600, never an existing file).
    pub fn new(tmp_dir: &Path, prefix: &str) -> io::Result<TempFile> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = tmp_dir.join(format!("{prefix}-{}-{n}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(TempFile {
            path: Some(path),
            file,
        })
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// fsync, rename to `dest`, fsync `dest`'s directory.
    pub fn persist(mut self, dest: &Path) -> io::Result<()> {
        self.file.sync_all()?;
        let Some(path) = self.path.take() else {
            return Err(io::Error::other("temp file already persisted"));
        };
        if let Err(e) = fs::rename(&path, dest) {
            // Put the path back so drop removes the temp file.
            self.path = Some(path);
            return Err(e);
        }
        sync_dir(dest.parent().unwrap_or(Path::new(".")))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// fsync a directory (makes a rename in it durable).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` (and parents) and makes it private (0700). Refuses a `dir` that is a symlink
/// or belongs to another user: whoever could plant one in the data directory would otherwise
/// make the server chmod, empty or write the target (often as root).
pub fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    fs::create_dir_all(dir)?;
    let meta = fs::symlink_metadata(dir)?;
    if !meta.file_type().is_dir() {
        return Err(io::Error::other(format!(
            "{} is a symlink or not a directory; refusing to use it",
            dir.display()
        )));
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(io::Error::other(format!(
            "{} belongs to uid {}, not to the server's user; refusing to use it",
            dir.display(),
            meta.uid()
        )));
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Removes every entry of `dir` (temp files of uploads a crash or kill interrupted).
/// Returns how many were removed.
pub fn empty_dir(dir: &Path) -> io::Result<usize> {
    let mut n = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
        n += 1;
    }
    Ok(n)
}

/// Opens a regular file for reading without following a symlink at its last component.
pub fn open_regular(path: &Path) -> io::Result<Option<(File, u64)>> {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    Ok(Some((f, meta.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_symlinked_data_subdirectory_is_refused_untouched() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("precious"), b"keep").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("tmp")).unwrap();
        let err = private_dir(&dir.path().join("tmp")).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "the target's mode is untouched");
        assert!(target.join("precious").exists());
    }

    #[test]
    fn temp_files_vanish_unless_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        private_dir(&tmp).unwrap();
        let t = TempFile::new(&tmp, "x").unwrap();
        let p = t.path().to_path_buf();
        assert!(p.exists());
        drop(t);
        assert!(!p.exists());
        let mut t = TempFile::new(&tmp, "x").unwrap();
        t.file.write_all(b"data").unwrap();
        let dest = dir.path().join("dest");
        t.persist(&dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"data");
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn symlinks_are_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("real"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
        assert!(open_regular(&dir.path().join("link")).is_err());
        assert!(open_regular(&dir.path().join("real")).unwrap().is_some());
        assert!(open_regular(&dir.path().join("none")).unwrap().is_none());
        assert!(open_regular(dir.path()).unwrap().is_none());
    }
}

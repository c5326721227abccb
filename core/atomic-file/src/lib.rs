//! Atomic, durable file replacement — the one rule for every file Karapace writes whole (store
//! metadata, `karapace.lock`, manifests, compiled plugins, desktop entries):
//!
//! 1. the new content goes to a fresh temporary file (created exclusively, `0600` until step 3,
//!    never through a link) on the destination's file system;
//! 2. it is written and `fsync`ed;
//! 3. its mode is set ([`Mode`]), independent of the umask;
//! 4. it is renamed over the destination (a link planted at the destination's name is replaced,
//!    not followed);
//! 5. the directory holding the destination is `fsync`ed, so the rename survives a crash.
//!
//! A reader sees the old file or the new one, never a torn one; after a crash the destination
//! holds one of them whole. A failure removes the temporary file.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The mode the new file gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Exactly these permission bits.
    Exactly(u32),
    /// The replaced file's permission bits, or these when there is none (a user's project file
    /// keeps what its owner gave it).
    KeepOr(u32),
}

/// Replaces `dest` with `bytes`; the temporary file lives in `dest`'s directory.
pub fn write(dest: &Path, bytes: &[u8], mode: Mode) -> io::Result<()> {
    let dir = parent_dir(dest);
    write_via(&dir, dest, bytes, mode)
}

/// Replaces `dest` with `bytes`; the temporary file lives in `tmp_dir`, which must be on the
/// same file system as `dest` (a store keeps its temporary files where recovery finds them).
pub fn write_via(tmp_dir: &Path, dest: &Path, bytes: &[u8], mode: Mode) -> io::Result<()> {
    let perms = match mode {
        Mode::Exactly(bits) => bits,
        // A link at the destination is replaced, so its target's mode is not the file's.
        Mode::KeepOr(bits) => fs::symlink_metadata(dest)
            .ok()
            .filter(fs::Metadata::is_file)
            // Only the permission bits: a set-id or sticky bit of the old file is not the
            // content's to inherit.
            .map_or(bits, |m| m.permissions().mode() & 0o777),
    };
    let (tmp, mut file) = create_temp(tmp_dir)?;
    let result = (|| {
        file.write_all(bytes)?;
        // The mode before the sync, so a crash never leaves the new file with the temporary 0600.
        file.set_permissions(Permissions::from_mode(perms))?;
        file.sync_all()?;
        fs::rename(&tmp, dest)?;
        sync_dir(&parent_dir(dest))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Makes a rename in `dir` durable. File systems that cannot `fsync` a directory say so with
/// `EINVAL`, and a directory the caller may write but not read (mode `0300`) cannot be opened to
/// sync it; the file is replaced either way, so there is nothing more to do (an `EIO` of the sync
/// itself is reported). For renames made elsewhere, too (a file validated at its temporary name
/// before it is moved into place).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let d = match File::open(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(()),
        Err(e) => return Err(e),
    };
    match d.sync_all() {
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
        other => other,
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A new file of a name no one else uses, created exclusively (`O_EXCL` does not follow a link
/// at the name).
fn create_temp(dir: &Path) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    for _ in 0..16 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(
            ".karapace-write-{}-{nanos}-{n}",
            std::process::id()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free temporary file name in {}", dir.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn replaces_whole_files_with_the_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("lock");
        write(&f, b"one", Mode::KeepOr(0o644)).unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"one");
        assert_eq!(mode_of(&f), 0o644);
        fs::set_permissions(&f, Permissions::from_mode(0o640)).unwrap();
        write(&f, b"two", Mode::KeepOr(0o644)).unwrap();
        assert_eq!(
            (fs::read(&f).unwrap(), mode_of(&f)),
            (b"two".to_vec(), 0o640)
        );
        write(&f, b"three", Mode::Exactly(0o600)).unwrap();
        assert_eq!(mode_of(&f), 0o600);
        // Set-id and sticky bits of the old file are not kept.
        fs::set_permissions(&f, Permissions::from_mode(0o4755)).unwrap();
        write(&f, b"four", Mode::KeepOr(0o644)).unwrap();
        assert_eq!(mode_of(&f), 0o755);
        // Nothing else is left in the directory.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_link_at_the_destination_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        fs::set_permissions(&victim, Permissions::from_mode(0o755)).unwrap();
        let dest = dir.path().join("entry");
        std::os::unix::fs::symlink(&victim, &dest).unwrap();
        write(&dest, b"new", Mode::KeepOr(0o644)).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert!(fs::symlink_metadata(&dest).unwrap().is_file());
        assert_eq!(mode_of(&dest), 0o644);
    }

    #[test]
    fn a_failure_leaves_the_old_file_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        let dest = dir.path().join("dest");
        fs::write(&dest, "old").unwrap();
        // A directory cannot be replaced by a file: the rename fails.
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("x"), "").unwrap();
        assert!(write_via(&tmp, &blocked, b"new", Mode::Exactly(0o644)).is_err());
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
        write_via(&tmp, &dest, b"new", Mode::Exactly(0o644)).unwrap();
        assert_eq!(fs::read_to_string(&dest).unwrap(), "new");
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }
}

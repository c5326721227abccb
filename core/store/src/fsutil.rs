//! Small filesystem helpers: fsync of directories, atomic file writes, idempotent removals,
//! private (0700) store directories, set-id clearing, and no-follow reads of content that a
//! workload may have written.

use crate::error::{Result, StoreError, io_at};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) use karapace_tar::fs::{
    OpenedDirs, chmod_nofollow, is_not_regular_error, open_dir_beneath, settle_time,
};
pub use karapace_tar::fs::{SET_ID_BITS, open_regular_beneath, read_link_beneath, without_set_id};

/// Make a directory's entries (creations, renames, unlinks) durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_at("fsync directory", dir))
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
    karapace_atomic_file::write_via(
        tmp_dir,
        dest,
        bytes,
        karapace_atomic_file::Mode::Exactly(0o644),
    )
    .map_err(io_at("write atomically", dest))
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
/// Read-only directories inside (e.g. from an unpacked layer) are made writable first. A
/// path spelt with a trailing `/` (or `/.`) is refused: the kernel would resolve its last
/// component through a symbolic link.
pub fn remove_tree_if_exists(path: &Path) -> Result<bool> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.ends_with(b"/") || bytes.ends_with(b"/.") {
        return Err(StoreError::Invalid(format!(
            "{} names a directory through a trailing '/'",
            path.display()
        )));
    }
    // A process that was writing into the tree when its owner died (a tree worker killed
    // with the core) may still be finishing a write: give it a moment rather than fail.
    for _ in 0..50 {
        match remove_tree_once(path) {
            Err(StoreError::Io { source, .. })
                if source.kind() == io::ErrorKind::DirectoryNotEmpty =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r,
        }
    }
    remove_tree_once(path)
}

fn remove_tree_once(path: &Path) -> Result<bool> {
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
    let mut stack: Vec<PathBuf> = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let _ = chmod_nofollow(&dir, 0o700);
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

/// Mode of every directory the store creates for itself: the owner only. A group- or
/// world-traversable store would let other local users reach (and run) what workloads
/// write into their uppers.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Mode of the root directory of an environment's trees (an upper, a layer tree): it is the
/// environment's `/`, which every user inside the environment must be able to search.
/// Other host users still cannot reach it: its parents are private.
pub(crate) const CONTENT_ROOT_MODE: u32 = 0o755;

/// Create one directory with exactly `mode`, whatever the umask.
pub(crate) fn create_dir_mode(path: &Path, mode: u32) -> io::Result<()> {
    fs::DirBuilder::new()
        .mode(mode & PRIVATE_DIR_MODE)
        .create(path)?;
    // The umask can only take bits away; set the mode exactly (a umask of 0277 would
    // otherwise leave a directory the store cannot write into).
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// Create one directory with mode 0700, whatever the umask.
pub(crate) fn create_dir_private(path: &Path) -> io::Result<()> {
    create_dir_mode(path, PRIVATE_DIR_MODE)
}

/// `create_dir_all` with mode 0700 for every directory it creates (existing ones are left
/// as they are).
pub(crate) fn create_dir_all_private(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                create_dir_all_private(parent)?;
            }
        }
        Err(e) => return Err(e),
    }
    match create_dir_private(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        r => r,
    }
}

/// File capabilities (`setcap`): as much a privilege carrier as a setuid bit.
pub const CAPABILITY_XATTR: &str = "security.capability";

/// Whether a file carries `security.capability` (a filesystem without xattrs has none).
fn has_capability(path: &Path) -> io::Result<bool> {
    match xattr::get(path, CAPABILITY_XATTR) {
        Ok(v) => Ok(v.is_some()),
        Err(e) if e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Drop the file-capability xattr of a regular file. Removing `security.capability` needs
/// `CAP_SETFCAP`, which a rootless caller lacks; changing the owner (even to the same owner,
/// which any owner may do) makes the kernel drop it along with the set-id bits.
fn drop_capability(path: &Path, meta: &fs::Metadata) -> io::Result<bool> {
    if !has_capability(path)? {
        return Ok(false);
    }
    if let Err(e) = xattr::remove(path, CAPABILITY_XATTR)
        && e.kind() != io::ErrorKind::NotFound
    {
        std::os::unix::fs::lchown(path, Some(meta.uid()), None)?;
    }
    if has_capability(path)? {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("cannot remove {CAPABILITY_XATTR} from {}", path.display()),
        ));
    }
    Ok(true)
}

/// Clear setuid/setgid bits and the `security.capability` xattr of every regular file under
/// `root`, never following symlinks (directories the owner cannot read, e.g. mode 000 ones
/// from an image, are opened for the walk and given their mode back). Returns how many
/// files were changed. Used when a directory written by a workload or an image becomes a
/// layer tree: nothing in the store may carry privileges on the host.
pub fn clear_set_id(root: &Path) -> Result<u64> {
    let mut cleared = 0;
    walk_tree(root, |path, meta| {
        if !meta.is_file() {
            return Ok(());
        }
        let had_cap = drop_capability(path, meta).map_err(io_at("clear capabilities of", path))?;
        // Changing the owner may have cleared the bits already: look again.
        let mode = if had_cap {
            fs::symlink_metadata(path)
                .map_err(io_at("stat", path))?
                .mode()
        } else {
            meta.mode()
        };
        let had_set_id = mode & SET_ID_BITS != 0;
        if had_set_id {
            chmod_nofollow(path, without_set_id(mode))
                .map_err(io_at("clear set-id bits of", path))?;
        }
        if had_cap || had_set_id {
            cleared += 1;
        }
        Ok(())
    })?;
    Ok(cleared)
}

/// Gives every entry below `root`, and `root` itself, the tree time (see [`TREE_TIME`]): used
/// when a directory becomes a layer tree as it is, so that it matches what unpacking the layer
/// produces. Never follows a link.
pub fn settle_times(root: &Path) -> Result<()> {
    walk_tree(root, |path, _| {
        settle_time(path).map_err(io_at("set the times of", path))
    })?;
    settle_time(root).map_err(io_at("set the times of", root))
}

/// Depth-first walk of everything below `root` (not `root` itself), lstat only. `f` sees
/// each entry before the walk descends into it.
pub(crate) fn walk_tree(
    root: &Path,
    mut f: impl FnMut(&Path, &fs::Metadata) -> Result<()>,
) -> Result<()> {
    let mut opened = OpenedDirs::default();
    let root_meta = fs::symlink_metadata(root).map_err(io_at("stat", root))?;
    opened
        .open(root, root_meta.mode())
        .map_err(io_at("open up", root))?;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for ent in fs::read_dir(&dir).map_err(io_at("read directory", &dir))? {
            let path = ent.map_err(io_at("read directory", &dir))?.path();
            let meta = fs::symlink_metadata(&path).map_err(io_at("stat", &path))?;
            f(&path, &meta)?;
            if meta.is_dir() {
                opened
                    .open(&path, meta.mode())
                    .map_err(io_at("open up", &path))?;
                stack.push(path);
            }
        }
    }
    Ok(())
}

/// Read the regular file `rel` beneath `base`, at most `cap` bytes, with the guarantees of
/// [`open_regular_beneath`] (no symlink followed anywhere below `base`, no FIFO or device
/// opened or read). A larger file is an error, never a truncated read.
pub fn read_regular_nofollow(base: &Path, rel: &Path, cap: u64) -> Result<Vec<u8>> {
    let shown = base.join(rel);
    let f = open_regular_beneath(base, rel).map_err(io_at("open", &shown))?;
    let mut out = Vec::new();
    f.take(cap.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(io_at("read", &shown))?;
    if out.len() as u64 > cap {
        return Err(StoreError::Invalid(format!(
            "{} is larger than {cap} bytes",
            shown.display()
        )));
    }
    Ok(out)
}

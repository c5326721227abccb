//! Small filesystem helpers: fsync of directories, atomic file writes, idempotent removals,
//! private (0700) store directories, set-id clearing, and no-follow reads of content that a
//! workload may have written.

use crate::error::{Result, StoreError, io_at};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

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

/// chmod without following a symlink at the last component (a symlink is an error): the
/// store changes modes of entries it has just lstat'ed, and a swapped-in symlink must not
/// pass the change on to whatever it points at.
pub(crate) fn chmod_nofollow(path: &Path, mode: u32) -> io::Result<()> {
    let mode = Mode::from_bits_truncate(mode & 0o7777);
    match nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        path,
        mode,
        nix::sys::stat::FchmodatFlags::NoFollowSymlink,
    ) {
        // glibc before 2.39 has no fchmodat2 and emulates "no follow" through /proc, which a
        // tree worker (pivoted into the store, no /proc) has no view of: change the mode
        // through a descriptor of the entry itself instead, opened without following a link
        // (a link there fails with ELOOP) and without blocking on a FIFO.
        Err(nix::errno::Errno::EOPNOTSUPP) => {
            use std::os::unix::fs::OpenOptionsExt;
            let f = fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
                .open(path)?;
            let kind = f.metadata()?.file_type();
            if !(kind.is_file() || kind.is_dir()) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "only the modes of files and directories are changed",
                ));
            }
            nix::sys::stat::fchmod(&f, mode).map_err(io::Error::from)
        }
        r => r.map_err(io::Error::from),
    }
}

/// Setuid and setgid: never kept on a regular file in a layer or a layer tree.
pub const SET_ID_BITS: u32 = 0o6000;

/// File capabilities (`setcap`): as much a privilege carrier as a setuid bit.
pub const CAPABILITY_XATTR: &str = "security.capability";

/// The mode a regular file keeps in the store: everything but setuid/setgid.
pub fn without_set_id(mode: u32) -> u32 {
    mode & 0o7777 & !SET_ID_BITS
}

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

/// The time every entry of a layer tree carries: the epoch, as the layer's tar records it.
/// Trees must not depend on when or where they were made: a package that indexes the times of
/// files below it (man-db's `index.db`, font and icon caches) would otherwise write a
/// different file in every store.
const TREE_TIME: nix::sys::time::TimeSpec = nix::sys::time::TimeSpec::new(0, 0);

/// Sets the access and modification times of `path` (never a link's target) to the tree time.
pub(crate) fn settle_time(path: &Path) -> io::Result<()> {
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &TREE_TIME,
        &TREE_TIME,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
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

/// Directories whose mode a walk widened so that their owner could list and search them;
/// given back (deepest first) when dropped.
#[derive(Default)]
pub(crate) struct OpenedDirs {
    restore: Vec<(PathBuf, u32)>,
}

impl OpenedDirs {
    /// Make sure the owner can list and search `dir` (mode as lstat'ed: `mode`).
    pub(crate) fn open(&mut self, dir: &Path, mode: u32) -> io::Result<()> {
        let mode = mode & 0o7777;
        if mode & 0o500 == 0o500 {
            return Ok(());
        }
        chmod_nofollow(dir, mode | 0o700)?;
        self.restore.push((dir.to_path_buf(), mode));
        Ok(())
    }
}

impl Drop for OpenedDirs {
    fn drop(&mut self) {
        for (p, mode) in self.restore.drain(..).rev() {
            let _ = chmod_nofollow(&p, mode);
        }
    }
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

fn not_regular(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what} is not a regular file"),
    )
}

fn libc_flags() -> i32 {
    (OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).bits()
}

/// The components of a plain relative path (no `..`, not absolute).
fn plain_components(rel: &Path) -> io::Result<Vec<&OsStr>> {
    let mut names = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => names.push(n),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a plain relative path", rel.display()),
                ));
            }
        }
    }
    Ok(names)
}

/// Open the directory `base/<dirs…>` one component at a time, each with `O_NOFOLLOW`: a
/// symlink anywhere below `base` is an error (ELOOP/ENOTDIR), never followed.
fn open_dirs_beneath(base: &Path, dirs: &[&OsStr]) -> io::Result<std::os::fd::OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut dir: std::os::fd::OwnedFd = File::open(base)?.into();
    for d in dirs {
        dir = nix::fcntl::openat(&dir, *d, flags, Mode::empty()).map_err(io::Error::from)?;
    }
    Ok(dir)
}

/// Open the regular file `rel` beneath `base` for reading: no component may be a symlink
/// (each directory is opened with `O_NOFOLLOW` relative to the previous one, so a directory
/// swapped for a symlink by a running workload is refused, not followed), `rel` may not be
/// absolute or contain `..`, and the file itself is opened `O_NOFOLLOW | O_NONBLOCK` and must
/// be a regular file per `fstat` (a FIFO never blocks the reader; a device is never read).
/// `base` itself is trusted (it may be a symlink).
pub fn open_regular_beneath(base: &Path, rel: &Path) -> io::Result<File> {
    let names = plain_components(rel)?;
    let Some((last, dirs)) = names.split_last() else {
        return Err(not_regular(&base.display().to_string()));
    };
    let dir = open_dirs_beneath(base, dirs)?;
    let fd = nix::fcntl::openat(
        &dir,
        *last,
        OFlag::O_RDONLY | OFlag::from_bits_truncate(libc_flags()),
        Mode::empty(),
    )
    .map_err(io::Error::from)?;
    let f = File::from(fd);
    if f.metadata()?.is_file() {
        Ok(f)
    } else {
        Err(not_regular(&base.join(rel).display().to_string()))
    }
}

/// The directory `rel` beneath `base`, opened one `O_NOFOLLOW` component at a time (see
/// [`open_regular_beneath`]), as a path that names that very directory from now on
/// (`/proc/self/fd/<fd>`, valid while the returned descriptor is open): listing it or
/// lstat'ing entries through that path cannot be redirected by a component swapped for a
/// symlink afterwards.
///
/// Without `/proc` — in the helper's tree worker, whose root is the store itself, so a swapped
/// component can lead nowhere but into the store (and Landlock holds it there) — the path is
/// `base/rel`, after the walk checked that it is a directory reached without symbolic links.
pub(crate) fn open_dir_beneath(
    base: &Path,
    rel: &Path,
) -> io::Result<(std::os::fd::OwnedFd, PathBuf)> {
    use std::os::fd::AsRawFd;
    let names = plain_components(rel)?;
    let fd = open_dirs_beneath(base, &names)?;
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    if by_fd.symlink_metadata().is_ok() {
        return Ok((fd, by_fd));
    }
    match Path::new("/proc/self/fd").symlink_metadata() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((fd, base.join(rel))),
        _ => Ok((fd, by_fd)),
    }
}

/// The target of the symlink `rel` beneath `base`, following no symlink on the way.
pub fn read_link_beneath(base: &Path, rel: &Path) -> io::Result<PathBuf> {
    let names = plain_components(rel)?;
    let Some((last, dirs)) = names.split_last() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no symlink named",
        ));
    };
    let dir = open_dirs_beneath(base, dirs)?;
    nix::fcntl::readlinkat(&dir, *last)
        .map(PathBuf::from)
        .map_err(io::Error::from)
}

/// True when an open error means "this is not (any more) a regular file reachable without
/// following a symlink" rather than a failure to report.
pub(crate) fn is_not_regular_error(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidInput
        || e.kind() == io::ErrorKind::NotFound
        || matches!(e.raw_os_error(), Some(code) if code == nix::libc::ELOOP
            || code == nix::libc::ENOTDIR
            || code == nix::libc::ENXIO)
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

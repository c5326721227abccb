//! No-follow file-system primitives shared by packing, unpacking and the store: opening
//! beneath a directory without following a symlink, changing modes and times without following
//! one, and opening directories up for a walk.

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::path::{Component, Path, PathBuf};

/// chmod without following a symlink at the last component (a symlink is an error): the
/// store changes modes of entries it has just lstat'ed, and a swapped-in symlink must not
/// pass the change on to whatever it points at.
pub fn chmod_nofollow(path: &Path, mode: u32) -> io::Result<()> {
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

/// The mode a regular file keeps in a layer: everything but setuid/setgid.
pub fn without_set_id(mode: u32) -> u32 {
    mode & 0o7777 & !SET_ID_BITS
}

/// The time every entry of a layer tree carries: the epoch, as the layer's tar records it.
/// Trees must not depend on when or where they were made: a package that indexes the times of
/// files below it (man-db's `index.db`, font and icon caches) would otherwise write a
/// different file in every store.
const TREE_TIME: nix::sys::time::TimeSpec = nix::sys::time::TimeSpec::new(0, 0);

/// Sets the access and modification times of `path` (never a link's target) to the tree time.
pub fn settle_time(path: &Path) -> io::Result<()> {
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &TREE_TIME,
        &TREE_TIME,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

/// Directories whose mode a walk widened so that their owner could list and search them;
/// given back (deepest first) when dropped.
#[derive(Default)]
pub struct OpenedDirs {
    restore: Vec<(PathBuf, u32)>,
}

impl OpenedDirs {
    /// Make sure the owner can list and search `dir` (mode as lstat'ed: `mode`).
    pub fn open(&mut self, dir: &Path, mode: u32) -> io::Result<()> {
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
pub fn open_dir_beneath(base: &Path, rel: &Path) -> io::Result<(std::os::fd::OwnedFd, PathBuf)> {
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
pub fn is_not_regular_error(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidInput
        || e.kind() == io::ErrorKind::NotFound
        || matches!(e.raw_os_error(), Some(code) if code == nix::libc::ELOOP
            || code == nix::libc::ENOTDIR
            || code == nix::libc::ENXIO)
}

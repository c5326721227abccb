//! The privileged mode's check of the directories an overlay writes in: every directory of the
//! writable layer and of the work directory belongs to the caller and lies on the store's file
//! system.
//!
//! Why: overlayfs works in those with the credentials of its `mount(2)` call, which in the
//! privileged mode include `CAP_DAC_OVERRIDE` (`backends/namespace/src/privilege.rs`,
//! `for_overlay`): a file copied up would land in a directory of another user in the writable
//! layer whatever its mode, and the work directory's contents are removed at mount. (The
//! read-only layers are out of those credentials' reach: they are mounted behind an overlay of
//! their own without them, `rootfs::confined_lowers`.) In a user namespace the same capability
//! covers only the caller's ids, which is why the rootless mode needs no such walk.
//!
//! The walk runs as the caller with no capability effective: a directory it cannot open is
//! refused (the caller's own work directory excepted, where overlayfs leaves `work/work` with
//! mode 0: it is given its owner's rights back). What it cannot stop: a directory holding
//! another user's — one of another user that the caller may write, or one of the caller's own
//! with another user's inside, which the caller may always rename — moved in after the walk
//! (docs/security-model.md §3, item 6).

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use karapace_protocol::Refusal;
use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{FchmodatFlags, Mode, fstat};

/// What a walk finds wrong, as the refusal names it.
fn refuse(path: &Path, why: &str) -> Refusal {
    Refusal::PrivilegedMode(format!(
        "mount {}: {why} (every directory of an environment must be yours)",
        path.display()
    ))
}

fn open_beneath(base: &OwnedFd, rel: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
    openat2(base.as_fd(), rel, how)
}

fn open_dir(base: &OwnedFd, rel: &Path) -> Result<OwnedFd, Errno> {
    open_beneath(base, rel, OFlag::O_RDONLY)
}

/// Why a directory could not be opened: its owner when that is someone else.
fn unopenable(base: &OwnedFd, rel: &Path, uid: u32, e: Errno) -> String {
    match open_beneath(base, rel, OFlag::O_PATH).and_then(|fd| fstat(fd.as_fd())) {
        Ok(st) if st.st_uid != uid => format!("it belongs to uid {}", st.st_uid),
        _ => format!("cannot open it ({e})"),
    }
}

/// Checks the tree at `top` (an `O_PATH` descriptor of `path`): every directory owned by `uid`
/// and on device `dev`. `repair`: directories of the caller's it cannot open are given mode
/// 0700 first (the work directory).
pub fn check(top: &OwnedFd, path: &Path, uid: u32, dev: u64, repair: bool) -> Result<(), Refusal> {
    // Paths relative to `top`, re-resolved beneath it (no descriptor piles up on wide trees).
    let mut pending: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let shown = if rel.as_os_str().is_empty() {
            path.to_path_buf()
        } else {
            path.join(&rel)
        };
        let dir = match open_dir(top, &rel) {
            Ok(fd) => fd,
            Err(Errno::EACCES) if repair => {
                own_rights_back(top, &rel, uid).map_err(|why| refuse(&shown, &why))?;
                open_dir(top, &rel).map_err(|e| refuse(&shown, &unopenable(top, &rel, uid, e)))?
            }
            Err(Errno::EXDEV) => {
                return Err(refuse(&shown, "another file system is mounted there"));
            }
            Err(e) => return Err(refuse(&shown, &unopenable(top, &rel, uid, e))),
        };
        let st = fstat(dir.as_fd()).map_err(|e| refuse(&shown, &e.to_string()))?;
        if st.st_uid != uid {
            return Err(refuse(&shown, &format!("it belongs to uid {}", st.st_uid)));
        }
        if st.st_dev != dev {
            return Err(refuse(
                &shown,
                "it is on another file system than the store",
            ));
        }
        for name in subdirectories(dir).map_err(|e| refuse(&shown, &e.to_string()))? {
            pending.push(rel.join(name));
        }
    }
    Ok(())
}

/// The names of the directories in `dir` (an entry of unknown type is looked at).
fn subdirectories(dir: OwnedFd) -> Result<Vec<OsString>, Errno> {
    let mut listing = nix::dir::Dir::from_fd(dir)?;
    let mut dirs = Vec::new();
    let mut unknown = Vec::new();
    for entry in listing.iter() {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        match entry.file_type() {
            Some(nix::dir::Type::Directory) => dirs.push(name.to_os_string()),
            Some(_) => {}
            None => unknown.push(name.to_os_string()),
        }
    }
    for name in unknown {
        let st = nix::sys::stat::fstatat(
            &listing,
            name.as_os_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        if nix::sys::stat::SFlag::from_bits_truncate(st.st_mode) & nix::sys::stat::SFlag::S_IFMT
            == nix::sys::stat::SFlag::S_IFDIR
        {
            dirs.push(name);
        }
    }
    Ok(dirs)
}

/// Gives a directory of the caller's that it cannot open its owner's rights back (overlayfs's
/// `work/work`, mode 0).
fn own_rights_back(top: &OwnedFd, rel: &Path, uid: u32) -> Result<(), String> {
    let fd = open_beneath(top, rel, OFlag::O_PATH).map_err(|e| format!("cannot open it ({e})"))?;
    let st = fstat(fd.as_fd()).map_err(|e| e.to_string())?;
    if st.st_uid != uid {
        return Err(format!("it belongs to uid {}", st.st_uid));
    }
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        proc_path.as_str(),
        Mode::from_bits_truncate(0o700),
        FchmodatFlags::FollowSymlink,
    )
    .map_err(|e| format!("cannot make it searchable ({e})"))
}

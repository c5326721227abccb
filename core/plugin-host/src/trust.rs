//! Whose writing a plugin directory or file could carry. A plugin decides what every build
//! installs, so a directory or file another user could have written is not loaded: what is in
//! it could be anyone's. The same rule decides what `karapace plugin build` lets cargo and rustup
//! read from above a crate.
//!
//! Safe means: owned by the caller or root, and writable by no one else — not through the mode
//! (others; a group that is not the caller's private group), not through an access ACL. The
//! directories above a plugin directory are held to the same rule, except that a sticky one
//! (`/tmp`) may be writable by all: others can add entries there but not replace the caller's.

use std::fmt;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a directory or file is not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untrusted {
    /// Owned by this uid, neither the caller's nor root's.
    Owner(u32),
    /// A symbolic link this uid made (its target is checked on its own).
    LinkOwner(u32),
    /// Writable by every user (the permission bits).
    WritableByAll(u32),
    /// Writable by this group, which is not the caller's private group.
    WritableByGroup { gid: u32, mode: u32 },
    /// An access ACL whose mask allows writing: named users or groups may write.
    Acl(u32),
    /// A directory above it is not trusted.
    Parent(PathBuf, Box<Untrusted>),
    /// It could not be opened or examined.
    Unreadable(std::io::ErrorKind),
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Untrusted::Owner(uid) => write!(f, "owned by uid {uid}, neither you nor root"),
            Untrusted::LinkOwner(uid) => write!(f, "a link made by uid {uid}"),
            Untrusted::WritableByAll(mode) => write!(f, "writable by every user (mode {mode:o})"),
            Untrusted::WritableByGroup { gid, mode } => write!(
                f,
                "writable by group {gid}, which is not yours alone (mode {mode:o})"
            ),
            Untrusted::Acl(mode) => write!(
                f,
                "writable through an access ACL (mode {mode:o}: its mask lets named users or \
                 groups write)"
            ),
            Untrusted::Parent(dir, why) => write!(f, "in {}, which is {why}", dir.display()),
            Untrusted::Unreadable(kind) => write!(f, "not readable here ({kind})"),
        }
    }
}

/// The caller's effective ids, and whether its effective group is its own alone.
struct Caller {
    uid: u32,
    gid: u32,
    private_group: bool,
}

impl Caller {
    fn current() -> Caller {
        let uid = nix::unistd::geteuid();
        let gid = nix::unistd::getegid();
        Caller {
            uid: uid.as_raw(),
            gid: gid.as_raw(),
            private_group: private_group(uid, gid),
        }
    }
}

/// A user-private group: named as the user, with no member listed besides the user (the
/// per-user group of Debian, Fedora and Arch, whose umask 002 makes new directories
/// group-writable). A shared primary group (`users`) is not. Root's group is root's alone.
fn private_group(uid: nix::unistd::Uid, gid: nix::unistd::Gid) -> bool {
    if uid.is_root() && gid.as_raw() == 0 {
        return true;
    }
    let (Ok(Some(user)), Ok(Some(group))) = (
        nix::unistd::User::from_uid(uid),
        nix::unistd::Group::from_gid(gid),
    ) else {
        return false;
    };
    group.name == user.name && group.mem.iter().all(|m| *m == user.name)
}

/// The access ACL's extended attribute (its presence makes the group bits the ACL's mask).
const ACCESS_ACL: &str = "system.posix_acl_access";

/// The rule, on what `meta` describes (links already followed); `acl` says whether it carries
/// an access ACL.
fn verdict(
    meta: &std::fs::Metadata,
    acl: bool,
    caller: &Caller,
    sticky_ok: bool,
) -> Result<(), Untrusted> {
    let mode = meta.mode() & 0o7777;
    if meta.uid() != caller.uid && meta.uid() != 0 {
        return Err(Untrusted::Owner(meta.uid()));
    }
    // Sticky: others may add entries but not rename or remove the caller's.
    if sticky_ok && meta.is_dir() && mode & 0o1000 != 0 {
        return Ok(());
    }
    if mode & 0o002 != 0 {
        return Err(Untrusted::WritableByAll(mode));
    }
    if mode & 0o020 != 0 {
        if acl {
            return Err(Untrusted::Acl(mode));
        }
        if !(meta.gid() == caller.gid && caller.private_group) {
            return Err(Untrusted::WritableByGroup {
                gid: meta.gid(),
                mode,
            });
        }
    }
    Ok(())
}

/// The rule on an opened directory or file: what is checked is what is read.
fn check_open(file: &File, caller: &Caller, sticky_ok: bool) -> Result<(), Untrusted> {
    let meta = file
        .metadata()
        .map_err(|e| Untrusted::Unreadable(e.kind()))?;
    // With an empty buffer the call asks for the value's size: it succeeds when there is one.
    let acl = rustix::fs::fgetxattr(file.as_fd(), ACCESS_ACL, &mut [0u8; 0][..]).is_ok();
    verdict(&meta, acl, caller, sticky_ok)
}

/// Opens `path` for reading without blocking (a FIFO) and checks what it names.
fn open_checked(path: &Path, caller: &Caller, sticky_ok: bool) -> Option<Result<File, Untrusted>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    Some(check_open(&file, caller, sticky_ok).map(|()| file))
}

/// Every directory above `path` (absolute, without `..`) must be trusted or sticky, and a link
/// among them the caller's or root's. By path: a directory the caller may search but not read
/// (mode 0711) is checked all the same.
fn check_parents(path: &Path, caller: &Caller) -> Result<(), Untrusted> {
    for dir in path.ancestors().skip(1) {
        let why = check_link(dir, caller).or_else(|| {
            let meta = std::fs::metadata(dir).ok()?;
            let acl = rustix::fs::getxattr(dir, ACCESS_ACL, &mut [0u8; 0][..]).is_ok();
            verdict(&meta, acl, caller, true).err()
        });
        if let Some(why) = why {
            return Err(Untrusted::Parent(dir.to_path_buf(), Box::new(why)));
        }
    }
    Ok(())
}

/// A link at `path` made by someone other than the caller or root.
fn check_link(path: &Path, caller: &Caller) -> Option<Untrusted> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    (meta.file_type().is_symlink() && meta.uid() != caller.uid && meta.uid() != 0)
        .then(|| Untrusted::LinkOwner(meta.uid()))
}

/// A plugin directory, opened: `Ok(None)` when it does not exist, `Err` when it (or a directory
/// above it) is not trusted. Entries are then opened beneath the returned handle.
pub(crate) fn open_plugin_dir(dir: &Path) -> Result<Option<File>, Untrusted> {
    let caller = Caller::current();
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    if let Some(why) = check_link(&absolute, &caller) {
        return Err(why);
    }
    let Some(opened) = open_checked(&absolute, &caller, false) else {
        return Ok(None);
    };
    let file = opened?;
    check_parents(&absolute, &caller)?;
    Ok(Some(file))
}

/// A plugin file, opened beneath its trusted directory (`name` is one entry of it; a link is
/// followed, and what it names is checked and read).
pub(crate) fn open_plugin_file(dir: &File, name: &std::ffi::OsStr) -> Result<File, Untrusted> {
    let caller = Caller::current();
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        name,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Untrusted::Unreadable(std::io::Error::from(e).kind()))?;
    let file = File::from(fd);
    check_open(&file, &caller, false)?;
    Ok(file)
}

/// Why `path` — a file or directory cargo or rustup would read — may carry another user's
/// writing: a link another user made, or what it names failing the rule. `None` when it does
/// not exist or cannot be opened (then no one reads it either).
pub fn untrusted_file(path: &Path) -> Option<Untrusted> {
    let caller = Caller::current();
    if let Some(why) = check_link(path, &caller) {
        return Some(why);
    }
    open_checked(path, &caller, false)?.err()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller_private() -> Caller {
        Caller {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            private_group: true,
        }
    }

    fn with_mode(path: &Path, mode: u32) -> File {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        File::open(path).unwrap()
    }

    #[test]
    fn modes_decide_for_files_and_directories_of_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.wasm");
        std::fs::write(&file, b"x").unwrap();
        let private = caller_private();
        let shared = Caller {
            private_group: false,
            ..caller_private()
        };
        assert_eq!(
            check_open(&with_mode(&file, 0o644), &private, false),
            Ok(())
        );
        assert_eq!(
            check_open(&with_mode(&file, 0o666), &private, false),
            Err(Untrusted::WritableByAll(0o666))
        );
        // Group write: the caller's own private group only.
        assert_eq!(
            check_open(&with_mode(&file, 0o664), &private, false),
            Ok(())
        );
        assert!(matches!(
            check_open(&with_mode(&file, 0o664), &shared, false),
            Err(Untrusted::WritableByGroup { mode: 0o664, .. })
        ));
        // Sticky world-writable directories: only where allowed (above a plugin directory).
        let sub = dir.path().join("d");
        std::fs::create_dir(&sub).unwrap();
        assert_eq!(check_open(&with_mode(&sub, 0o1777), &private, true), Ok(()));
        assert_eq!(
            check_open(&with_mode(&sub, 0o1777), &private, false),
            Err(Untrusted::WritableByAll(0o1777))
        );
        assert_eq!(
            check_open(&with_mode(&sub, 0o777), &private, true),
            Err(Untrusted::WritableByAll(0o777))
        );
    }

    #[test]
    fn another_owner_is_refused_whatever_the_mode() {
        if !nix::unistd::geteuid().is_root() {
            return; // a chown away: the root pass runs it
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.wasm");
        std::fs::write(&file, b"x").unwrap();
        nix::unistd::chown(&file, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
        assert_eq!(
            check_open(&with_mode(&file, 0o600), &caller_private(), false),
            Err(Untrusted::Owner(4242))
        );
    }

    #[test]
    fn a_directory_above_that_others_may_write_taints_what_is_below() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        let plugins = open.join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        drop(with_mode(&open, 0o777));
        let err = open_plugin_dir(&plugins).unwrap_err();
        assert_eq!(
            err,
            Untrusted::Parent(open.clone(), Box::new(Untrusted::WritableByAll(0o777)))
        );
        drop(with_mode(&open, 0o755));
        assert!(open_plugin_dir(&plugins).unwrap().is_some());
        assert!(open_plugin_dir(&open.join("missing")).unwrap().is_none());
    }

    #[test]
    fn a_user_private_group_is_named_as_its_user_and_has_no_one_else() {
        assert!(private_group(
            nix::unistd::Uid::from_raw(0),
            nix::unistd::Gid::from_raw(0)
        ));
        // Debian's `users` group (100) is shared by design.
        let users = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(100))
            .ok()
            .flatten();
        if users.is_some_and(|g| g.name == "users") {
            assert!(!private_group(
                nix::unistd::geteuid(),
                nix::unistd::Gid::from_raw(100)
            ));
        }
    }
}

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
use std::os::fd::{AsFd, AsRawFd};
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
#[derive(Debug)]
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

/// A user-private group: named as the user, with no member listed besides the user and no
/// other account whose primary group it is (the per-user group of Debian, Fedora and Arch,
/// whose umask 002 makes new directories group-writable). A shared primary group (`users`) is
/// not. Accounts only NSS knows (LDAP, say) are not seen: /etc/passwd is read.
fn private_group(uid: nix::unistd::Uid, gid: nix::unistd::Gid) -> bool {
    let (Ok(Some(user)), Ok(Some(group))) = (
        nix::unistd::User::from_uid(uid),
        nix::unistd::Group::from_gid(gid),
    ) else {
        return false;
    };
    // Root's group: the other accounts some systems give it (`sync`, `halt`, `operator`) are
    // the system's own, as root is.
    if uid.is_root() && gid.as_raw() == 0 {
        return true;
    }
    // Who else has it as primary group cannot be told without the accounts: not private.
    let Ok(passwd) = std::fs::read_to_string("/etc/passwd") else {
        return false;
    };
    group_is_own(&user.name, gid.as_raw(), &group.name, &group.mem, &passwd)
}

/// [`private_group`] on given data: `passwd` in /etc/passwd's format.
fn group_is_own(user: &str, gid: u32, group: &str, members: &[String], passwd: &str) -> bool {
    let others_primary = passwd.lines().any(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        fields.len() > 3 && fields[0] != user && fields[3].parse() == Ok(gid)
    });
    group == user && members.iter().all(|m| m == user) && !others_primary
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

/// Opens `path` for reading (a link followed) without blocking on a FIFO: what it names is
/// then judged on the handle (`fstat`), never by a second lookup of the path.
pub fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(path)
}

/// Opens `path` ([`open_nonblocking`]) and checks what it names: `None` when nothing is there,
/// `Unreadable` when something is but cannot be opened.
fn open_checked(path: &Path, caller: &Caller, sticky_ok: bool) -> Option<Result<File, Untrusted>> {
    match open_nonblocking(path) {
        Ok(file) => Some(check_open(&file, caller, sticky_ok).map(|()| file)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(Err(Untrusted::Unreadable(e.kind()))),
    }
}

/// The rule on `path` by path, for what cannot always be opened for reading (a directory one
/// may search but not list, mode 0711): `None` when nothing is there. A link at `path` must be
/// the caller's or root's, and what it names follows the rule.
fn check_path(path: &Path, caller: &Caller, sticky_ok: bool) -> Option<Untrusted> {
    check_path_as(path, caller, sticky_ok, &[std::io::ErrorKind::NotFound])
}

/// [`check_path`], where the errors in `absent` mean nothing is there for the caller.
fn check_path_as(
    path: &Path,
    caller: &Caller,
    sticky_ok: bool,
    absent: &[std::io::ErrorKind],
) -> Option<Untrusted> {
    if let Some(why) = check_link(path, caller) {
        return Some(why);
    }
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if absent.contains(&e.kind()) => return None,
        Err(e) => return Some(Untrusted::Unreadable(e.kind())),
    };
    let acl = rustix::fs::getxattr(path, ACCESS_ACL, &mut [0u8; 0][..]).is_ok();
    verdict(&meta, acl, caller, sticky_ok).err()
}

/// Every directory above the opened directory `dir` must be trusted or sticky. They are taken
/// from where `dir` really is (`/proc/self/fd`: links and `..` resolved, so a link to a tree
/// under a shared directory is judged by that directory), and each must still be there: one
/// that vanished cannot be vouched for.
fn check_parents(dir: &File, caller: &Caller) -> Result<(), Untrusted> {
    let real = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd()))
        .map_err(|e| Untrusted::Unreadable(e.kind()))?;
    for parent in real.ancestors().skip(1) {
        let why = check_path(parent, caller, true).or_else(|| {
            (!parent.exists()).then_some(Untrusted::Unreadable(std::io::ErrorKind::NotFound))
        });
        if let Some(why) = why {
            return Err(Untrusted::Parent(parent.to_path_buf(), Box::new(why)));
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

/// A plugin directory, opened: `Ok(None)` when it does not exist, `Err` when it (or a
/// directory above it) is not trusted or cannot be opened. Entries are then listed and opened
/// through the returned handle.
pub(crate) fn open_plugin_dir(dir: &Path) -> Result<Option<PluginDir>, Untrusted> {
    let caller = Caller::current();
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let Some(opened) = open_checked(&absolute, &caller, false) else {
        return Ok(None);
    };
    let file = opened?;
    // Each link on the way as given must be the caller's or root's (whoever made it chose the
    // target), in a directory no one else may replace it in (a sticky one will do).
    for step in absolute.ancestors() {
        let why = check_link(step, &caller).or_else(|| {
            let is_link = std::fs::symlink_metadata(step).is_ok_and(|m| m.file_type().is_symlink());
            let parent = step.parent().filter(|_| is_link)?;
            check_path(parent, &caller, true)
                .map(|why| Untrusted::Parent(parent.to_path_buf(), Box::new(why)))
        });
        match why {
            Some(why) if step == absolute => return Err(why),
            Some(why) => return Err(Untrusted::Parent(step.to_path_buf(), Box::new(why))),
            None => {}
        }
    }
    check_parents(&file, &caller)?;
    Ok(Some(PluginDir {
        handle: file,
        caller,
    }))
}

/// A plugin directory that passed the rule, with the caller it was judged for (its ids and
/// group are looked up once per directory, not once per file).
#[derive(Debug)]
pub(crate) struct PluginDir {
    handle: File,
    caller: Caller,
}

impl PluginDir {
    /// The names of the `*.wasm` entries of the directory, sorted.
    pub(crate) fn wasm_names(&self) -> Result<Vec<std::ffi::OsString>, Untrusted> {
        use std::os::unix::ffi::OsStrExt;
        let listed = nix::dir::Dir::openat(
            self.handle.as_fd(),
            ".",
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| Untrusted::Unreadable(std::io::Error::from(e).kind()))?;
        let mut names = Vec::new();
        for entry in listed {
            // A listing cut short is not a shorter directory.
            let entry = entry.map_err(|e| Untrusted::Unreadable(std::io::Error::from(e).kind()))?;
            let name = std::ffi::OsStr::from_bytes(entry.file_name().to_bytes()).to_os_string();
            if Path::new(&name).extension().is_some_and(|x| x == "wasm") {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// A plugin file, opened beneath its trusted directory (`name` is one entry of it; a link is
    /// followed, and what it names is checked and read).
    pub(crate) fn open_file(&self, name: &std::ffi::OsStr) -> Result<File, Untrusted> {
        let fd = nix::fcntl::openat(
            self.handle.as_fd(),
            name,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_NONBLOCK
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| Untrusted::Unreadable(std::io::Error::from(e).kind()))?;
        let file = File::from(fd);
        check_open(&file, &self.caller, false)?;
        Ok(file)
    }
}

/// Why `path` — a file or directory cargo or rustup would read — may carry another user's
/// writing: a link another user made, or what it names failing the rule (a directory one may
/// search but not list is judged too). `None` when nothing is there.
pub fn untrusted_file(path: &Path) -> Option<Untrusted> {
    // What the caller cannot reach (below a directory it may not search, or below a file) is
    // not read by the caller's cargo either.
    use std::io::ErrorKind::{NotADirectory, NotFound, PermissionDenied};
    check_path_as(
        path,
        &Caller::current(),
        false,
        &[NotFound, PermissionDenied, NotADirectory],
    )
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

    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn with_mode(path: &Path, mode: u32) -> File {
        set_mode(path, mode);
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
        set_mode(&open, 0o777);
        let err = open_plugin_dir(&plugins).unwrap_err();
        assert_eq!(
            err,
            Untrusted::Parent(
                std::fs::canonicalize(&open).unwrap(),
                Box::new(Untrusted::WritableByAll(0o777))
            )
        );
        set_mode(&open, 0o755);
        assert!(open_plugin_dir(&plugins).unwrap().is_some());
        assert!(open_plugin_dir(&open.join("missing")).unwrap().is_none());
    }

    #[test]
    fn a_user_private_group_is_named_as_its_user_and_has_no_one_else() {
        let passwd = "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert!(group_is_own("alice", 1000, "alice", &[], passwd));
        assert!(group_is_own(
            "alice",
            1000,
            "alice",
            &["alice".into()],
            passwd
        ));
        assert!(group_is_own("root", 0, "root", &[], passwd));
        // A member listed, an account whose primary group it is, a group of another name.
        assert!(!group_is_own(
            "alice",
            1000,
            "alice",
            &["bob".into()],
            passwd
        ));
        let with_bob = format!("{passwd}bob:x:1001:1000::/home/bob:/bin/sh\n");
        assert!(!group_is_own("alice", 1000, "alice", &[], &with_bob));
        assert!(!group_is_own("alice", 100, "users", &[], passwd));
    }

    #[test]
    fn an_access_acl_that_lets_others_write_is_refused_whatever_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.wasm");
        std::fs::write(&file, b"x").unwrap();
        set_mode(&file, 0o644);
        // system.posix_acl_access, version 2: user::rw-, user:4242:rw-, group::r--, mask::rw-,
        // other::r-- (tag, permissions, id; little-endian).
        let mut acl = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (0x01u16, 6u16, u32::MAX),
            (0x02, 6, 4242),
            (0x04, 4, u32::MAX),
            (0x10, 6, u32::MAX),
            (0x20, 4, u32::MAX),
        ] {
            acl.extend(tag.to_le_bytes());
            acl.extend(perm.to_le_bytes());
            acl.extend(id.to_le_bytes());
        }
        if let Err(e) =
            rustix::fs::setxattr(&file, ACCESS_ACL, &acl, rustix::fs::XattrFlags::empty())
        {
            // A file system without ACLs: nothing to test here.
            assert_eq!(e, rustix::io::Errno::OPNOTSUPP, "setting the ACL");
            return;
        }
        let opened = File::open(&file).unwrap();
        // The group bits are the mask now: rw.
        assert_eq!(opened.metadata().unwrap().mode() & 0o070, 0o060);
        assert_eq!(
            check_open(&opened, &caller_private(), false),
            Err(Untrusted::Acl(0o664))
        );
        assert_eq!(untrusted_file(&file), Some(Untrusted::Acl(0o664)));
    }

    #[test]
    fn a_plugin_directory_reached_through_a_link_is_judged_where_it_really_is() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        let plugins = shared.join("u/plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        set_mode(&shared, 0o777);
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::symlink(shared.join("u"), home.join("data")).unwrap();
        let err = open_plugin_dir(&home.join("data/plugins")).unwrap_err();
        let real = std::fs::canonicalize(&shared).unwrap();
        assert_eq!(
            err,
            Untrusted::Parent(real, Box::new(Untrusted::WritableByAll(0o777)))
        );
        set_mode(&shared, 0o755);
        assert!(
            open_plugin_dir(&home.join("data/plugins"))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_directory_that_cannot_be_opened_is_not_taken_for_a_missing_one() {
        if nix::unistd::geteuid().is_root() {
            return; // root opens it all the same
        }
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).unwrap();
        set_mode(&plugins, 0o300);
        let err = open_plugin_dir(&plugins).unwrap_err();
        set_mode(&plugins, 0o755);
        assert_eq!(
            err,
            Untrusted::Unreadable(std::io::ErrorKind::PermissionDenied)
        );
    }
}

//! Reading a file that lives inside a layer or upper tree, on the host, without ever leaving the
//! tree. Everything in such a tree comes from an image, a package or a workload — all hostile by
//! assumption — so a plain `open` is wrong: `etc/passwd -> /home/user/.ssh/id_ed25519` would make
//! the core read the user's key, and a FIFO would hang it.
//!
//! The kernel resolves the path (`openat2` with `RESOLVE_IN_ROOT`): symbolic links, absolute or
//! relative, are resolved as they would be inside the environment, clamped at the tree's root, and
//! magic links (`/proc/self/fd/…`) are refused. The file is opened non-blocking and must be a
//! regular file; its size is capped.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::fcntl::{AT_FDCWD, OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

/// A regular file read from inside a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeFile {
    pub bytes: Vec<u8>,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

/// Opens the directory `root` itself (the caller's own path: the store, a staging directory).
fn open_root(root: &Path) -> io::Result<File> {
    let how = OpenHow::new().flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC);
    openat2(AT_FDCWD, root, how)
        .map(File::from)
        .map_err(io::Error::from)
}

/// Opens `rel` beneath `root` as the environment would see it, without following anything out of
/// the tree. `Ok(None)` when it does not exist.
pub fn open_in_root(root: &Path, rel: &Path) -> io::Result<Option<File>> {
    let dir = open_root(root)?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY)
        .mode(Mode::empty())
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(dir.as_fd(), rel, how) {
        Ok(fd) => Ok(Some(File::from(fd))),
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => Ok(None),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Reads the regular file `rel` beneath `root` (see the module comment), at most `cap` bytes.
/// `Ok(None)` when it does not exist; an error when it is not a regular file or is larger.
pub fn read_regular_in_root(root: &Path, rel: &Path, cap: u64) -> io::Result<Option<TreeFile>> {
    let Some(file) = open_in_root(root, rel)? else {
        return Ok(None);
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a regular file", rel.display()),
        ));
    }
    let too_large = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {cap} bytes", rel.display()),
        )
    };
    if meta.len() > cap {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    // The file may grow after the fstat: never read more than the cap.
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_large());
    }
    Ok(Some(TreeFile {
        bytes,
        mode: meta.mode() & 0o7777,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
        t
    }

    #[test]
    fn reads_a_regular_file() {
        let t = tree();
        let f = read_regular_in_root(t.path(), Path::new("etc/passwd"), 1024)
            .unwrap()
            .unwrap();
        assert_eq!(f.bytes, b"root:x:0:0::/root:/bin/sh\n");
        assert!(
            read_regular_in_root(t.path(), Path::new("etc/missing"), 1024)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn links_resolve_inside_the_tree_never_on_the_host() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("secret"), b"host secret").unwrap();
        let t = tree();
        // An absolute link to a host file resolves inside the tree, where it does not exist.
        symlink(host.path().join("secret"), t.path().join("etc/abs")).unwrap();
        assert!(
            read_regular_in_root(t.path(), Path::new("etc/abs"), 1024)
                .unwrap()
                .is_none()
        );
        // A relative link climbing out is clamped at the tree's root.
        let depth = t.path().components().count();
        let climb = format!(
            "{}{}",
            "../".repeat(depth + 2),
            host.path().join("secret").display()
        );
        symlink(&climb, t.path().join("etc/climb")).unwrap();
        assert!(
            read_regular_in_root(t.path(), Path::new("etc/climb"), 1024)
                .unwrap()
                .is_none()
        );
        // A link to a file inside the tree is followed (as the environment would).
        symlink("/etc/passwd", t.path().join("etc/inside")).unwrap();
        assert!(
            read_regular_in_root(t.path(), Path::new("etc/inside"), 1024)
                .unwrap()
                .is_some()
        );
        // Magic links are refused outright.
        symlink("/proc/self/environ", t.path().join("etc/environ")).unwrap();
        assert!(
            read_regular_in_root(t.path(), Path::new("etc/environ"), 1024)
                .unwrap()
                .is_none()
        );
        // A directory component that is a link to the host is resolved inside the tree too.
        symlink(host.path(), t.path().join("hostdir")).unwrap();
        assert!(
            read_regular_in_root(t.path(), Path::new("hostdir/secret"), 1024)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn fifos_directories_and_large_files_are_refused_without_blocking() {
        let t = tree();
        nix::unistd::mkfifo(&t.path().join("etc/fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        assert!(read_regular_in_root(t.path(), Path::new("etc/fifo"), 1024).is_err());
        assert!(read_regular_in_root(t.path(), Path::new("etc"), 1024).is_err());
        assert!(read_regular_in_root(t.path(), Path::new("etc/passwd"), 4).is_err());
    }
}

//! Existence checks inside an unpacked image rootfs. Symlinks are resolved
//! relative to the rootfs (an absolute link `/usr/bin/x` means
//! `<rootfs>/usr/bin/x`), so detection never looks at the host's own files.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Symlink hops allowed before giving up (as the kernel's ELOOP limit).
const MAX_HOPS: usize = 40;

/// Does `rel` exist inside `root`, following symlinks without escaping it?
pub(crate) fn exists_in_root(root: &Path, rel: &str) -> bool {
    resolve_in_root(root, rel).is_some()
}

/// The first `max` bytes of the regular file `rel` inside `root` (symlinks
/// resolved inside it), or `None` when it does not exist or is not a regular
/// file. Refuses a last component that became a symlink after resolution
/// (`O_NOFOLLOW`) and never blocks on a FIFO (`O_NONBLOCK`, then a type check).
pub(crate) fn read_in_root(root: &Path, rel: &str, max: u64) -> Option<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = resolve_in_root(root, rel)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// `root/<rel>` with every symlink on the way resolved inside `root`, or
/// `None` when some component does not exist (or links loop).
fn resolve_in_root(root: &Path, rel: &str) -> Option<PathBuf> {
    // Components still to walk, last element = next one.
    let mut pending: Vec<OsString> = components_rev(Path::new(rel));
    let mut current = PathBuf::new();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            current.pop(); // clamps at the rootfs root
            continue;
        }
        let candidate = root.join(&current).join(&part);
        let meta = std::fs::symlink_metadata(&candidate).ok()?;
        if meta.file_type().is_symlink() {
            hops += 1;
            let target = std::fs::read_link(&candidate).ok()?;
            if hops > MAX_HOPS {
                return None;
            }
            if target.is_absolute() {
                current.clear();
            }
            pending.extend(components_rev(&target));
        } else {
            current.push(&part);
        }
    }
    Some(root.join(current))
}

/// Normal and `..` components of `path`, reversed (for use as a stack).
fn components_rev(path: &Path) -> Vec<OsString> {
    let mut parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    parts.reverse();
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_stay_inside_the_rootfs() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::write(r.join("usr/bin/apt-get"), b"").unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        symlink("/usr/bin/apt-get", r.join("usr/bin/abs-link")).unwrap();
        // Exists on the host but not in the rootfs: must not be found.
        symlink("/etc/passwd", r.join("usr/bin/host-file")).unwrap();
        symlink("../../../../../../etc/passwd", r.join("usr/bin/climb")).unwrap();
        symlink("loop", r.join("loop")).unwrap();

        assert!(exists_in_root(r, "usr/bin/apt-get"));
        assert!(exists_in_root(r, "bin/apt-get"));
        assert!(exists_in_root(r, "usr/bin/abs-link"));
        assert!(!exists_in_root(r, "usr/bin/host-file"));
        assert!(!exists_in_root(r, "usr/bin/climb"));
        assert!(!exists_in_root(r, "loop"));
        assert!(!exists_in_root(r, "usr/bin/dnf"));
    }

    #[test]
    fn reads_only_regular_files_inside_the_rootfs() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/os-release"), b"ID=debian\nVERSION_ID=\"12\"\n").unwrap();
        symlink("/etc/os-release", r.join("os-release")).unwrap();
        symlink("/etc/hostname", r.join("etc/host-file")).unwrap();
        nix::unistd::mkfifo(&r.join("etc/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();

        assert_eq!(
            read_in_root(r, "os-release", 1024).as_deref(),
            Some(&b"ID=debian\nVERSION_ID=\"12\"\n"[..])
        );
        assert_eq!(
            read_in_root(r, "etc/os-release", 9).as_deref(),
            Some(&b"ID=debian"[..])
        );
        assert_eq!(read_in_root(r, "etc/host-file", 1024), None);
        assert_eq!(read_in_root(r, "etc", 1024), None);
        assert_eq!(read_in_root(r, "etc/fifo", 1024), None);
    }
}

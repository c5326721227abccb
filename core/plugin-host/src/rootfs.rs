//! Existence checks inside an unpacked image rootfs. Symlinks are resolved
//! relative to the rootfs (an absolute link `/usr/bin/x` means
//! `<rootfs>/usr/bin/x`), so detection never looks at the host's own files.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Symlink hops allowed before giving up (as the kernel's ELOOP limit).
const MAX_HOPS: usize = 40;

/// Does `rel` exist inside `root`, following symlinks without escaping it?
pub(crate) fn exists_in_root(root: &Path, rel: &str) -> bool {
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
        let Ok(meta) = std::fs::symlink_metadata(&candidate) else {
            return false;
        };
        if meta.file_type().is_symlink() {
            hops += 1;
            let Ok(target) = std::fs::read_link(&candidate) else {
                return false;
            };
            if hops > MAX_HOPS {
                return false;
            }
            if target.is_absolute() {
                current.clear();
            }
            pending.extend(components_rev(&target));
        } else {
            current.push(&part);
        }
    }
    true
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
}

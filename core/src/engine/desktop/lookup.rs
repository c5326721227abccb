//! Finding an application's files in an environment's read-only layers, on the host, without
//! mounting anything and without ever leaving a layer's tree.
//!
//! Layers are searched top first, as overlayfs does: the first layer with an entry at the path
//! has it; a whiteout there (a 0/0 character device) hides the lower ones. Every open goes through
//! `karapace_store::beneath`, which resolves links inside the layer's tree only, so a hostile
//! layer's `usr/share/applications/x.desktop -> /home/user/.ssh/id_ed25519` reads nothing of the
//! host. Opaque directories are not followed (a lookup may then find a file an upper layer had
//! hidden: it is only the name or icon of an entry).

use std::path::{Path, PathBuf};

use karapace_store::beneath::{open_in_root, read_regular_in_root};

/// Where an environment's executables live, in `PATH` order.
const BIN_DIRS: &[&str] = &[
    "usr/local/sbin",
    "usr/local/bin",
    "usr/sbin",
    "usr/bin",
    "sbin",
    "bin",
    "usr/games",
    "usr/local/games",
];

/// Icon sizes looked for, best first.
const ICON_DIRS: &[&str] = &[
    "usr/share/icons/hicolor/scalable/apps",
    "usr/share/icons/hicolor/512x512/apps",
    "usr/share/icons/hicolor/256x256/apps",
    "usr/share/icons/hicolor/128x128/apps",
    "usr/share/icons/hicolor/96x96/apps",
    "usr/share/icons/hicolor/64x64/apps",
    "usr/share/icons/hicolor/48x48/apps",
    "usr/share/icons/hicolor/32x32/apps",
    "usr/share/pixmaps",
];
const ICON_EXTENSIONS: &[&str] = &["svg", "png", "xpm"];

/// The largest desktop file or icon read from an environment.
pub const MAX_FILE: u64 = 4 << 20;

/// An environment's read-only layers, top first.
#[derive(Debug, Clone)]
pub struct Layers {
    pub trees: Vec<PathBuf>,
}

/// What a layer holds at a path.
enum Found {
    Entry,
    Whiteout,
    Nothing,
}

fn look(tree: &Path, rel: &Path) -> Found {
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        return Found::Nothing;
    };
    let Ok(Some(dir)) = open_in_root(tree, parent) else {
        return Found::Nothing;
    };
    let Ok(entry) = dir.metadata() else {
        return Found::Nothing;
    };
    if !entry.is_dir() {
        return Found::Nothing;
    }
    match nix::sys::stat::fstatat(&dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => {
            let kind = nix::sys::stat::SFlag::from_bits_truncate(st.st_mode)
                & nix::sys::stat::SFlag::S_IFMT;
            if kind == nix::sys::stat::SFlag::S_IFCHR && st.st_rdev == 0 {
                Found::Whiteout
            } else {
                Found::Entry
            }
        }
        Err(_) => Found::Nothing,
    }
}

impl Layers {
    /// The layer that holds `rel`, or `None` when no layer does or a whiteout hides it.
    fn find(&self, rel: &Path) -> Option<&Path> {
        for tree in &self.trees {
            match look(tree, rel) {
                Found::Entry => return Some(tree),
                Found::Whiteout => return None,
                Found::Nothing => {}
            }
        }
        None
    }

    /// Whether the environment has an executable called `app` where a shell would find it.
    pub fn has_executable(&self, app: &str) -> bool {
        BIN_DIRS.iter().any(|dir| {
            let rel = Path::new(dir).join(app);
            self.find(&rel).is_some_and(|tree| {
                open_in_root(tree, &rel)
                    .ok()
                    .flatten()
                    .and_then(|f| f.metadata().ok())
                    .is_some_and(|m| {
                        use std::os::unix::fs::PermissionsExt;
                        m.is_file() && m.permissions().mode() & 0o111 != 0
                    })
                    // A link whose target lies in another layer cannot be followed here; a
                    // link at that name is still the application (Debian's alternatives).
                    || symlink_in(tree, &rel)
            })
        })
    }

    /// The regular file at `rel` (links resolved inside its layer), at most [`MAX_FILE`] bytes.
    pub fn read(&self, rel: &Path) -> Option<Vec<u8>> {
        let tree = self.find(rel)?;
        read_regular_in_root(tree, rel, MAX_FILE)
            .ok()
            .flatten()
            .map(|f| f.bytes)
    }

    /// The application's own desktop file, when it ships one.
    pub fn desktop_file(&self, app: &str) -> Option<String> {
        let rel = Path::new("usr/share/applications").join(format!("{app}.desktop"));
        self.read(&rel)
            .and_then(|bytes| String::from_utf8(bytes).ok())
    }

    /// The icon called `name` (a theme name, not a path): its bytes and extension.
    pub fn icon(&self, name: &str) -> Option<(Vec<u8>, &'static str)> {
        if !is_icon_name(name) {
            return None;
        }
        for dir in ICON_DIRS {
            for ext in ICON_EXTENSIONS {
                let rel = Path::new(dir).join(format!("{name}.{ext}"));
                if let Some(bytes) = self.read(&rel) {
                    return Some((bytes, ext));
                }
            }
        }
        None
    }
}

/// An icon theme name: no path, no hidden file, nothing a shell or a desktop would interpret.
fn is_icon_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '@'))
}

/// Whether `rel` in `tree` is a symbolic link (not followed).
fn symlink_in(tree: &Path, rel: &Path) -> bool {
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        return false;
    };
    let Ok(Some(dir)) = open_in_root(tree, parent) else {
        return false;
    };
    nix::sys::stat::fstatat(&dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| {
        nix::sys::stat::SFlag::from_bits_truncate(st.st_mode) & nix::sys::stat::SFlag::S_IFMT
            == nix::sys::stat::SFlag::S_IFLNK
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn layer(root: &Path, name: &str) -> PathBuf {
        let p = root.join(name);
        fs::create_dir_all(p.join("usr/bin")).unwrap();
        fs::create_dir_all(p.join("usr/share/applications")).unwrap();
        p
    }

    fn exe(path: &Path) {
        fs::write(path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn executables_are_found_top_first_and_whiteouts_hide_them() {
        let t = tempfile::tempdir().unwrap();
        let (top, bottom) = (layer(t.path(), "top"), layer(t.path(), "bottom"));
        exe(&bottom.join("usr/bin/xeyes"));
        exe(&bottom.join("usr/bin/gone"));
        fs::write(bottom.join("usr/bin/data"), "not executable").unwrap();
        symlink("/etc/alternatives/editor", bottom.join("usr/bin/editor")).unwrap();
        let layers = Layers {
            trees: vec![top.clone(), bottom],
        };
        assert!(layers.has_executable("xeyes"));
        assert!(layers.has_executable("editor"), "a link counts");
        assert!(!layers.has_executable("data"));
        assert!(!layers.has_executable("nothing"));
        // A whiteout in the upper layer hides the lower file (needs mknod: root only).
        if nix::unistd::geteuid().is_root() {
            nix::sys::stat::mknod(
                &top.join("usr/bin/gone"),
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::empty(),
                0,
            )
            .unwrap();
            assert!(!layers.has_executable("gone"));
        }
    }

    #[test]
    fn links_out_of_a_layer_read_nothing_of_the_host() {
        let t = tempfile::tempdir().unwrap();
        let l = layer(t.path(), "l");
        let secret = t.path().join("secret");
        fs::write(&secret, "host secret").unwrap();
        symlink(&secret, l.join("usr/share/applications/evil.desktop")).unwrap();
        symlink(
            "../../../../secret",
            l.join("usr/share/applications/rel.desktop"),
        )
        .unwrap();
        fs::create_dir_all(l.join("usr/share/pixmaps")).unwrap();
        symlink(&secret, l.join("usr/share/pixmaps/evil.png")).unwrap();
        let layers = Layers { trees: vec![l] };
        assert_eq!(layers.desktop_file("evil"), None);
        assert_eq!(layers.desktop_file("rel"), None);
        assert_eq!(layers.icon("evil"), None);
        // Icon names are names, never paths.
        assert_eq!(layers.icon("../../../secret"), None);
        assert_eq!(layers.icon("/etc/passwd"), None);
    }

    #[test]
    fn icons_are_found_by_size_and_kind() {
        let t = tempfile::tempdir().unwrap();
        let l = layer(t.path(), "l");
        fs::create_dir_all(l.join("usr/share/icons/hicolor/48x48/apps")).unwrap();
        fs::write(l.join("usr/share/icons/hicolor/48x48/apps/app.png"), "png").unwrap();
        fs::create_dir_all(l.join("usr/share/pixmaps")).unwrap();
        fs::write(l.join("usr/share/pixmaps/app.xpm"), "xpm").unwrap();
        let layers = Layers { trees: vec![l] };
        assert_eq!(layers.icon("app"), Some((b"png".to_vec(), "png")));
    }
}

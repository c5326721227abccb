//! Which detect paths of two plugins can be present in the same image. Detection asks plugins in
//! priority order (later plugin directories before earlier ones, directory plugins before
//! built-ins) and the first that claims an image gets its builds: a plugin whose detect paths
//! overlap another's is asked first for every image that has them, and may claim those images
//! from it. `karapace plugin install` reports this before a plugin goes in.

use std::borrow::Cow;

use crate::plugin::Plugin;

/// Top-level directories that are links into `usr/` on a merged-/usr system (Debian since 12,
/// Fedora, Arch, openSUSE): `bin/apt-get` and `usr/bin/apt-get` are then one file.
const MERGED_INTO_USR: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

fn merged_usr(path: &str) -> Cow<'_, str> {
    let top = path.split('/').next().unwrap_or(path);
    if MERGED_INTO_USR.contains(&top) {
        Cow::Owned(format!("usr/{path}"))
    } else {
        Cow::Borrowed(path)
    }
}

/// Whether an image can have both paths because of each other: the same path (on a merged-/usr
/// system too), or one inside the other (an image with `usr/lib/x/y` has `usr/lib/x`). Paths
/// are the host's validated detect paths: relative, normal components, no trailing `/`.
pub fn paths_overlap(a: &str, b: &str) -> bool {
    let (a, b) = (merged_usr(a), merged_usr(b));
    let inside = |inner: &str, outer: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
    };
    a == b || inside(&a, &b) || inside(&b, &a)
}

impl Plugin {
    /// Pairs (this plugin's detect path, `other`'s) that overlap ([`paths_overlap`]).
    pub fn detect_overlaps<'a>(&'a self, other: &'a Plugin) -> Vec<(&'a str, &'a str)> {
        self.detect_paths()
            .iter()
            .flat_map(|ours| {
                other
                    .detect_paths()
                    .iter()
                    .filter(|theirs| paths_overlap(ours, theirs))
                    .map(move |theirs| (ours.as_str(), theirs.as_str()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::paths_overlap;

    #[test]
    fn the_same_path_overlaps_on_a_merged_usr_system_too() {
        assert!(paths_overlap("usr/bin/apt-get", "usr/bin/apt-get"));
        assert!(paths_overlap("bin/apt-get", "usr/bin/apt-get"));
        assert!(paths_overlap("usr/sbin/apk", "sbin/apk"));
        assert!(paths_overlap("lib64/ld.so", "usr/lib64/ld.so"));
    }

    #[test]
    fn a_path_overlaps_every_path_inside_it() {
        assert!(paths_overlap("usr/bin", "usr/bin/apt-get"));
        assert!(paths_overlap("usr/bin/apt-get", "usr"));
        assert!(paths_overlap("bin", "usr/bin/dnf"));
    }

    #[test]
    fn different_files_and_mere_name_prefixes_do_not_overlap() {
        assert!(!paths_overlap("usr/bin/dnf", "usr/bin/dnf5"));
        assert!(!paths_overlap("usr/bin/apt", "usr/bin/apt-get"));
        assert!(!paths_overlap("usr/sbin/apk", "usr/bin/apk"));
        assert!(!paths_overlap("binaries/x", "usr/binaries/x"));
        assert!(!paths_overlap("usr/bin/xbps-install", "usr/bin/emerge"));
    }
}

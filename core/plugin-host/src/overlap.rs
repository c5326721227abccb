//! Which detect paths of two plugins can be present in the same image. Detection asks plugins in
//! priority order (later plugin directories before earlier ones, directory plugins before
//! built-ins, by file name within a directory) and the first that claims an image gets its
//! builds, so two plugins whose detect paths overlap contend for the images that have them.
//! `karapace plugin install` reports this before a plugin goes in. It is a guard against
//! clashes, not against a hostile plugin: detection needs one detect path present and then asks
//! the plugin's own code, so a plugin that lists `etc/os-release` may claim every image that
//! has one while overlapping no other plugin's paths.

use crate::plugin::Plugin;

/// Top-level directories that are links into `usr/` on a merged-/usr system (Debian since 12,
/// Fedora, Arch, openSUSE): `bin/apt-get` and `usr/bin/apt-get` are then one file.
const MERGED_INTO_USR: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// The path as one spelling of the file it names on a merged system: the top-level directories
/// under `usr/`, `usr/sbin` as `usr/bin` (Arch and Fedora 42 merged those too) and `usr/lib64` as
/// `usr/lib` (Arch). Two paths
/// that are different files on some systems count as one: an overlap reported too often asks
/// for `--force`, one missed lets a plugin claim another's images unnoticed.
fn merged(path: &str) -> String {
    let top = path.split('/').next().unwrap_or(path);
    let usr = if MERGED_INTO_USR.contains(&top) {
        format!("usr/{path}")
    } else {
        path.to_owned()
    };
    // And on Arch: /usr/sbin is /usr/bin, /usr/lib64 is /usr/lib.
    for (from, to) in [("usr/sbin", "usr/bin"), ("usr/lib64", "usr/lib")] {
        if let Some(rest) = usr.strip_prefix(from)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return format!("{to}{rest}");
        }
    }
    usr
}

/// Whether an image can have both paths because of each other: the same path (on a merged-/usr
/// system too), or one inside the other (an image with `usr/lib/x/y` has `usr/lib/x`). Paths
/// are the host's validated detect paths: relative, normal components, no trailing `/`.
pub fn paths_overlap(a: &str, b: &str) -> bool {
    let (a, b) = (merged(a), merged(b));
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
        // /usr/sbin is /usr/bin on Arch and Fedora 42.
        assert!(paths_overlap("usr/sbin/apk", "usr/bin/apk"));
        assert!(paths_overlap("sbin/apk", "bin/apk"));
        assert!(paths_overlap(
            "lib64/ld-linux-x86-64.so.2",
            "usr/lib/ld-linux-x86-64.so.2"
        ));
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
        assert!(!paths_overlap("usr/sbinx/apk", "usr/bin/apk"));
        assert!(!paths_overlap("binaries/x", "usr/binaries/x"));
        assert!(!paths_overlap("usr/bin/xbps-install", "usr/bin/emerge"));
    }
}

//! Extraction: formats, modes, links, and hostile archives.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use karapace_images::{ExtractOptions, ImageError, extract_archive};
use tar::EntryType::{Char, Directory, Link, Regular, Symlink};

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn check_small_rootfs(root: &Path) {
    assert_eq!(
        fs::read_to_string(root.join("etc/debian_version")).unwrap(),
        "12.99\n"
    );
    assert_eq!(mode(&root.join("usr/bin/tool")), 0o755);
    assert_eq!(mode(&root.join("etc/shadow")), 0o640);
    assert_eq!(mode(&root.join("root")), 0o700);
    assert_eq!(
        mode(&root.join("usr/bin/su")),
        0o755,
        "setuid cleared by default"
    );
    assert_eq!(
        fs::read_link(root.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    assert_eq!(
        fs::read_link(root.join("etc/localtime")).unwrap(),
        Path::new("/usr/share/zoneinfo/UTC")
    );
    let a = fs::metadata(root.join("usr/bin/tool")).unwrap();
    let b = fs::metadata(root.join("usr/bin/tool-link")).unwrap();
    assert_eq!(
        (a.dev(), a.ino()),
        (b.dev(), b.ino()),
        "hard link kept as a link"
    );
    assert!(root.join("dev").is_dir());
    assert!(
        fs::read_dir(root.join("dev")).unwrap().next().is_none(),
        "device nodes and fifos skipped"
    );
    // Owned by whoever extracted it.
    let me = fs::metadata(root.parent().unwrap()).unwrap().uid();
    assert_eq!(a.uid(), me);
}

#[test]
fn every_compression_extracts_the_same_tree() {
    let plain = common::small_rootfs();
    for (name, bytes) in [
        ("plain", plain.clone()),
        ("gzip", common::gzip(&plain)),
        ("xz", common::xz(&plain)),
        ("zstd", common::zstd(&plain)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("rootfs");
        let report = extract_archive(bytes.as_slice(), &dest, ExtractOptions::default()).unwrap();
        check_small_rootfs(&dest);
        assert_eq!(report.set_id_cleared, 1, "{name}");
        assert!(report.entries >= 12, "{name}: {report:?}");
    }
}

#[test]
fn set_id_bits_can_be_kept_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("rootfs");
    let report = extract_archive(
        common::small_rootfs().as_slice(),
        &dest,
        ExtractOptions {
            keep_set_id: true,
            ..ExtractOptions::default()
        },
    )
    .unwrap();
    assert_eq!(report.set_id_cleared, 0);
    assert_eq!(mode(&dest.join("usr/bin/su")), 0o4755);
}

/// Extracts a hostile archive into `<tmp>/dest` and asserts it was refused and nothing appeared
/// beside `dest`.
fn assert_refused(what: &str, archive: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("dest");
    let err = extract_archive(archive, &dest, ExtractOptions::default());
    assert!(
        matches!(err, Err(ImageError::UnsafeEntry { .. })),
        "{what}: {err:?}"
    );
    let outside: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, ["dest"], "{what}: wrote outside the destination");
}

#[test]
fn hostile_archives_are_refused() {
    let evil: &[u8] = b"pwned\n";
    assert_refused(
        "parent traversal",
        &common::tar_of(&[("../evil", Regular, 0o644, evil, None)]),
    );
    assert_refused(
        "nested traversal",
        &common::tar_of(&[
            ("./a/", Directory, 0o755, b"", None),
            ("./a/../../evil", Regular, 0o644, evil, None),
        ]),
    );
    let abs_target = tempfile::tempdir().unwrap();
    let abs = format!("{}/evil", abs_target.path().display());
    assert_refused(
        "absolute path",
        &common::tar_of(&[(&abs, Regular, 0o644, evil, None)]),
    );
    assert!(!Path::new(&abs).exists());

    // Write through a symlinked parent: absolute and relative link targets.
    assert_refused(
        "symlink parent (absolute)",
        &common::tar_of(&[
            (
                "./link",
                Symlink,
                0o777,
                b"",
                Some(abs_target.path().to_str().unwrap()),
            ),
            ("./link/evil", Regular, 0o644, evil, None),
        ]),
    );
    assert!(!abs_target.path().join("evil").exists());
    assert_refused(
        "symlink parent (relative)",
        &common::tar_of(&[
            ("./up", Symlink, 0o777, b"", Some("..")),
            ("./up/evil", Regular, 0o644, evil, None),
        ]),
    );
    assert_refused(
        "escaping relative symlink",
        &common::tar_of(&[("./a", Symlink, 0o777, b"", Some("../../etc"))]),
    );

    // Hard links must name an earlier entry inside the tree.
    assert_refused(
        "hardlink traversal",
        &common::tar_of(&[("./h", Link, 0o644, b"", Some("../outside"))]),
    );
    assert_refused(
        "hardlink absolute",
        &common::tar_of(&[("./h", Link, 0o644, b"", Some("/etc/passwd"))]),
    );
    assert_refused(
        "hardlink through symlink",
        &common::tar_of(&[
            ("./s", Symlink, 0o777, b"", Some("/etc")),
            ("./h", Link, 0o644, b"", Some("./s/passwd")),
        ]),
    );
    assert_refused(
        "hardlink to missing",
        &common::tar_of(&[("./h", Link, 0o644, b"", Some("./nothing"))]),
    );
}

#[test]
fn device_nodes_are_skipped_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("dest");
    let archive = common::tar_of(&[
        ("./dev/", Directory, 0o755, b"", None),
        ("./dev/kmem", Char, 0o666, b"", None),
        ("./ok", Regular, 0o600, b"ok", None),
    ]);
    let report = extract_archive(archive.as_slice(), &dest, ExtractOptions::default()).unwrap();
    assert!(!dest.join("dev/kmem").exists());
    assert_eq!(fs::read(dest.join("ok")).unwrap(), b"ok");
    assert_eq!(report.entries, 2);
}

#[test]
fn garbage_is_an_archive_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = extract_archive(
        &[0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2, 3][..],
        &dir.path().join("d"),
        ExtractOptions::default(),
    );
    assert!(matches!(err, Err(ImageError::Archive(_))), "{err:?}");
}

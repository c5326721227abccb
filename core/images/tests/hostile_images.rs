//! Hostile images served like real ones (security review, issue 12): header bombs and caps.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use karapace_images::testing::{MirrorImage, TestServer, write_mirror};
use karapace_images::{
    ArchiveLimits, ExtractOptions, ImageCache, ImageError, archive_limits_from, extract,
    extract_archive, fetch, resolve,
};

/// The 54 KB image of the review: one GNU long-name header claiming 1.5 GiB, then filler.
fn long_name_bomb() -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_mode(0o644);
    h.set_size(1536 << 20);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.resize(54 * 1024, b'a');
    out
}

#[test]
fn a_long_name_bomb_served_as_an_image_is_refused_before_it_is_read() {
    let mirror = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let bomb = long_name_bomb();
    let image = MirrorImage {
        distro: "debian",
        release: "bookworm",
        arch: "amd64",
        build: "20260220_04:20",
        archive: &bomb,
        published_sha256: None,
    };
    write_mirror(mirror.path(), &[image], true).unwrap();
    let server = TestServer::serve(mirror.path()).unwrap();
    let cfg = common::config(&server.url(), cache_dir.path());
    // What a manifest's `[base] image = "debian/bookworm"` becomes in a build.
    let resolved = resolve("debian/bookworm", &cfg).unwrap();
    let cached = fetch(&resolved, &ImageCache::new(&cfg.cache_dir), false).unwrap();
    let dest = cache_dir.path().join("rootfs");
    let err = extract(&cached, &dest).unwrap_err();
    assert!(
        matches!(&err, ImageError::UnsafeEntry { reason, .. }
            if reason.contains("GNU long-name header claims 1610612736 bytes")),
        "{err}"
    );
    assert_eq!(
        fs::read_dir(&dest).unwrap().count(),
        0,
        "nothing was extracted"
    );
}

#[test]
fn archive_caps_come_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    assert_eq!(
        archive_limits_from(Some(&file)).unwrap(),
        ArchiveLimits::default(),
        "no file: defaults"
    );
    fs::write(
        &file,
        "image_server = \"https://example.org\"\narchive_max_entries = 5\narchive_max_bytes = 1048576\n",
    )
    .unwrap();
    let limits = archive_limits_from(Some(&file)).unwrap();
    assert_eq!(
        limits,
        ArchiveLimits {
            max_entries: 5,
            max_bytes: 1 << 20
        }
    );
    let dest = dir.path().join("rootfs");
    let err = extract_archive(
        common::small_rootfs().as_slice(),
        &dest,
        ExtractOptions {
            limits,
            ..ExtractOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&err, ImageError::UnsafeEntry { reason, .. } if reason.contains("more than 5 entries")),
        "{err}"
    );
    for bad in ["archive_max_entries = 0", "archive_max_bytes = \"lots\""] {
        fs::write(&file, bad).unwrap();
        let err = archive_limits_from(Some(&file)).unwrap_err();
        assert!(matches!(err, ImageError::Config { .. }), "{bad}: {err}");
    }
}

#[test]
fn an_image_with_mode_000_directories_extracts() {
    let archive = common::tar_of(&[
        ("var/", tar::EntryType::Directory, 0o755, b"", None),
        ("var/cache/", tar::EntryType::Directory, 0o755, b"", None),
        (
            "var/cache/private/",
            tar::EntryType::Directory,
            0o000,
            b"",
            None,
        ),
        ("opt/", tar::EntryType::Directory, 0o000, b"", None),
        (
            "opt/tool",
            tar::EntryType::Regular,
            0o4755,
            b"#!/bin/sh\n",
            None,
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("rootfs");
    let report = extract_archive(archive.as_slice(), &dest, ExtractOptions::default()).unwrap();
    assert_eq!(report.set_id_cleared, 1);
    let mode = |p: &str| fs::symlink_metadata(dest.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("opt"), 0o000);
    assert_eq!(mode("var/cache/private"), 0o000);
    for d in ["opt", "var/cache/private"] {
        fs::set_permissions(dest.join(d), fs::Permissions::from_mode(0o755)).unwrap();
    }
    assert_eq!(mode("opt/tool"), 0o755);
}

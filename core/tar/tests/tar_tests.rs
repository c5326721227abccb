//! Deterministic packing and safe unpacking.

mod common;

use common::write;
use karapace_tar::TarError;
use karapace_tar::{UnpackOptions, WhiteoutMode, pack_dir, unpack};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

fn pack(dir: &Path) -> Vec<u8> {
    pack_dir(dir, Vec::new()).unwrap().0
}

fn entry_names(tar: &[u8]) -> Vec<(String, u64, u64, u64)> {
    let mut ar = tar::Archive::new(tar);
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                h.mtime().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
            )
        })
        .collect()
}

fn sample(dir: &Path) {
    write(&dir.join("b/file"), b"hello");
    write(&dir.join("a.b"), b"dot");
    write(&dir.join("a/x"), b"x");
    write(&dir.join("big"), &vec![7u8; 3 * 1024 * 1024 + 17]);
    fs::set_permissions(dir.join("a/x"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("../b/file", dir.join("a/link")).unwrap();
    fs::hard_link(dir.join("b/file"), dir.join("hard")).unwrap();
}

#[test]
fn pack_is_deterministic_and_sorted() {
    let t = tempfile::tempdir().unwrap();
    let (d1, d2) = (t.path().join("one"), t.path().join("two"));
    sample(&d1);
    std::thread::sleep(std::time::Duration::from_millis(20));
    sample(&d2);
    let (p1, p2) = (pack(&d1), pack(&d2));
    assert_eq!(p1, p2, "same content must give identical bytes");
    let names = entry_names(&p1);
    let paths: Vec<&str> = names.iter().map(|n| n.0.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(paths, sorted);
    assert_eq!(
        paths,
        ["a", "a.b", "a/link", "a/x", "b", "b/file", "big", "hard"]
    );
    assert!(names.iter().all(|n| n.1 == 0 && n.2 == 0 && n.3 == 0));
}

#[test]
fn roundtrip_keeps_modes_links_and_hardlinks() {
    let t = tempfile::tempdir().unwrap();
    let (src, dst) = (t.path().join("src"), t.path().join("dst"));
    sample(&src);
    fs::create_dir(&dst).unwrap();
    unpack(&pack(&src)[..], &dst, UnpackOptions::default()).unwrap();
    assert_eq!(common::snapshot_tree(&src), common::snapshot_tree(&dst));
    let (a, b) = (
        fs::metadata(dst.join("b/file")).unwrap(),
        fs::metadata(dst.join("hard")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "hardlink kept as a link");
    assert_eq!(
        fs::read_link(dst.join("a/link")).unwrap().to_str(),
        Some("../b/file")
    );
}

fn whiteout_tree(dir: &Path) {
    write(&dir.join("keep"), b"k");
    fs::create_dir_all(dir.join("etc")).unwrap();
    nix::sys::stat::mknod(
        &dir.join("etc/gone"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        nix::sys::stat::makedev(0, 0),
    )
    .unwrap();
    fs::create_dir_all(dir.join("opq")).unwrap();
    xattr::set(dir.join("opq"), "user.overlay.opaque", b"y").unwrap();
    write(&dir.join("opq/new"), b"n");
    write(&dir.join("xw"), b"");
    xattr::set(dir.join("xw"), "user.overlay.whiteout", b"").unwrap();
}

#[test]
fn whiteouts_become_oci_entries_and_come_back() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    whiteout_tree(&src);
    let bytes = pack(&src);
    let names: Vec<String> = entry_names(&bytes).into_iter().map(|n| n.0).collect();
    assert_eq!(
        names,
        [
            ".wh.xw",
            "etc",
            "etc/.wh.gone",
            "keep",
            "opq",
            "opq/.wh..wh..opq",
            "opq/new"
        ]
    );

    let conv = t.path().join("conv");
    fs::create_dir(&conv).unwrap();
    unpack(&bytes[..], &conv, UnpackOptions::overlay()).unwrap();
    let m = fs::symlink_metadata(conv.join("etc/gone")).unwrap();
    assert!(m.file_type().is_char_device() && m.rdev() == 0);
    assert_eq!(
        xattr::get(conv.join("opq"), "user.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert!(!conv.join("opq/.wh..wh..opq").exists());
    // Re-packing the converted tree gives the same bytes (restore → commit is stable).
    assert_eq!(pack(&conv), bytes);

    let plain = t.path().join("plain");
    fs::create_dir(&plain).unwrap();
    unpack(&bytes[..], &plain, UnpackOptions::default()).unwrap();
    assert!(plain.join("etc/.wh.gone").is_file());

    let rej = t.path().join("rej");
    fs::create_dir(&rej).unwrap();
    let opts = UnpackOptions {
        whiteouts: WhiteoutMode::Reject,
        ..UnpackOptions::default()
    };
    assert!(matches!(
        unpack(&bytes[..], &rej, opts),
        Err(TarError::UnsafeArchive { .. })
    ));
}

/// Build a one-entry tar with a raw (unchecked) name, bypassing the tar crate's path checks.
fn raw_tar(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        if matches!(kind, tar::EntryType::Char) {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn refuse(entries: &[(&str, tar::EntryType, &str, &[u8])], why: &str) {
    let t = tempfile::tempdir().unwrap();
    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    let res = unpack(&raw_tar(entries)[..], &dst, UnpackOptions::default());
    assert!(
        matches!(res, Err(TarError::UnsafeArchive { .. })),
        "{why}: {res:?}"
    );
    assert!(!t.path().join("evil").exists(), "{why}: wrote outside");
}

#[test]
fn unpack_refuses_escapes() {
    use tar::EntryType::{Char, Directory, Fifo, Link, Regular, Symlink};
    refuse(&[("/abs", Regular, "", b"x")], "absolute");
    refuse(&[("../evil", Regular, "", b"x")], "dotdot");
    refuse(&[("a/../../evil", Regular, "", b"x")], "inner dotdot");
    refuse(&[("l", Symlink, "../evil", b"")], "symlink escaping");
    refuse(
        &[
            ("d", Directory, "", b""),
            ("d/l", Symlink, "../../evil", b""),
        ],
        "nested symlink escaping",
    );
    refuse(
        &[("l", Symlink, "/", b""), ("l/evil", Regular, "", b"x")],
        "write through symlinked parent",
    );
    refuse(&[("h", Link, "../evil", b"")], "hardlink escaping");
    refuse(&[("h", Link, "/etc/passwd", b"")], "hardlink absolute");
    refuse(
        &[("l", Symlink, "..", b""), ("h", Link, "l/evil", b"")],
        "hardlink through symlink",
    );
    refuse(&[("dev", Char, "", b"")], "device node");
    refuse(&[("fifo", Fifo, "", b"")], "fifo");
}

#[test]
fn unpack_allows_absolute_symlinks_and_skips_devices_when_told() {
    use tar::EntryType::{Char, Regular, Symlink};
    let t = tempfile::tempdir().unwrap();
    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    let bytes = raw_tar(&[
        (
            "pax_global_header",
            tar::EntryType::XGlobalHeader,
            "",
            b"22 comment=abcdefghij\n",
        ),
        ("l", Symlink, "/usr/bin/sh", b""),
        ("dev", Char, "", b""),
        ("f", Regular, "", b"data"),
    ]);
    let opts = UnpackOptions {
        skip_devices: true,
        ..UnpackOptions::default()
    };
    unpack(&bytes[..], &dst, opts).unwrap();
    assert_eq!(
        fs::read_link(dst.join("l")).unwrap().to_str(),
        Some("/usr/bin/sh")
    );
    assert!(!dst.join("dev").exists());
    assert_eq!(fs::read(dst.join("f")).unwrap(), b"data");
    assert!(!dst.join("pax_global_header").exists());
}

#[test]
fn read_only_dirs_are_restored_after_children() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("ro/child"), b"c");
    fs::set_permissions(src.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    let bytes = pack(&src);
    fs::set_permissions(src.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    unpack(&bytes[..], &dst, UnpackOptions::default()).unwrap();
    assert_eq!(fs::metadata(dst.join("ro")).unwrap().mode() & 0o777, 0o555);
    assert_eq!(fs::read(dst.join("ro/child")).unwrap(), b"c");
    fs::set_permissions(dst.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn long_paths_and_link_targets_roundtrip() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let deep = "d".repeat(60) + "/" + &"e".repeat(60) + "/" + &"f".repeat(60);
    write(&src.join(&deep).join("file"), b"deep");
    let target = "../".repeat(0) + &"t".repeat(150);
    std::os::unix::fs::symlink(&target, src.join("longlink")).unwrap();
    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    unpack(&pack(&src)[..], &dst, UnpackOptions::default()).unwrap();
    assert_eq!(fs::read(dst.join(&deep).join("file")).unwrap(), b"deep");
    assert_eq!(
        fs::read_link(dst.join("longlink"))
            .unwrap()
            .to_string_lossy(),
        target
    );
}

#[test]
fn later_entry_replaces_earlier_without_following_links() {
    use tar::EntryType::{Regular, Symlink};
    let t = tempfile::tempdir().unwrap();
    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    let outside = t.path().join("outside");
    fs::write(&outside, b"original").unwrap();
    let target = outside.to_str().unwrap().to_string();
    let bytes = raw_tar(&[
        ("f", Symlink, &target, b""),
        ("f", Regular, "", b"new"),
        ("g", Regular, "", b"1"),
        ("g", Regular, "", b"2"),
    ]);
    unpack(&bytes[..], &dst, UnpackOptions::default()).unwrap();
    assert!(fs::symlink_metadata(dst.join("f")).unwrap().is_file());
    assert_eq!(fs::read(dst.join("f")).unwrap(), b"new");
    assert_eq!(fs::read(dst.join("g")).unwrap(), b"2");
    assert_eq!(
        fs::read(&outside).unwrap(),
        b"original",
        "must not write through the old symlink"
    );
}

/// With owners kept, a tar records each entry's owner and unpacking gives it back; owners no
/// id map covers become `nobody`. Changing owners needs root (the helper's tree worker does it
/// for users, see helper/tests/trees.rs); without root, owners collapse to 0:0.
#[test]
fn kept_owners_round_trip_and_collapsed_ones_are_root() {
    use karapace_tar::Owners;
    use karapace_tar::pack_dir_with;
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("var/cache/man/index.db"), b"db");
    write(&src.path().join("etc/shadow"), b"");
    let collapsed = pack_dir_with(src.path(), Vec::new(), Owners::Collapse)
        .unwrap()
        .0;
    assert!(entry_names(&collapsed).iter().all(|e| e.2 == 0 && e.3 == 0));
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let chown = |p: &str, u: u32, g: u32| {
        std::os::unix::fs::lchown(src.path().join(p), Some(u), Some(g)).unwrap();
    };
    chown("var/cache/man", 6, 12);
    chown("var/cache/man/index.db", 6, 12);
    chown("etc/shadow", 0, 42);
    let kept = pack_dir_with(src.path(), Vec::new(), Owners::Keep)
        .unwrap()
        .0;
    let owners: Vec<(String, u64, u64)> = entry_names(&kept)
        .into_iter()
        .map(|(p, _, u, g)| (p, u, g))
        .collect();
    assert!(
        owners.contains(&("var/cache/man/index.db".into(), 6, 12)),
        "{owners:?}"
    );
    assert!(owners.contains(&("etc/shadow".into(), 0, 42)), "{owners:?}");

    let dest = tempfile::tempdir().unwrap();
    let opts = UnpackOptions {
        owners: Owners::Keep,
        ..UnpackOptions::overlay()
    };
    unpack(&kept[..], dest.path(), opts).unwrap();
    let m = fs::metadata(dest.path().join("var/cache/man/index.db")).unwrap();
    assert_eq!((m.uid(), m.gid()), (6, 12));
    // A hostile owner far above every map becomes nobody.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(0);
    h.set_mode(0o644);
    h.set_uid(4_000_000_000);
    h.set_gid(70_000);
    b.append_data(&mut h, "far", &[][..]).unwrap();
    let far = b.into_inner().unwrap();
    let dest = tempfile::tempdir().unwrap();
    unpack(&far[..], dest.path(), opts).unwrap();
    let m = fs::symlink_metadata(dest.path().join("far")).unwrap();
    assert_eq!((m.uid(), m.gid()), (65_534, 65_534));
}

//! Security review (issue 12): a private store, no privileges carried into layers, bounded
//! archive headers, symlinks resolved through the tree, odd modes, hostile uppers for `diff`.

mod common;

use common::{fixture, make_env, write};
use karapace_store::fsutil::{CAPABILITY_XATTR, read_regular_nofollow};
use karapace_store::tar::{ArchiveLimits, UnpackOptions, pack_dir, unpack};
use karapace_store::{ImportOptions, LayerKind, Store, StoreError};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Env var that turns [`set_capability_in_user_namespace`] into the xattr writer.
const SETCAP_ENV: &str = "KARAPACE_TEST_SETCAP_PATH";

/// Not a test of its own: re-run by [`set_capability`] inside `unshare -Ur`, where the caller
/// is root of a user namespace that owns the file and may set `security.capability` (as a
/// workload running `setcap` would). Without the variable it does nothing.
#[test]
fn set_capability_in_user_namespace() {
    let Some(path) = std::env::var_os(SETCAP_ENV) else {
        return;
    };
    // VFS_CAP_REVISION_2, effective, permitted = CAP_NET_RAW (bit 13).
    let mut cap = vec![0u8; 20];
    cap[..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
    cap[4..8].copy_from_slice(&(1u32 << 13).to_le_bytes());
    xattr::set(&path, CAPABILITY_XATTR, &cap).unwrap();
}

/// Give `path` a file capability the way a workload can: from a user namespace.
fn set_capability(path: &Path) {
    let status = Command::new("unshare")
        .args(["--user", "--map-root-user"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "set_capability_in_user_namespace", "--quiet"])
        .env(SETCAP_ENV, path)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "setting a capability in a user namespace");
    assert!(
        xattr::get(path, CAPABILITY_XATTR).unwrap().is_some(),
        "the capability was set"
    );
}

/// Every directory under `root` with its mode.
fn dirs(root: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = vec![(root.to_path_buf(), mode(root))];
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                out.push((p.clone(), mode(&p)));
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn every_store_directory_is_private() {
    let f = fixture();
    let id = make_env(&f.store, "private", &f.base);
    let snap = {
        write(&f.store.env_upper(&id).join("etc/new"), b"n");
        f.store.commit(&id).unwrap()
    };
    f.store.restore(&id, &snap).unwrap();
    f.store.layer_tree(&f.base).unwrap();
    let staging = f.store.staging_dir().unwrap();
    let trees = f.root.join("store/trees");
    // The restore's old upper, discarded: still an environment's `/`, in the private trash.
    let trash = f.root.join("store/trash");
    let uppers: Vec<PathBuf> = vec![f.store.env_upper(&id)];
    for (d, m) in dirs(&f.root) {
        let content = [&trees, &trash]
            .iter()
            .any(|dir| d.starts_with(dir) && d != **dir)
            || uppers.iter().any(|u| d.starts_with(u));
        let content_root =
            d.parent() == Some(&trees) || d.parent() == Some(&trash) || uppers.contains(&d);
        if content_root {
            // An environment's `/`: searchable inside the environment, reachable on the host
            // only through its private parents.
            assert_eq!(m, 0o755, "{}", d.display());
        } else if !content {
            assert_eq!(m, 0o700, "{} is {m:o}", d.display());
        }
    }
    assert_eq!(mode(staging.path()), 0o700);
    assert_eq!(mode(&f.root), 0o700);
}

#[test]
fn a_store_root_open_to_others_is_repaired() {
    let f = fixture();
    fs::set_permissions(&f.root, fs::Permissions::from_mode(0o755)).unwrap();
    Store::open(&f.root).unwrap();
    assert_eq!(mode(&f.root), 0o700, "open repairs the root");
    fs::set_permissions(&f.root, fs::Permissions::from_mode(0o711)).unwrap();
    fs::set_permissions(f.root.join("env"), fs::Permissions::from_mode(0o755)).unwrap();
    Store::open_or_init(&f.root).unwrap();
    assert_eq!(mode(&f.root), 0o700, "open_or_init repairs the root");
    assert_eq!(
        mode(&f.root.join("env")),
        0o700,
        "and the fixed directories"
    );
}

#[test]
fn a_store_root_owned_by_someone_else_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let root = if is_root() {
        // Root may use any directory: give this one to someone else.
        let r = t.path().join("theirs");
        fs::create_dir(&r).unwrap();
        std::os::unix::fs::chown(&r, Some(65534), Some(65534)).unwrap();
        r
    } else {
        // An unprivileged caller: `/` belongs to root.
        PathBuf::from("/")
    };
    let before = mode(&root);
    let e = Store::open_or_init(&root).unwrap_err();
    assert!(
        matches!(&e, StoreError::Insecure(m) if m.contains("not to you")),
        "{e}"
    );
    assert_eq!(e.exit_class(), 3);
    assert_eq!(mode(&root), before, "left untouched");
    assert!(!root.join("store").exists());
}

/// `/tmp/x -> ~victim`, planted by another user: the victim's `--store /tmp/x` must not put the
/// store (and its chmod) into the link's target. Only root can give a symlink to another owner,
/// so the unprivileged run checks that the user's own link is accepted.
#[test]
fn a_store_root_symlink_planted_by_another_user_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let target = t.path().join("victim-home");
    fs::create_dir(&target).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
    let link = t.path().join("x");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    if is_root() {
        std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
        let e = Store::open_or_init(&link).unwrap_err();
        assert!(
            matches!(&e, StoreError::Insecure(m) if m.contains("symbolic link owned by uid 65534")),
            "{e}"
        );
        assert_eq!(mode(&target), 0o755, "left untouched");
        assert!(!target.join("store").exists());
    } else {
        Store::open_or_init(&link).unwrap();
        assert!(target.join("store").exists());
    }
}

/// A workload-like upper: set-id files, a file capability, and a setgid directory.
fn privileged_upper(dir: &Path) {
    write(&dir.join("usr/bin/suid"), b"#!/bin/sh\n");
    write(&dir.join("usr/bin/sgid"), b"#!/bin/sh\n");
    write(&dir.join("usr/bin/capped"), b"#!/bin/sh\n");
    fs::set_permissions(dir.join("usr/bin/suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(dir.join("usr/bin/sgid"), fs::Permissions::from_mode(0o2711)).unwrap();
    set_capability(&dir.join("usr/bin/capped"));
    fs::set_permissions(
        dir.join("usr/bin/capped"),
        fs::Permissions::from_mode(0o4750),
    )
    .unwrap();
    fs::create_dir(dir.join("shared")).unwrap();
    fs::set_permissions(dir.join("shared"), fs::Permissions::from_mode(0o2775)).unwrap();
}

fn assert_unprivileged(tree: &Path) {
    assert_eq!(mode(&tree.join("usr/bin/suid")), 0o755);
    assert_eq!(mode(&tree.join("usr/bin/sgid")), 0o711);
    assert_eq!(mode(&tree.join("usr/bin/capped")), 0o750);
    assert_eq!(
        xattr::get(tree.join("usr/bin/capped"), CAPABILITY_XATTR).unwrap(),
        None,
        "no file capability in {}",
        tree.display()
    );
    // Directories keep setgid: it only chooses the group of new files.
    assert_eq!(mode(&tree.join("shared")), 0o2775);
}

#[test]
fn an_adopted_upper_loses_set_id_bits_and_capabilities() {
    let f = fixture();
    let staging = f.store.staging_dir().unwrap();
    let upper = staging.path().join("upper");
    fs::create_dir(&upper).unwrap();
    privileged_upper(&upper);
    let layer = f
        .store
        .import_layer_dir_with(
            &upper,
            LayerKind::Dependency,
            Some(&f.base),
            ImportOptions { adopt_tree: true },
        )
        .unwrap();
    assert!(!upper.exists(), "the upper was adopted");
    let tree = f.store.layer_tree(&layer.hash).unwrap();
    assert_unprivileged(&tree);
    // And the layer itself: unpacked again from its tar.
    fs::remove_dir_all(&tree).unwrap();
    let tree = f.store.layer_tree(&layer.hash).unwrap();
    assert_unprivileged(&tree);
}

#[test]
fn a_committed_upper_gives_a_snapshot_without_set_id_bits() {
    let f = fixture();
    let id = make_env(&f.store, "suid", &f.base);
    privileged_upper(&f.store.env_upper(&id));
    let snap = f.store.commit(&id).unwrap();
    assert_unprivileged(&f.store.layer_tree(&snap).unwrap());
    f.store.restore(&id, &snap).unwrap();
    assert_unprivileged(&f.store.env_upper(&id));
}

#[test]
fn unpacking_never_recreates_set_id_bits() {
    let t = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o6755);
    h.set_size(2);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, "suid", &b"#!"[..]).unwrap();
    let bytes = b.into_inner().unwrap();
    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    let stats = unpack(&bytes[..], &dst, UnpackOptions::overlay()).unwrap();
    assert_eq!(mode(&dst.join("suid")), 0o755);
    assert_eq!(stats.set_id_cleared, 1);
    // Packing drops them too, whatever is on disk.
    let src = t.path().join("src");
    write(&src.join("suid"), b"#!");
    fs::set_permissions(src.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    let packed = pack_dir(&src, Vec::new()).unwrap().0;
    let mut ar = tar::Archive::new(&packed[..]);
    let e = ar.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(e.header().mode().unwrap(), 0o755);
}

/// The 54 KB image of the review: one GNU long-name header claiming 1.5 GiB.
pub fn long_name_bomb() -> Vec<u8> {
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

fn unpack_err(bytes: &[u8], opts: UnpackOptions) -> StoreError {
    let t = tempfile::tempdir().unwrap();
    unpack(bytes, t.path(), opts).unwrap_err()
}

#[test]
fn a_huge_long_name_header_is_refused_before_it_is_read() {
    let e = unpack_err(&long_name_bomb(), UnpackOptions::default());
    assert!(
        matches!(&e, StoreError::UnsafeArchive { reason, .. }
            if reason.contains("GNU long-name header claims 1610612736 bytes")),
        "{e}"
    );
}

#[test]
fn a_layer_with_a_huge_header_is_refused_when_unpacked() {
    let f = fixture();
    let layer = f
        .store
        .import_layer_tar(&long_name_bomb()[..], LayerKind::Dependency, Some(&f.base))
        .unwrap();
    let e = f.store.layer_tree(&layer.hash).unwrap_err();
    assert!(
        matches!(&e, StoreError::UnsafeArchive { reason, .. } if reason.contains("long-name")),
        "{e}"
    );
    assert!(!f.root.join("store/trees").join(&layer.hash).exists());
}

fn raw_header(name: &str, kind: u8, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).unwrap();
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_mode(0o644);
    h.set_size(size);
    h.set_cksum();
    h.as_bytes().to_vec()
}

fn padded(mut v: Vec<u8>) -> Vec<u8> {
    v.resize(v.len().div_ceil(512) * 512, 0);
    v
}

fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}")
}

/// The review's bypass: `x{size=huge}`, then `g`, then a file, then a long-name entry. The tar
/// crate lets the `g` entry consume the pending `x`, so the guard, had it applied the huge size
/// to the file, would never have seen the long-name header the crate then reads whole.
#[test]
fn a_global_pax_header_cannot_desynchronise_the_guard() {
    let rec = pax_record("size", "214748364800");
    let mut a = raw_header("pax", b'x', rec.len() as u64);
    a.extend(padded(rec.into_bytes()));
    a.extend(raw_header("global", b'g', 0));
    a.extend(raw_header("f", b'0', 0));
    a.extend(raw_header("././@LongLink", b'L', 8 << 20));
    a.resize(a.len() + 64 * 1024, b'a');
    let e = unpack_err(&a, UnpackOptions::default());
    assert!(
        matches!(&e, StoreError::UnsafeArchive { reason, .. } if reason.contains("right after a pax header")),
        "{e}"
    );
    // Two pax headers for one entry are refused too.
    let rec = pax_record("path", "x");
    let mut a = raw_header("pax", b'x', rec.len() as u64);
    a.extend(padded(rec.clone().into_bytes()));
    a.extend(raw_header("pax", b'x', rec.len() as u64));
    a.extend(padded(rec.into_bytes()));
    a.extend(raw_header("f", b'0', 0));
    a.extend([0u8; 1024]);
    assert!(
        unpack(
            &a[..],
            tempfile::tempdir().unwrap().path(),
            UnpackOptions::default()
        )
        .is_err()
    );
}

#[test]
fn pax_headers_are_bounded_and_their_size_is_followed() {
    // Too big: a pax header is read whole by the tar crate.
    for kind in [b'x', b'g', b'K'] {
        let mut bomb = raw_header("pax", kind, 2 << 20);
        bomb.resize(64 * 1024, b'1');
        let e = unpack_err(&bomb, UnpackOptions::default());
        assert!(
            matches!(&e, StoreError::UnsafeArchive { reason, .. } if reason.contains("limit")),
            "{}: {e}",
            kind as char
        );
    }
    // A pax `size` overrides the header's: the guard must follow it to find the next header.
    let rec = pax_record("size", "700");
    let mut a = raw_header("pax", b'x', rec.len() as u64);
    a.extend(padded(rec.into_bytes()));
    a.extend(raw_header("big", b'0', 0));
    a.extend(padded(vec![b'z'; 700]));
    a.extend(raw_header("after", b'0', 3));
    a.extend(padded(b"end".to_vec()));
    a.extend([0u8; 1024]);
    let t = tempfile::tempdir().unwrap();
    unpack(&a[..], t.path(), UnpackOptions::default()).unwrap();
    assert_eq!(fs::read(t.path().join("big")).unwrap(), vec![b'z'; 700]);
    assert_eq!(fs::read(t.path().join("after")).unwrap(), b"end");
    // A pax header that could be read two ways is refused.
    let bad = b"99 size=1\n".to_vec();
    let mut a = raw_header("pax", b'x', bad.len() as u64);
    a.extend(padded(bad));
    a.extend(raw_header("f", b'0', 0));
    a.extend([0u8; 1024]);
    let e = unpack_err(&a, UnpackOptions::default());
    assert!(
        matches!(&e, StoreError::UnsafeArchive { reason, .. } if reason.contains("malformed pax")),
        "{e}"
    );
}

#[test]
fn archive_caps_limit_entries_and_bytes() {
    let mut a = Vec::new();
    for i in 0..5 {
        a.extend(raw_header(&format!("f{i}"), b'0', 10));
        a.extend(padded(vec![b'x'; 10]));
    }
    a.extend([0u8; 1024]);
    let with = |max_entries, max_bytes| UnpackOptions {
        limits: ArchiveLimits {
            max_entries,
            max_bytes,
        },
        ..UnpackOptions::default()
    };
    let e = unpack_err(&a, with(4, 1000));
    assert!(
        matches!(&e, StoreError::UnsafeArchive { reason, .. } if reason.contains("more than 4 entries")),
        "{e}"
    );
    let e = unpack_err(&a, with(100, 45));
    assert!(
        matches!(&e, StoreError::UnsafeArchive { reason, .. } if reason.contains("more than 45 bytes")),
        "{e}"
    );
    let t = tempfile::tempdir().unwrap();
    unpack(&a[..], t.path(), with(5, 50)).unwrap();
    // The store applies its caps to layers.
    let f = fixture();
    f.store.set_archive_limits(ArchiveLimits {
        max_entries: 2,
        max_bytes: u64::MAX,
    });
    fs::remove_dir_all(f.root.join("store/trees").join(&f.base)).ok();
    let e = f.store.layer_tree(&f.base).unwrap_err();
    assert!(matches!(e, StoreError::UnsafeArchive { .. }), "{e}");
}

fn symlinks_tar(links: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "x", &[][..]).unwrap();
    for (name, target) in links {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, name, target).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn symlink_chains_that_leave_the_tree_are_refused_in_either_order() {
    for (why, links) in [
        (
            "link first",
            [("x/up", ".."), ("chain", "x/up/..")].as_slice(),
        ),
        ("chain first", &[("chain", "x/up/.."), ("x/up", "..")]),
        (
            "through an absolute link",
            &[("x/root", "/"), ("chain", "x/root/..")],
        ),
    ] {
        let t = tempfile::tempdir().unwrap();
        let dst = t.path().join("dst");
        fs::create_dir(&dst).unwrap();
        let e = unpack(&symlinks_tar(links)[..], &dst, UnpackOptions::default()).unwrap_err();
        assert!(
            matches!(&e, StoreError::UnsafeArchive { reason, .. } if reason.contains("outside the tree")),
            "{why}: {e}"
        );
    }
}

/// A hard link to a symlink is a copy of the symlink elsewhere: `a/b/c/l -> ../../../x` stays
/// inside where it is, but a hard link to it at the top climbs out.
#[test]
fn a_hard_link_to_a_symlink_is_checked_where_it_lands() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "a/b/c/l", "../../../x").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "esc", "a/b/c/l").unwrap();
    let bytes = b.into_inner().unwrap();
    let t = tempfile::tempdir().unwrap();
    let e = unpack(&bytes[..], t.path(), UnpackOptions::default()).unwrap_err();
    assert!(
        matches!(&e, StoreError::UnsafeArchive { reason, .. } if reason.contains("outside the tree")),
        "{e}"
    );
}

#[test]
fn deep_relative_symlinks_inside_the_tree_still_unpack() {
    let links = [
        ("lib", "usr/lib"),
        (
            "usr/lib/x86_64-linux-gnu/libfoo.so",
            "../../../lib/real/libfoo.so.1",
        ),
        (
            "usr/share/doc/pkg/changelog",
            "../../../../usr/share/common/changelog",
        ),
        ("x/self", "."),
        ("x/back", "../x/self/../x"),
        ("etc/alternatives/editor", "/usr/bin/vim"),
        ("usr/bin/editor", "../../etc/alternatives/editor"),
    ];
    let t = tempfile::tempdir().unwrap();
    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    for d in [
        "usr/lib/x86_64-linux-gnu",
        "usr/share/doc/pkg",
        "etc/alternatives",
        "usr/bin",
    ] {
        fs::create_dir_all(dst.join(d)).unwrap();
    }
    unpack(&symlinks_tar(&links)[..], &dst, UnpackOptions::default()).unwrap();
    assert_eq!(
        fs::read_link(dst.join("usr/bin/editor")).unwrap(),
        Path::new("../../etc/alternatives/editor")
    );
}

/// An image-like archive with mode-000 directories (one holding files) and a mode-000 file.
fn locked_archive() -> Vec<u8> {
    use tar::EntryType::{Directory, Regular};
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("var", Directory, 0o755, b"");
    add("var/cache", Directory, 0o755, b"");
    add("var/cache/private", Directory, 0o000, b"");
    add("locked", Directory, 0o000, b"");
    add("locked/inner", Directory, 0o000, b"");
    add("locked/inner/file", Regular, 0o4755, b"inside");
    add("locked/shadow", Regular, 0o000, b"secret");
    add("etc", Directory, 0o755, b"");
    add("etc/shadow", Regular, 0o000, b"root:*:");
    b.into_inner().unwrap()
}

#[test]
fn mode_000_directories_import_unpack_and_go_away() {
    let f = fixture();
    let staging = f.store.staging_dir().unwrap();
    let tree = staging.path().join("rootfs");
    fs::create_dir(&tree).unwrap();
    unpack(&locked_archive()[..], &tree, UnpackOptions::default()).unwrap();
    assert_eq!(mode(&tree.join("locked")), 0o000);
    let layer = f
        .store
        .import_layer_dir_with(
            &tree,
            LayerKind::Base,
            None,
            ImportOptions { adopt_tree: true },
        )
        .unwrap();
    let adopted = f.store.layer_tree(&layer.hash).unwrap();
    assert_eq!(mode(&adopted.join("locked")), 0o000, "modes given back");
    assert_eq!(mode(&adopted.join("var/cache/private")), 0o000);
    // Unpacked again from the layer's tar: the same tree.
    remove_locked_tree(&adopted);
    let again = f.store.layer_tree(&layer.hash).unwrap();
    assert_eq!(mode(&again.join("locked")), 0o000);
    fs::set_permissions(again.join("locked"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(
        again.join("locked/inner"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    assert_eq!(
        mode(&again.join("locked/inner/file")),
        0o755,
        "set-id dropped"
    );
    assert_eq!(
        fs::read(again.join("locked/inner/file")).unwrap(),
        b"inside"
    );
    fs::set_permissions(
        again.join("locked/inner"),
        fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    fs::set_permissions(again.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    // An environment on it: commit (packs an upper holding a locked dir), restore, destroy, gc.
    let id = make_env(&f.store, "locked", &layer.hash);
    let upper = f.store.env_upper(&id);
    write(&upper.join("private/f"), b"p");
    fs::set_permissions(upper.join("private"), fs::Permissions::from_mode(0o000)).unwrap();
    let snap = f.store.commit(&id).unwrap();
    f.store.restore(&id, &snap).unwrap();
    assert_eq!(mode(&upper.join("private")), 0o000);
    f.store.destroy_env(&id).unwrap();
    assert!(!f.root.join("env").join(&id).exists());
    f.store.gc(false).unwrap();
    assert!(!f.root.join("store/trees").join(&layer.hash).exists());
    drop(staging);
}

/// Remove a tree the way a user would have to: open every directory first.
fn remove_locked_tree(tree: &Path) {
    let mut stack = vec![tree.to_path_buf()];
    while let Some(d) = stack.pop() {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    fs::remove_dir_all(tree).unwrap();
}

#[test]
fn reading_beneath_follows_no_symlink_and_opens_no_fifo() {
    let t = tempfile::tempdir().unwrap();
    let base = t.path().join("upper");
    write(&base.join("etc/ok"), b"fine");
    let host = t.path().join("host-secret");
    fs::write(&host, b"secret").unwrap();
    std::os::unix::fs::symlink(&host, base.join("etc/link")).unwrap();
    std::os::unix::fs::symlink(t.path(), base.join("dirlink")).unwrap();
    nix::unistd::mkfifo(
        &base.join("etc/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    assert_eq!(
        read_regular_nofollow(&base, Path::new("etc/ok"), 100).unwrap(),
        b"fine"
    );
    for rel in [
        "etc/link",
        "dirlink/host-secret",
        "etc/fifo",
        "../host-secret",
        "etc",
    ] {
        assert!(
            read_regular_nofollow(&base, Path::new(rel), 100).is_err(),
            "{rel} must not be read"
        );
    }
    assert!(
        read_regular_nofollow(&base, Path::new("etc/ok"), 3).is_err(),
        "over the cap"
    );
}

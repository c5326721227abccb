//! Tree jobs (`Request::Tree`): the helper unpacks, packs and removes trees whose files
//! belong to the environment's ids, in a user namespace with the full id maps. Runs as root
//! (every id maps to itself), as a user with a subordinate range (files land on the range's
//! host ids) and as a user without one (refused, with the reason).

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::store;
use karapace_helper_client::{
    self as hc, DiffEntry, HelperError, Refusal, TreeFailure, TreeJob, TreeOp, TreeStats,
    UnpackSpec, Whiteouts,
};

/// A layer tar: `var/cache/man` (0700, owned 6:12) holding `index.db` (0600, 6:12), and a
/// file owned by an id no map covers.
fn layer_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, owner: (u64, u64), data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, path, data).expect("append");
    };
    add("var", tar::EntryType::Directory, 0o755, (0, 0), b"");
    add("var/cache", tar::EntryType::Directory, 0o755, (0, 0), b"");
    add(
        "var/cache/man",
        tar::EntryType::Directory,
        0o700,
        (6, 12),
        b"",
    );
    add(
        "var/cache/man/index.db",
        tar::EntryType::Regular,
        0o600,
        (6, 12),
        b"db",
    );
    add(
        "var/far",
        tar::EntryType::Regular,
        0o644,
        (4_000_000, 70_000),
        b"x",
    );
    b.into_inner().expect("finish")
}

fn spec() -> UnpackSpec {
    UnpackSpec {
        whiteouts: Whiteouts::Convert,
        skip_devices: true,
        reject_escaping_symlinks: true,
        keep_set_id: false,
        max_entries: 1000,
        max_bytes: 1 << 20,
    }
}

fn job(root: &Path, op: TreeOp) -> TreeJob {
    TreeJob {
        store_root: root.to_path_buf(),
        op,
        allow_without_landlock: false,
    }
}

fn unpack(root: &Path, dir: &Path, tar: &[u8]) -> Result<TreeStats, HelperError> {
    let (read, mut write) = std::io::pipe().expect("pipe");
    let session = hc::tree(
        &job(
            root,
            TreeOp::Unpack {
                dir: dir.to_path_buf(),
                options: spec(),
            },
        ),
        read.into(),
        Stdio::null(),
    )?;
    let _ = write.write_all(tar);
    drop(write);
    session.finish()
}

fn pack(root: &Path, dir: &Path) -> Result<Vec<u8>, HelperError> {
    pack_with(root, dir, false)
}

fn pack_with(root: &Path, dir: &Path, adopt: bool) -> Result<Vec<u8>, HelperError> {
    let (mut read, write) = std::io::pipe().expect("pipe");
    let session = hc::tree(
        &job(
            root,
            TreeOp::Pack {
                dir: dir.to_path_buf(),
                adopt,
            },
        ),
        Stdio::null(),
        write.into(),
    )?;
    let mut bytes = Vec::new();
    read.read_to_end(&mut bytes).expect("read the tar");
    session.finish()?;
    Ok(bytes)
}

fn remove(root: &Path, path: &Path) -> Result<bool, HelperError> {
    hc::tree(
        &job(
            root,
            TreeOp::Remove {
                path: path.to_path_buf(),
            },
        ),
        Stdio::null(),
        Stdio::null(),
    )?
    .finish()
    .map(|s| s.removed)
}

/// The host ids inside ids 6 and 12 become, and whether this user can use full maps at all.
fn host_ids() -> Option<(u32, u32)> {
    if nix::unistd::getuid().is_root() {
        return Some((6, 12));
    }
    let name = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()?
        .name;
    let start = |file: &str| {
        std::fs::read_to_string(file).ok()?.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 3 && f[0] == name && f[2].parse::<u32>().ok()? >= 65_535)
                .then(|| f[1].parse::<u32>().ok())
                .flatten()
        })
    };
    Some((start("/etc/subuid")? + 5, start("/etc/subgid")? + 11))
}

fn scratch(root: &Path, name: &str) -> PathBuf {
    let dir = root.join("store/tmp").join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

#[test]
fn unpacked_files_get_their_owners_and_pack_back_to_the_same_layer() {
    if common::privileged() {
        return; // see a_privileged_helper_does_no_tree_job
    }
    let s = store();
    let dir = scratch(&s.root, "t1");
    let tar = layer_tar();
    let Some((uid, gid)) = host_ids() else {
        let err = unpack(&s.root, &dir, &tar).expect_err("no range: refused");
        assert!(
            matches!(err, HelperError::Refused(Refusal::NoSubordinateRange)),
            "{err}"
        );
        return;
    };
    let stats = unpack(&s.root, &dir, &tar).expect("unpack");
    assert_eq!(stats.entries, 5);
    let man = std::fs::symlink_metadata(dir.join("var/cache/man")).expect("stat");
    assert_eq!((man.uid(), man.gid()), (uid, gid), "owner of var/cache/man");
    // Owners beyond the maps become nobody (65534), the same on every machine.
    let far = std::fs::symlink_metadata(dir.join("var/far")).expect("stat");
    if nix::unistd::getuid().is_root() {
        assert_eq!((far.uid(), far.gid()), (65_534, 65_534));
    }

    let packed = pack(&s.root, &dir).expect("pack");
    let mut owners = Vec::new();
    for e in tar::Archive::new(&packed[..]).entries().expect("entries") {
        let e = e.expect("entry");
        let path = e.path().expect("path").display().to_string();
        owners.push((
            path,
            e.header().uid().unwrap_or(0),
            e.header().gid().unwrap_or(0),
        ));
    }
    assert!(
        owners.contains(&("var/cache/man/index.db".into(), 6, 12)),
        "{owners:?}"
    );
    assert!(
        owners.contains(&("var/far".into(), 65_534, 65_534)),
        "{owners:?}"
    );

    // The store's owner alone cannot remove a directory of another id (unless root); the
    // helper can.
    let direct = std::fs::remove_dir_all(&dir);
    assert_eq!(direct.is_err(), !nix::unistd::getuid().is_root());
    assert!(remove(&s.root, &dir).is_ok());
    assert!(!dir.exists(), "removed");
}

#[test]
fn a_hostile_archive_is_refused_by_the_worker() {
    if common::privileged() {
        return; // see a_privileged_helper_does_no_tree_job
    }
    let s = store();
    if host_ids().is_none() {
        return; // refused earlier, see the first test
    }
    let dir = scratch(&s.root, "t2");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "escape", "../../../../../../../../etc")
        .expect("link");
    let tar = b.into_inner().expect("tar");
    let err = unpack(&s.root, &dir, &tar).expect_err("escaping symlink");
    assert!(
        matches!(
            &err,
            HelperError::Refused(Refusal::Tree(TreeFailure::UnsafeArchive { .. }))
        ),
        "{err}"
    );
    assert!(!dir.join("escape").exists());
}

#[test]
fn paths_outside_the_store_or_its_removable_trees_are_refused() {
    if common::privileged() {
        return; // see a_privileged_helper_does_no_tree_job
    }
    let s = store();
    if host_ids().is_none() {
        return;
    }
    let outside = tempfile::tempdir().expect("tempdir");
    let err = pack(&s.root, outside.path()).expect_err("outside the store");
    assert!(
        matches!(err, HelperError::Refused(Refusal::OutsideStore(_))),
        "{err}"
    );
    std::fs::create_dir_all(s.root.join("store/objects/ab")).expect("mkdir");
    let err = remove(&s.root, &s.root.join("store/objects")).expect_err("not removable");
    assert!(
        matches!(err, HelperError::Refused(Refusal::Invalid(_))),
        "{err}"
    );
    assert!(s.root.join("store/objects/ab").exists());
    // A trailing '/' would make the kernel follow a link at the last component.
    std::fs::create_dir_all(s.root.join("env")).expect("mkdir");
    std::os::unix::fs::symlink("../store/objects", s.root.join("env/x")).expect("symlink");
    let err = remove(&s.root, &s.root.join("env/x/")).expect_err("trailing slash");
    assert!(
        matches!(err, HelperError::Refused(Refusal::NotNormalized(_))),
        "{err}"
    );
    assert!(
        s.root.join("store/objects/ab").exists(),
        "objects untouched"
    );
    // A symlink on the way is refused, not followed.
    scratch(&s.root, "t3");
    std::os::unix::fs::symlink(outside.path(), s.root.join("store/tmp/link")).expect("symlink");
    let err = pack(&s.root, &s.root.join("store/tmp/link")).expect_err("symlink");
    assert!(
        matches!(err, HelperError::Refused(Refusal::Symlink(_))),
        "{err}"
    );
}

/// Adopting a build's tree clears set-id bits, and packing opens directories their owner may not
/// list, both by changing modes without following links — in the worker, which has no /proc
/// (glibc's emulation of "no follow" needs it). A set-id program (`ssh-agent` is setgid) failed
/// the build of every such package for users with a range.
#[test]
fn adopting_a_tree_clears_set_id_bits_and_opens_closed_directories() {
    use std::os::unix::fs::PermissionsExt;
    if common::privileged() {
        return; // see a_privileged_helper_does_no_tree_job
    }
    let s = store();
    if host_ids().is_none() {
        return;
    }
    let dir = scratch(&s.root, "t4");
    std::fs::create_dir_all(dir.join("usr/bin")).expect("mkdir");
    let agent = dir.join("usr/bin/agent");
    std::fs::write(&agent, b"#!/bin/sh\n").expect("write");
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o2755)).expect("chmod");
    std::fs::create_dir(dir.join("closed")).expect("mkdir");
    std::fs::write(dir.join("closed/inside"), b"x").expect("write");
    std::fs::set_permissions(dir.join("closed"), std::fs::Permissions::from_mode(0o300))
        .expect("chmod");
    let packed = pack_with(&s.root, &dir, true).expect("pack with adopt");
    let mode = std::fs::symlink_metadata(&agent).expect("stat").mode() & 0o7777;
    assert_eq!(mode, 0o755, "set-id bit cleared in the adopted tree");
    let closed = std::fs::symlink_metadata(dir.join("closed"))
        .expect("stat")
        .mode()
        & 0o7777;
    assert_eq!(closed, 0o300, "the closed directory's mode is given back");
    let mut seen = Vec::new();
    for e in tar::Archive::new(&packed[..]).entries().expect("entries") {
        let e = e.expect("entry");
        seen.push((
            e.path().expect("path").display().to_string(),
            e.header().mode().expect("mode"),
        ));
    }
    assert!(seen.contains(&("usr/bin/agent".into(), 0o755)), "{seen:?}");
    assert!(seen.contains(&("closed/inside".into(), 0o644)), "{seen:?}");
    assert!(remove(&s.root, &dir).is_ok());
}

fn diff(root: &Path, upper: &Path, lowers: &[PathBuf]) -> Result<Vec<DiffEntry>, HelperError> {
    let (read, write) = std::io::pipe().expect("pipe");
    let session = hc::tree(
        &job(
            root,
            TreeOp::Diff {
                upper: upper.to_path_buf(),
                lowers: lowers.to_vec(),
            },
        ),
        Stdio::null(),
        write.into(),
    )?;
    let mut read = std::io::BufReader::new(read);
    let mut entries = Vec::new();
    loop {
        match hc::read_frame::<DiffEntry>(&mut read) {
            Ok(e) => entries.push(e),
            Err(hc::FrameError::Closed) => break,
            Err(e) => panic!("diff frames: {e}"),
        }
    }
    session.finish()?;
    Ok(entries)
}

/// `diff` of a writable layer a root session filled with directories only their owners may
/// list (apt's `partial/`, 0700 `_apt`): the worker compares them; a path outside the store or
/// through a symlink is refused like every tree job's.
#[test]
fn the_worker_compares_trees_of_other_ids_and_refuses_paths_outside_the_store() {
    if common::privileged() {
        return; // see a_privileged_helper_does_no_tree_job
    }
    let s = store();
    if host_ids().is_none() {
        return;
    }
    let lower = scratch(&s.root, "diff-lower");
    let upper = scratch(&s.root, "diff-upper");
    unpack(&s.root, &lower, &layer_tar()).expect("lower");
    // The upper: the same closed directory with a changed file and a new one inside.
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(6);
        h.set_gid(12);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, path, data).expect("append");
    };
    add("var", tar::EntryType::Directory, 0o755, b"");
    add("var/cache", tar::EntryType::Directory, 0o755, b"");
    add("var/cache/man", tar::EntryType::Directory, 0o700, b"");
    add(
        "var/cache/man/index.db",
        tar::EntryType::Regular,
        0o600,
        b"changed",
    );
    add("var/cache/man/new", tar::EntryType::Regular, 0o600, b"n");
    unpack(&s.root, &upper, &b.into_inner().expect("tar")).expect("upper");

    let found = diff(&s.root, &upper, std::slice::from_ref(&lower)).expect("diff");
    assert!(
        found.contains(&DiffEntry::Added("var/cache/man/new".into())),
        "{found:?}"
    );
    assert!(
        found.contains(&DiffEntry::Modified("var/cache/man/index.db".into())),
        "{found:?}"
    );

    let outside = tempfile::tempdir().expect("tempdir");
    let err = diff(&s.root, &upper, &[outside.path().to_path_buf()]).expect_err("outside");
    assert!(
        matches!(err, HelperError::Refused(Refusal::OutsideStore(_))),
        "{err}"
    );
    std::os::unix::fs::symlink(outside.path(), s.root.join("store/tmp/diff-link"))
        .expect("symlink");
    let err = diff(
        &s.root,
        &s.root.join("store/tmp/diff-link"),
        std::slice::from_ref(&lower),
    )
    .expect_err("symlink");
    assert!(
        matches!(err, HelperError::Refused(Refusal::Symlink(_))),
        "{err}"
    );
    // Files of the range's ids: only the worker can remove them (the temp directory's removal
    // cannot, and every run as a user would leave both trees behind).
    for tree in [&lower, &upper] {
        assert!(remove(&s.root, tree).is_ok(), "remove {}", tree.display());
    }
}

/// Tree jobs exist for owners other than the caller, which only a user namespace can map: a
/// privileged helper refuses every one, and its environments' trees are the caller's, worked on
/// by the core itself.
#[test]
fn a_privileged_helper_does_no_tree_job() {
    if !common::privileged() {
        return;
    }
    let s = store();
    let dir = scratch(&s.root, "refused");
    match pack(&s.root, &dir) {
        Err(HelperError::Refused(Refusal::PrivilegedMode(_))) => {}
        other => panic!("a privileged helper packed a tree: {other:?}"),
    }
}

//! Store behaviour on real files: objects, layers, envs, sessions, snapshots, diff, gc,
//! verify, migrate.
#![allow(clippy::many_single_char_names)]

mod common;

use common::{env_id, fixture, leftovers, make_env, meta, write};
use karapace_store::migrate::{self, MigrateStatus};
use karapace_store::{EnvState, LayerKind, Store, StoreError, diff_trees};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;

#[test]
fn open_never_creates() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("nothing");
    assert!(matches!(Store::open(&root), Err(StoreError::NoStore(_))));
    assert!(!root.exists());
    assert!(matches!(migrate::check(&root), MigrateStatus::NoStore));
    assert!(!root.exists());
    let s = Store::open_or_init(&root).unwrap();
    drop(s);
    let v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(root.join("store/version")).unwrap()).unwrap();
    assert_eq!(v["format_version"], 3);
    Store::open(&root).unwrap();
}

#[test]
fn objects_dedupe_and_verify_on_read() {
    let f = fixture();
    let data = vec![42u8; 5 * 1024 * 1024];
    let h1 = f.store.put_object(&data[..]).unwrap();
    let h2 = f.store.put_object(&data[..]).unwrap();
    assert_eq!(h1, h2);
    assert_eq!(h1, blake3::hash(&data).to_hex().to_string());
    let mut back = Vec::new();
    f.store
        .open_object(&h1)
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, data);
    // Corrupt it: the reader must fail at EOF, verify must report it.
    let p = f.root.join("store/objects").join(&h1[..2]).join(&h1);
    let mut bad = data.clone();
    bad[12345] ^= 1;
    fs::write(&p, &bad).unwrap();
    let mut reader = f.store.open_object(&h1).unwrap();
    let err = reader.read_to_end(&mut Vec::new()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    let retried = reader.read(&mut [0u8; 8]).unwrap_err();
    assert_eq!(retried.kind(), err.kind(), "a retry is no end of file");
    let r = f.store.verify().unwrap();
    assert_eq!(r.failed, 1);
    assert_eq!(r.failures[0].key, format!("object:{h1}"));
    // Nor is a sha256 computed (and cached) for it.
    assert!(
        matches!(
            f.store.object_sha256(&h1),
            Err(StoreError::Integrity { .. })
        ),
        "a corrupt object has no sha256"
    );
    // Putting the right bytes again heals it.
    f.store.put_object(&data[..]).unwrap();
    assert!(f.store.verify().unwrap().is_clean());
    assert!(leftovers(&f.root).is_empty());
}

/// A snapshot whose object was altered on disk (a byte of a file's content, so the archive
/// still parses) is refused by restore, which leaves the environment as it was: the content is
/// verified while it is unpacked (on a thread of its own) and before the swap.
#[test]
fn restore_refuses_a_snapshot_whose_object_changed() {
    let f = fixture();
    let id = make_env(&f.store, "tampered", &f.base);
    let upper = f.store.env_upper(&id);
    let content = "snapshot-content-".repeat(40_000);
    write(&upper.join("big"), content.as_bytes());
    let snap = f.store.commit(&id).unwrap();
    let tar_hash = f.store.snapshots(&id).unwrap()[0].tar_hash.clone();
    write(&upper.join("big"), b"after the snapshot");
    let p = f
        .root
        .join("store/objects")
        .join(&tar_hash[..2])
        .join(&tar_hash);
    let mut bytes = fs::read(&p).unwrap();
    let at = bytes
        .windows(17)
        .rposition(|w| w == b"snapshot-content-")
        .expect("the file's content is in the archive");
    bytes[at] ^= 0x20;
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&p, &bytes).unwrap();
    let err = f.store.restore(&id, &snap).unwrap_err();
    assert!(
        matches!(&err, StoreError::Integrity { key, .. } if key.contains(&tar_hash)),
        "{err:?}"
    );
    assert_eq!(fs::read(upper.join("big")).unwrap(), b"after the snapshot");
    assert!(leftovers(&f.root).is_empty(), "{:?}", leftovers(&f.root));
}

#[test]
fn layers_import_tree_and_adopt() {
    let f = fixture();
    let base = f.store.layer(&f.base).unwrap();
    assert_eq!(base.kind, LayerKind::Base);
    assert_eq!(base.object_refs, vec![base.tar_hash.clone()]);
    assert!(base.read_only);
    let tree = f.store.layer_tree(&f.base).unwrap();
    assert_eq!(fs::read(tree.join("etc/os-release")).unwrap(), b"ID=test\n");
    assert_eq!(f.store.layer_tree(&f.base).unwrap(), tree);

    // Same content imported via tar gives the same layer.
    let src = f.tmp.path().join("again");
    common::base_tree(&src);
    let (bytes, _) = karapace_store::tar::pack_dir(&src, Vec::new()).unwrap();
    let m2 = f
        .store
        .import_layer_tar(&bytes[..], LayerKind::Base, None)
        .unwrap();
    assert_eq!(m2.hash, f.base);

    // Adopt: the directory moves into the tree cache.
    let dep = f.tmp.path().join("dep");
    write(&dep.join("usr/lib/libdep.so"), b"dep");
    let opts = karapace_store::ImportOptions { adopt_tree: true };
    let m = f
        .store
        .import_layer_dir_with(&dep, LayerKind::Dependency, Some(&f.base), opts)
        .unwrap();
    assert!(!dep.exists());
    assert_eq!(
        fs::read(
            f.store
                .layer_tree(&m.hash)
                .unwrap()
                .join("usr/lib/libdep.so")
        )
        .unwrap(),
        b"dep"
    );
    assert_eq!(m.parent.as_deref(), Some(f.base.as_str()));

    let unknown = karapace_store::LayerHash::parse(&"0".repeat(64)).unwrap();
    let e = f
        .store
        .import_layer_dir(&src, LayerKind::Dependency, Some(&unknown))
        .unwrap_err();
    assert!(matches!(e, StoreError::UnknownLayer(_)));
    assert_eq!(e.exit_class(), 3);
    assert!(matches!(
        f.store.layer(&unknown),
        Err(StoreError::UnknownLayer(_))
    ));
    assert!(f.store.verify().unwrap().is_clean());
}

#[test]
fn env_lifecycle_names_and_corrupt_metadata() {
    let f = fixture();
    let a = make_env(&f.store, "alpha", &f.base);
    let m = f.store.env(&a).unwrap();
    assert_eq!(m.short_id, &a[..12]);
    assert_eq!(m.state, EnvState::Built);
    assert!(f.store.env_upper(&a).is_dir() && f.store.env_work(&a).is_dir());
    assert!(matches!(
        f.store.create_env(meta("alpha", &f.base, EnvState::Built)),
        Err(StoreError::EnvExists(_))
    ));
    let mut dup = meta("other", &f.base, EnvState::Built);
    dup.name = Some("alpha".into());
    let e = f.store.create_env(dup).unwrap_err();
    assert!(matches!(e, StoreError::DuplicateName(_)));
    assert_eq!(e.exit_class(), 3);

    let b = make_env(&f.store, "beta", &f.base);
    assert!(matches!(
        f.store.rename_env(&b, "alpha"),
        Err(StoreError::DuplicateName(_))
    ));
    let e = f.store.rename_env(&b, "bad name!").unwrap_err();
    assert!(matches!(e, StoreError::InvalidName { .. }));
    assert_eq!(e.exit_class(), 3);
    f.store.rename_env(&b, "gamma").unwrap();
    assert_eq!(f.store.env(&b).unwrap().name.as_deref(), Some("gamma"));
    f.store.set_state(&b, EnvState::Frozen).unwrap();
    assert_eq!(f.store.env(&b).unwrap().state, EnvState::Frozen);
    assert_eq!(f.store.list_envs().unwrap().len(), 2);

    // Corrupt beta's metadata by hand: list fails naming the file, verify reports it.
    let path = f.root.join("store/metadata").join(&b);
    let text = fs::read_to_string(&path)
        .unwrap()
        .replace("Frozen", "Archived");
    fs::write(&path, text).unwrap();
    match f.store.list_envs() {
        Err(StoreError::CorruptMetadata(v)) => {
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].path, path);
            assert!(v[0].reason.contains("checksum"));
        }
        other => panic!("expected CorruptMetadata, got {other:?}"),
    }
    let r = f.store.verify().unwrap();
    assert_eq!(r.failed, 1);
    assert_eq!(r.failures[0].key, format!("metadata:{b}"));
    fs::write(&path, b"{not json").unwrap();
    assert!(matches!(
        f.store.list_envs(),
        Err(StoreError::CorruptMetadata(_))
    ));
    assert!(matches!(
        f.store.gc(true),
        Err(StoreError::CorruptMetadata(_))
    ));

    f.store.destroy_env(&a).unwrap();
    assert!(matches!(f.store.env(&a), Err(StoreError::UnknownEnv(_))));
    assert!(!f.root.join("env").join(&a).exists());
    assert!(leftovers(&f.root).is_empty());
}

/// Finding one environment reads only its own sessions: the recorded listing leaves states as
/// recorded, and `with_live_state` derives Running for the one asked about.
#[test]
fn recorded_listing_leaves_state_to_with_live_state() {
    let f = fixture();
    let a = make_env(&f.store, "alpha", &f.base);
    let b = make_env(&f.store, "beta", &f.base);
    let _g = f.store.begin_session(&a, std::process::id(), None).unwrap();
    let recorded = f.store.list_envs_recorded().unwrap();
    assert_eq!(recorded.len(), 2);
    assert!(recorded.iter().all(|m| m.state == EnvState::Built));
    let live = f.store.list_envs().unwrap();
    for m in recorded {
        let derived = f.store.with_live_state(m.clone()).unwrap();
        let expected = if m.env_id == a {
            EnvState::Running
        } else {
            assert_eq!(m.env_id, b);
            EnvState::Built
        };
        assert_eq!(derived.state, expected, "{}", m.env_id);
        let listed = live.iter().find(|l| l.env_id == m.env_id).unwrap();
        assert_eq!(listed.state, expected, "list_envs for {}", m.env_id);
    }
}

#[test]
fn sessions_derive_running_and_die_with_their_process() {
    let f = fixture();
    let a = make_env(&f.store, "alpha", &f.base);
    let g = f.store.begin_session(&a, std::process::id(), None).unwrap();
    assert_eq!(f.store.env(&a).unwrap().state, EnvState::Running);
    assert_eq!(f.store.sessions(&a).unwrap().len(), 1);
    assert!(matches!(
        f.store.destroy_env(&a),
        Err(StoreError::EnvBusy { .. })
    ));
    assert!(matches!(
        f.store.commit(&a),
        Err(StoreError::EnvBusy { .. })
    ));
    drop(g);
    assert_eq!(f.store.env(&a).unwrap().state, EnvState::Built);

    // A session of a process that gets SIGKILLed: its record stays, but it is not live.
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let g = f.store.begin_session(&a, child.id(), None).unwrap();
    std::mem::forget(g); // as if karapace itself was killed: record and lock file stay
    assert_eq!(f.store.sessions(&a).unwrap().len(), 1);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(f.store.sessions(&a).unwrap().is_empty());
    // Stored state Running with no live session reads as Built.
    f.store.set_state(&a, EnvState::Running).unwrap();
    assert_eq!(f.store.env(&a).unwrap().state, EnvState::Built);
}

/// A session whose workload ended before it was recorded (its init already gone) is ending from
/// the start: the environment reads as Built, and `commit` waits for the helper's teardown instead
/// of refusing.
#[test]
fn a_session_recorded_after_its_workload_ended_is_ending() {
    let f = fixture();
    let a = make_env(&f.store, "alpha", &f.base);
    // The "helper" is still unmounting until we end it; the "init" is long gone.
    let mut helper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let mut g = f
        .store
        .begin_session(&a, helper.id(), Some(u32::MAX))
        .unwrap();
    // As `exec` does once the workload is done: it returns and leaves the record to the helper.
    g.keep_record();
    drop(g);
    let sessions = f.store.sessions(&a).unwrap();
    assert_eq!(
        sessions.len(),
        1,
        "the session stays live until its helper exits"
    );
    assert!(sessions[0].workload_ended && sessions[0].is_ending());
    assert_eq!(f.store.env(&a).unwrap().state, EnvState::Built);
    // The helper finishes its teardown a little later; commit must wait for it.
    let delay = std::time::Duration::from_millis(200);
    let ender = std::thread::spawn(move || {
        std::thread::sleep(delay);
        helper.kill().unwrap();
        helper.wait().unwrap();
    });
    let started = std::time::Instant::now();
    f.store.commit(&a).unwrap();
    assert!(
        started.elapsed() >= delay,
        "commit did not wait for the ending session"
    );
    ender.join().unwrap();
}

/// A session's init is its helper's child: recorded with its start time while it runs, and as
/// ended when the pid names a process with another parent (the init was reaped and its pid reused).
#[test]
fn a_session_records_its_init_only_while_it_is_the_helpers_child() {
    let f = fixture();
    let a = make_env(&f.store, "alpha", &f.base);
    let me = std::process::id();
    let mut child = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    // We are the "helper"; our child is the "init".
    let g = f.store.begin_session(&a, me, Some(child.id())).unwrap();
    let s = f.store.sessions(&a).unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].init_pid, Some(child.id()));
    assert!(s[0].init_start_time.is_some() && !s[0].workload_ended && !s[0].is_ending());
    assert_eq!(f.store.env(&a).unwrap().state, EnvState::Running);
    drop(g);
    // The child as "helper" and ourselves as its "init": not its child, so not its init.
    let g = f.store.begin_session(&a, child.id(), Some(me)).unwrap();
    let s = f.store.sessions(&a).unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].init_pid, None);
    assert!(s[0].workload_ended && s[0].is_ending());
    drop(g);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `commit` (like `restore` and `destroy`) waits while a session is starting (its overlay may
/// already be mounted, its record not yet written) and then sees that session, instead of
/// changing the environment under it.
#[test]
fn commit_waits_for_a_starting_session_and_then_refuses() {
    let f = fixture();
    let a = make_env(&f.store, "alpha", &f.base);
    let setup = f.store.session_setup(&a).unwrap();
    let root = f.store.root().to_path_buf();
    let env = a.clone();
    let committer = std::thread::spawn(move || {
        // Its own handle, as another `karapace` process would have.
        let other = Store::open(&root).unwrap();
        other.commit(&env)
    });
    // The session is starting: give the commit time to reach the lock, then record the session.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let guard = f.store.begin_session(&a, std::process::id(), None).unwrap();
    drop(setup);
    let result = committer.join().unwrap();
    assert!(
        matches!(result, Err(StoreError::EnvBusy { .. })),
        "commit did not see the session that was starting: {result:?}"
    );
    drop(guard);
}

#[test]
fn commit_restore_and_snapshots() {
    let f = fixture();
    let a = make_env(&f.store, "alpha", &f.base);
    let upper = f.store.env_upper(&a);
    write(&upper.join("home/user/notes.txt"), b"v1");
    let s1 = f.store.commit(&a).unwrap();
    assert_eq!(f.store.commit(&a).unwrap(), s1, "idempotent");
    let snaps = f.store.snapshots(&a).unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].hash, s1);
    assert_eq!(snaps[0].restore_hash, s1);
    assert_eq!(snaps[0].parent.as_deref(), Some(f.base.as_str()));
    assert_eq!(
        s1,
        karapace_store::snapshot_hash(&a, &f.base, &snaps[0].tar_hash)
    );
    let before = common::snapshot_tree(&upper);

    // Change things: edit, add, delete a lower file via a whiteout.
    write(&upper.join("home/user/notes.txt"), b"v2");
    write(&upper.join("tmpfile"), b"t");
    fs::create_dir_all(upper.join("etc")).unwrap();
    nix::sys::stat::mknod(
        &upper.join("etc/hostname"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        nix::sys::stat::makedev(0, 0),
    )
    .unwrap();
    let s2 = f.store.commit(&a).unwrap();
    assert_ne!(s1, s2);
    let with_whiteout = common::snapshot_tree(&upper);

    f.store.restore(&a, &s1).unwrap();
    assert_eq!(common::snapshot_tree(&upper), before);
    f.store.restore(&a, &s2).unwrap();
    assert_eq!(
        common::snapshot_tree(&upper),
        with_whiteout,
        "deletions survive commit/restore"
    );
    let d = f.store.diff(&a).unwrap();
    assert_eq!(d.removed, vec!["etc/hostname"]);

    let e = f.store.restore(&a, &"f".repeat(64)).unwrap_err();
    assert!(matches!(e, StoreError::UnknownSnapshot(_)));
    assert_eq!(e.exit_class(), 3);
    assert!(matches!(
        f.store.restore(&a, &f.base),
        Err(StoreError::UnknownSnapshot(_))
    ));
    assert!(f.store.verify().unwrap().is_clean());
    assert!(leftovers(&f.root).is_empty());
}

/// What is in the store's trash.
fn trash(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    fs::read_dir(root.join("store/trash"))
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[test]
fn a_restored_environments_old_files_are_freed_after_the_restore_not_inside_it() {
    let f = fixture();
    let a = make_env(&f.store, "alpha", &f.base);
    let upper = f.store.env_upper(&a);
    write(&upper.join("home/user/notes.txt"), b"v1");
    let s1 = f.store.commit(&a).unwrap();
    write(&upper.join("big"), &vec![7u8; 1 << 20]);
    // A workload took away the write permission of its root directory (and of a directory in
    // it): the old upper still leaves by rename, and is still removed later.
    fs::create_dir_all(upper.join("locked/in")).unwrap();
    write(&upper.join("locked/in/file"), b"x");
    fs::set_permissions(upper.join("locked"), fs::Permissions::from_mode(0o555)).unwrap();
    fs::set_permissions(&upper, fs::Permissions::from_mode(0o555)).unwrap();
    f.store.restore(&a, &s1).unwrap();
    assert!(!upper.join("big").exists());
    assert_eq!(trash(&f.root).len(), 1, "the old upper waits in the trash");
    // Nothing reads the trash as content: verify is clean, diff sees the restored upper only.
    assert!(f.store.verify().unwrap().is_clean());
    assert!(!f.store.diff(&a).unwrap().added.iter().any(|p| p == "big"));
    // gc counts it among what it frees (so `du` counts it as reclaimable), and empties it.
    let dry = f.store.gc(true).unwrap();
    assert!(dry.freed_bytes >= 1 << 20, "{dry:?}");
    assert_eq!(trash(&f.root).len(), 1, "a dry run removes nothing");
    f.store.gc(false).unwrap();
    assert!(trash(&f.root).is_empty());
    assert!(f.store.gc(true).unwrap().freed_bytes < 1 << 20);
    // The emptier of the CLI (after `restore` printed its result) does the same.
    f.store.restore(&a, &s1).unwrap();
    assert_eq!(f.store.empty_trash().unwrap(), 1);
    assert!(trash(&f.root).is_empty());
    assert_eq!(f.store.empty_trash().unwrap(), 0);
}

#[test]
fn a_second_emptier_returns_at_once_while_the_trash_is_being_emptied() {
    let f = fixture();
    let a = make_env(&f.store, "alpha", &f.base);
    let s1 = f.store.commit(&a).unwrap();
    f.store.restore(&a, &s1).unwrap();
    // Another process emptying the trash holds its flock.
    let held = nix::fcntl::Flock::lock(
        fs::File::open(f.root.join("store/trash")).unwrap(),
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    )
    .unwrap();
    let other = Store::open(&f.root).unwrap();
    assert_eq!(other.empty_trash().unwrap(), 0);
    assert_eq!(trash(&f.root).len(), 1);
    drop(held);
    assert_eq!(other.empty_trash().unwrap(), 1);
}

#[test]
fn diff_reports_only_real_drift() {
    let f = fixture();
    let a = make_env(&f.store, "alpha", &f.base);
    let upper = f.store.env_upper(&a);
    assert!(!f.store.diff(&a).unwrap().has_drift());
    // Copied-up directories with unchanged mode and a byte-identical copy-up: no drift.
    fs::create_dir_all(upper.join("usr/share")).unwrap();
    fs::set_permissions(upper.join("usr"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(upper.join("usr/share"), fs::Permissions::from_mode(0o755)).unwrap();
    write(&upper.join("etc/os-release"), b"ID=test\n");
    let d = f.store.diff(&a).unwrap();
    assert!(!d.has_drift(), "{d:?}");
    write(&upper.join("etc/hostname"), b"changed\n");
    write(&upper.join("etc/new.conf"), b"new");
    fs::set_permissions(
        upper.join("etc/os-release"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    // Opaque dir replacing usr/share/doc: a.txt and b.txt are gone, c.txt is new.
    fs::create_dir_all(upper.join("usr/share/doc")).unwrap();
    xattr::set(upper.join("usr/share/doc"), "user.overlay.opaque", b"y").unwrap();
    write(&upper.join("usr/share/doc/c.txt"), b"c");
    write(&upper.join("usr/share/doc/a.txt"), b"doc a");
    // Whiteout of a whole directory.
    fs::create_dir_all(upper.join("opt")).unwrap();
    nix::sys::stat::mknod(
        &upper.join("opt/app"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        nix::sys::stat::makedev(0, 0),
    )
    .unwrap();
    let d = f.store.diff(&a).unwrap();
    assert_eq!(d.added, vec!["etc/new.conf", "usr/share/doc/c.txt"]);
    assert_eq!(d.modified, vec!["etc/hostname", "etc/os-release"]);
    assert_eq!(d.removed, vec!["opt/app", "usr/share/doc/b.txt"]);
}

#[test]
fn diff_trees_respects_layer_order() {
    let t = tempfile::tempdir().unwrap();
    let (base, dep, upper) = (
        t.path().join("base"),
        t.path().join("dep"),
        t.path().join("upper"),
    );
    write(&base.join("a"), b"1");
    write(&base.join("d/x"), b"x");
    write(&dep.join("a"), b"2");
    fs::create_dir_all(&dep).unwrap();
    nix::sys::stat::mknod(
        &dep.join("d"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        nix::sys::stat::makedev(0, 0),
    )
    .unwrap();
    write(&upper.join("a"), b"2");
    write(&upper.join("d/x"), b"x");
    let d = diff_trees(&upper, &[dep.clone(), base.clone()]).unwrap();
    assert!(d.modified.is_empty(), "a equals the top lower layer: {d:?}");
    assert_eq!(
        d.added,
        vec!["d", "d/x"],
        "d was deleted by dep, so it is new in upper"
    );
}

#[test]
fn gc_dry_run_matches_real_run_and_protects() {
    let f = fixture();
    let a = make_env(&f.store, "alpha", &f.base);
    write(&f.store.env_upper(&a).join("f"), b"1");
    let snap_a = f.store.commit(&a).unwrap();
    // Archived env with its own base layer: protected.
    let src = f.tmp.path().join("arch-base");
    write(&src.join("arch"), b"archived base");
    let arch_base = f
        .store
        .import_layer_dir(&src, LayerKind::Base, None)
        .unwrap()
        .hash;
    let arch = make_env(&f.store, "arch", &arch_base);
    f.store.set_state(&arch, EnvState::Archived).unwrap();
    // Garbage: an unreferenced layer, a loose object, a destroyed env's snapshot, a Defined leftover,
    // and an env dir without metadata.
    let junk = f.tmp.path().join("junk");
    write(&junk.join("j"), b"junk");
    let junk_layer = f
        .store
        .import_layer_dir(&junk, LayerKind::Base, None)
        .unwrap();
    let loose = f.store.put_object(&b"loose"[..]).unwrap();
    let b = make_env(&f.store, "beta", &f.base);
    write(&f.store.env_upper(&b).join("g"), b"2");
    let snap_b = f.store.commit(&b).unwrap();
    f.store.destroy_env(&b).unwrap();
    f.store
        .create_env(meta("defined", &f.base, EnvState::Defined))
        .unwrap();
    fs::create_dir_all(f.root.join("env").join(env_id("ghost")).join("upper")).unwrap();

    let dry = f.store.gc(true).unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.orphaned_envs.len(), 2);
    assert!(
        dry.orphaned_layers.contains(&junk_layer.hash.to_string())
            && dry.orphaned_layers.contains(&snap_b.to_string())
    );
    assert_eq!(dry.orphaned_layers.len(), 2);
    assert!(
        dry.orphaned_objects.contains(&loose)
            && dry.orphaned_objects.contains(&junk_layer.tar_hash)
    );
    assert_eq!(dry.orphaned_objects.len(), 3);
    // Dry run changed nothing.
    assert!(f.store.layer(&junk_layer.hash).is_ok());
    let real = f.store.gc(false).unwrap();
    assert!(!real.dry_run);
    assert_eq!(
        (real.removed_envs, real.removed_layers, real.removed_objects),
        (dry.removed_envs, dry.removed_layers, dry.removed_objects)
    );
    assert_eq!(real.orphaned_objects, dry.orphaned_objects);
    assert!(f.store.layer(&arch_base).is_ok());
    assert!(f.store.layer(&snap_a).is_ok());
    assert!(f.store.env(&arch).is_ok());
    assert!(f.store.layer(&junk_layer.hash).is_err());
    assert!(!f.store.has_object(&loose));
    let again = f.store.gc(true).unwrap();
    assert_eq!(
        (
            again.removed_envs,
            again.removed_layers,
            again.removed_objects
        ),
        (0, 0, 0)
    );
    let v = f.store.verify().unwrap();
    assert!(v.is_clean(), "{v:?}");
    assert!(leftovers(&f.root).is_empty());
}

#[test]
fn verify_checks_layers() {
    let f = fixture();
    let a = make_env(&f.store, "alpha", &f.base);
    write(&f.store.env_upper(&a).join("f"), b"1");
    let s = f.store.commit(&a).unwrap();
    let r = f.store.verify().unwrap();
    assert!(r.is_clean());
    assert_eq!(r.checked, r.objects + r.layers + r.metadata);
    // Tamper with the snapshot manifest: the hash no longer recomputes.
    let p = f.root.join("store/layers").join(&s);
    let text = fs::read_to_string(&p)
        .unwrap()
        .replace(&a, &env_id("other"));
    fs::write(&p, text).unwrap();
    let r = f.store.verify().unwrap();
    assert_eq!(r.failed, 1);
    assert_eq!(r.failures[0].key, format!("layer:{s}"));
    assert!(r.failures[0].reason.contains("recompute"));
}

#[test]
fn migrate_detects_formats() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("old");
    // A store of the standard tool: `store/version` with format 2.
    write(&root.join("store/version"), br#"{"format_version": 2}"#);
    write(&root.join("store/objects/abc"), b"old object");
    fs::create_dir_all(root.join("env/x/upper")).unwrap();
    assert!(matches!(
        migrate::check(&root),
        MigrateStatus::NeedsMigration {
            format_version: 2,
            ..
        }
    ));
    let e = Store::open(&root).unwrap_err();
    assert!(matches!(
        e,
        StoreError::Version {
            found: 2,
            expected: 3
        }
    ));
    assert_eq!(e.exit_class(), 3);
    assert!(
        Store::open_or_init(&root).is_err(),
        "never overwrite an old store implicitly"
    );
    let rep = migrate::migrate(&root).unwrap();
    assert_eq!(rep.status, "migrated");
    let backup = rep.backup_path.unwrap();
    assert_eq!(
        fs::read(backup.join("store/objects/abc")).unwrap(),
        b"old object"
    );
    assert!(matches!(
        migrate::check(&root),
        MigrateStatus::Current { format_version: 3 }
    ));
    assert_eq!(migrate::migrate(&root).unwrap().status, "current");

    let newer = t.path().join("newer");
    write(&newer.join("store/version"), br#"{"format_version": 9}"#);
    assert!(matches!(
        migrate::check(&newer),
        MigrateStatus::Newer {
            format_version: 9,
            ..
        }
    ));
    assert_eq!(migrate::migrate(&newer).unwrap().status, "newer");
    let broken = t.path().join("broken");
    write(&broken.join("store/version"), b"garbage");
    assert!(matches!(
        migrate::check(&broken),
        MigrateStatus::Error { .. }
    ));
}

#[test]
fn locks_are_shared_or_exclusive_across_handles() {
    let f = fixture();
    let other = Store::open(&f.root).unwrap();
    let s1 = f.store.lock_shared().unwrap();
    let s2 = other.lock_shared().unwrap();
    drop((s1, s2));
    let x = f.store.lock_exclusive().unwrap();
    // Re-entrant within one handle.
    let inner = f.store.lock_shared().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let root = f.root.clone();
    let h = std::thread::spawn(move || {
        let s = Store::open(&root).unwrap();
        let _l = s.lock_exclusive().unwrap();
        tx.send(()).unwrap();
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        rx.try_recv().is_err(),
        "second handle must wait for the exclusive lock"
    );
    drop(inner);
    drop(x);
    rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    h.join().unwrap();
}

#[test]
fn hostile_ids_and_journals_cannot_reach_outside() {
    let f = fixture();
    let victim = f.tmp.path().join("victim");
    write(&victim.join("precious"), b"keep");
    let rel = "../../victim";
    assert!(matches!(
        f.store.destroy_env(rel),
        Err(StoreError::UnknownEnv(_))
    ));
    assert!(matches!(
        f.store.sessions(rel),
        Err(StoreError::UnknownEnv(_))
    ));
    assert!(matches!(f.store.env(rel), Err(StoreError::UnknownEnv(_))));
    assert!(victim.join("precious").exists());
    // A tampered journal entry naming a path outside the store is refused, not executed.
    drop(f.store);
    fs::write(
        f.root.join("store/wal/evil.json"),
        br#"{"wal_version":1,"op":"destroy","env_id":"../../victim"}"#,
    )
    .unwrap();
    let e = Store::open_or_init(&f.root).unwrap_err();
    assert!(matches!(e, StoreError::Integrity { .. }), "{e:?}");
    assert!(victim.join("precious").exists());
}

#[test]
fn staging_dirs_survive_locking_and_die_with_their_owner() {
    let f = fixture();
    let st = f.store.staging_dir().unwrap();
    let tree = st.path().join("rootfs");
    write(&tree.join("etc/issue"), b"staged");
    // Taking the exclusive lock fresh (recovery + tmp cleanup) must not touch it.
    drop(f.store.lock_exclusive().unwrap());
    assert!(tree.join("etc/issue").exists());
    let opts = karapace_store::ImportOptions { adopt_tree: true };
    let m = f
        .store
        .import_layer_dir_with(&tree, LayerKind::Base, None, opts)
        .unwrap();
    assert!(!tree.exists(), "adopted by rename from the staging dir");
    assert_eq!(
        fs::read(f.store.layer_tree(&m.hash).unwrap().join("etc/issue")).unwrap(),
        b"staged"
    );
    let p = st.path().to_path_buf();
    drop(st);
    assert!(!p.exists());
    // A staging dir of a dead process is removed by recovery.
    let dead = f.root.join("store/staging/999999999-1-s-x");
    write(&dead.join("junk"), b"j");
    drop(Store::open_or_init(&f.root).unwrap());
    assert!(!dead.exists());
}

#[test]
fn try_lock_is_a_probe() {
    let f = fixture();
    let other = Store::open(&f.root).unwrap();
    let held = other.lock_shared().unwrap();
    assert!(f.store.try_lock_exclusive().unwrap().is_none());
    drop(held);
    let g = f.store.try_lock_exclusive().unwrap();
    assert!(g.is_some());
    assert!(other.try_lock_exclusive().unwrap().is_none());
    drop(g);
    assert!(other.try_lock_exclusive().unwrap().is_some());
}

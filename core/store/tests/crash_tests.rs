//! Crash recovery: a child process aborts at each `KARAPACE_CRASH_AT` point during an
//! operation; the next `open_or_init` must recover to a consistent store (all-or-nothing),
//! `verify` must be clean and no staging, temp or journal files may remain.
//!
//! The child is this same test binary re-executed on the `crash_child` test with the
//! operation in `CRASH_OP`; without that variable `crash_child` does nothing.

mod common;

use common::{env_id, leftovers, make_env, snapshot_tree, write};
use karapace_store::{EnvState, ImportOptions, LayerKind, Store};
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    a: String,
    b: String,
    s1: karapace_store::LayerHash,
    v1: Vec<(String, String)>,
    v2: Vec<(String, String)>,
}

fn world() -> World {
    let f = common::fixture();
    let a = make_env(&f.store, "alpha", &f.base);
    let b = make_env(&f.store, "beta", &f.base);
    let upper = f.store.env_upper(&a);
    for i in 0..50 {
        write(
            &upper.join(format!("data/file{i}")),
            format!("v1 {i}").as_bytes(),
        );
    }
    let s1 = f.store.commit(&a).unwrap();
    let v1 = snapshot_tree(&upper);
    for i in 0..50 {
        write(
            &upper.join(format!("data/file{i}")),
            format!("v2 {i}").as_bytes(),
        );
    }
    write(&upper.join("only-in-v2"), b"x");
    let v2 = snapshot_tree(&upper);
    let junk = f.tmp.path().join("junk");
    write(&junk.join("j"), b"junk");
    f.store
        .import_layer_dir(&junk, LayerKind::Base, None)
        .unwrap();
    f.store.put_object(&b"loose"[..]).unwrap();
    write(&f.tmp.path().join("import-src/usr/lib/x"), b"import me");
    let fixture_root = f.root.clone();
    drop(f.store);
    World {
        _tmp: f.tmp,
        root: fixture_root,
        a,
        b,
        s1,
        v1,
        v2,
    }
}

/// Runs inside the child process.
#[test]
fn crash_child() {
    let Ok(op) = std::env::var("CRASH_OP") else {
        return;
    };
    let root = PathBuf::from(std::env::var("CRASH_ROOT").unwrap());
    let s = Store::open_or_init(&root).unwrap();
    let (a, b) = (env_id("alpha"), env_id("beta"));
    match op.as_str() {
        "create_env" => s
            .create_env(common::meta(
                "gamma",
                &s.env(&a).unwrap().base_layer,
                EnvState::Built,
            ))
            .unwrap(),
        "destroy" => s.destroy_env(&b).unwrap(),
        // A rebuild of beta (no work of the user's: destroyed) into a new environment.
        "create_handover" => {
            let mut gamma = common::meta("gamma", &s.env(&a).unwrap().base_layer, EnvState::Built);
            gamma.name = None;
            let handover = karapace_store::Handover {
                from: b.clone(),
                name: Some("beta".into()),
                keep_from: false,
            };
            s.create_env_with(gamma, Some(&handover)).unwrap();
        }
        // A rebuild of alpha (the user's work: kept) onto beta, which already existed.
        "handover" => {
            let handover = karapace_store::Handover {
                from: a.clone(),
                name: Some("alpha".into()),
                keep_from: true,
            };
            s.hand_over(&b, &handover).unwrap();
        }
        "rename" => s.rename_env(&b, "renamed").unwrap(),
        "set_state" => s.set_state(&b, EnvState::Frozen).unwrap(),
        "commit" => drop(s.commit(&a).unwrap()),
        "restore" => s
            .restore(&a, &std::env::var("CRASH_SNAP").unwrap())
            .unwrap(),
        // Two restores leave two discarded uppers in the trash; emptying it is interrupted.
        "empty_trash" => {
            let snap = std::env::var("CRASH_SNAP").unwrap();
            s.restore(&a, &snap).unwrap();
            s.restore(&a, &snap).unwrap();
            s.empty_trash().unwrap();
        }
        "gc" => drop(s.gc(false).unwrap()),
        "import" => {
            let src = root.parent().unwrap().join("import-src");
            let opts = ImportOptions { adopt_tree: true };
            drop(
                s.import_layer_dir_with(&src, LayerKind::Dependency, None, opts)
                    .unwrap(),
            );
        }
        "layer_tree" => {
            let base = s.env(&a).unwrap().base_layer;
            fs::remove_dir_all(root.join("store/trees").join(&base)).ok();
            drop(s.layer_tree(&base).unwrap());
        }
        "recover" => {}
        other => panic!("unknown op {other}"),
    }
}

/// What is in the store's trash.
fn trash(root: &Path) -> Vec<PathBuf> {
    fs::read_dir(root.join("store/trash"))
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

fn run_child(root: &Path, op: &str, point: &str, snap: &str) -> std::process::ExitStatus {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env("CRASH_OP", op)
        .env("CRASH_ROOT", root)
        .env("CRASH_SNAP", snap)
        .env("KARAPACE_CRASH_AT", point)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
}

fn check_consistent(w: &World, op: &str, point: &str) {
    let s = Store::open_or_init(&w.root).unwrap();
    let ctx = format!("{op} @ {point}");
    if op == "empty_trash" {
        // No operation was interrupted, so recovery leaves the trash alone (emptying it there
        // would put it on every next command's path); the next emptier finishes the job.
        assert_eq!(trash(&w.root).len(), 1, "{ctx}: {:?}", trash(&w.root));
        assert_eq!(s.empty_trash().unwrap(), 1, "{ctx}");
    }
    let v = s.verify().unwrap();
    assert!(v.is_clean(), "{ctx}: verify failed: {:?}", v.failures);
    assert!(
        leftovers(&w.root).is_empty(),
        "{ctx}: leftovers {:?}",
        leftovers(&w.root)
    );
    assert!(
        trash(&w.root).is_empty(),
        "{ctx}: discarded trees left in the trash {:?}",
        trash(&w.root)
    );
    assert_eq!(s.wal_pending().unwrap(), 0);
    let envs = s.list_envs().unwrap();
    for m in &envs {
        assert!(s.env_upper(&m.env_id).is_dir(), "{ctx}: env without upper");
        assert!(s.env_work(&m.env_id).is_dir(), "{ctx}: env without work");
    }
    for d in fs::read_dir(w.root.join("env")).unwrap() {
        let id = d.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            envs.iter().any(|m| m.env_id == id),
            "{ctx}: env dir {id} without metadata"
        );
    }
    match op {
        "create_env" => {
            let n = envs.len();
            assert!(n == 2 || n == 3, "{ctx}");
        }
        "destroy" => {
            let present = envs.iter().any(|m| m.env_id == w.b);
            assert!(present || !w.root.join("env").join(&w.b).exists(), "{ctx}");
        }
        "create_handover" => {
            // Not committed: beta as it was; committed: gamma named beta, beta gone.
            let named: Vec<_> = envs
                .iter()
                .filter(|m| m.name.as_deref() == Some("beta"))
                .collect();
            assert_eq!(named.len(), 1, "{ctx}: {envs:?}");
            let beta_present = envs.iter().any(|m| m.env_id == w.b);
            if named[0].env_id == w.b {
                assert_eq!(envs.len(), 2, "{ctx}: a new environment without the name");
            } else {
                assert!(!beta_present, "{ctx}: the replaced environment survived");
            }
        }
        "handover" => {
            let named: Vec<_> = envs
                .iter()
                .filter(|m| m.name.as_deref() == Some("alpha"))
                .collect();
            assert_eq!(named.len(), 1, "{ctx}: {envs:?}");
            assert_eq!(envs.len(), 2, "{ctx}: the kept environment is kept");
        }
        "rename" => {
            let name = s.env(&w.b).unwrap().name.unwrap();
            assert!(name == "beta" || name == "renamed", "{ctx}: {name}");
        }
        "set_state" => {
            let st = s.env(&w.b).unwrap().state;
            assert!(st == EnvState::Built || st == EnvState::Frozen, "{ctx}");
        }
        "restore" => {
            let now = snapshot_tree(&s.env_upper(&w.a));
            assert!(
                now == w.v1 || now == w.v2,
                "{ctx}: upper is neither old nor restored"
            );
        }
        "commit" => {
            assert_eq!(
                snapshot_tree(&s.env_upper(&w.a)),
                w.v2,
                "{ctx}: commit must not touch the upper"
            );
            let n = s.snapshots(&w.a).unwrap().len();
            assert!(n == 1 || n == 2, "{ctx}");
        }
        _ => {}
    }
    assert!(s.env(&w.a).is_ok(), "{ctx}: untouched env lost");
    // The store still works after recovery.
    s.commit(&w.a).unwrap();
    s.restore(&w.a, &w.s1).unwrap();
    assert_eq!(snapshot_tree(&s.env_upper(&w.a)), w.v1, "{ctx}");
}

const MATRIX: &[(&str, &[&str])] = &[
    (
        "create_env",
        &[
            "wal.after_journal",
            "create_env.after_env_dir",
            "create_env.after_metadata",
            "wal.before_clear",
        ],
    ),
    (
        "destroy",
        &[
            "wal.after_journal",
            "destroy.after_metadata",
            "destroy.mid_remove",
            "wal.before_clear",
        ],
    ),
    (
        "create_handover",
        &[
            "wal.after_journal",
            "create_env.after_env_dir",
            "create_env.after_metadata",
            "destroy.after_metadata",
            "destroy.mid_remove",
            "handover.after_old",
            "wal.before_clear",
        ],
    ),
    (
        "handover",
        &[
            "wal.after_journal",
            "handover.after_old",
            "wal.before_clear",
        ],
    ),
    (
        "rename",
        &[
            "wal.after_journal",
            "set_metadata.after_write",
            "wal.before_clear",
        ],
    ),
    (
        "set_state",
        &[
            "wal.after_journal",
            "set_metadata.after_write",
            "wal.before_clear",
        ],
    ),
    (
        "commit",
        &[
            "wal.after_journal",
            "object.before_rename",
            "object.after_rename",
            "commit.after_object",
            "commit.after_manifest",
            "wal.before_clear",
        ],
    ),
    (
        "restore",
        &[
            "wal.after_journal",
            "restore.mid_unpack",
            "restore.after_unpack",
            "restore.after_move_old",
            "restore.after_swap",
            "trash.after_move",
            "wal.before_clear",
        ],
    ),
    ("empty_trash", &["trash.mid_empty"]),
    (
        "gc",
        &[
            "wal.after_journal",
            "gc.mid_delete",
            "gc.after_delete",
            "wal.before_clear",
        ],
    ),
    (
        "import",
        &[
            "wal.after_journal",
            "object.before_rename",
            "import.after_object",
            "import.after_tree",
            "import.after_manifest",
            "wal.before_clear",
        ],
    ),
    ("layer_tree", &["tree.after_unpack"]),
];

#[test]
fn crash_at_every_point_recovers() {
    let mut trials = 0;
    for (op, points) in MATRIX {
        for point in *points {
            let w = world();
            let st = run_child(&w.root, op, point, &w.s1);
            assert_eq!(
                st.signal(),
                Some(6),
                "{op} @ {point}: child did not abort there ({st:?})"
            );
            check_consistent(&w, op, point);
            trials += 1;
        }
    }
    eprintln!("{trials} crash trials passed");
    assert!(trials >= 37);
}

#[test]
fn crash_during_recovery_is_recovered() {
    for (op, point) in [
        ("restore", "restore.after_move_old"),
        ("restore", "restore.after_swap"),
        ("restore", "trash.after_move"),
        ("destroy", "destroy.after_metadata"),
        ("gc", "gc.mid_delete"),
        ("create_env", "create_env.after_env_dir"),
        ("rename", "wal.after_journal"),
    ] {
        let w = world();
        assert_eq!(
            run_child(&w.root, op, point, &w.s1).signal(),
            Some(6),
            "{op} @ {point}"
        );
        // Recovery itself crashes right after settling the operation…
        assert_eq!(
            run_child(&w.root, "recover", "recovery.mid", "").signal(),
            Some(6),
            "{op}: recovery.mid"
        );
        // …or in the middle of settling it (the same step points fire during roll-forward).
        let again = match op {
            "destroy" => "destroy.mid_remove",
            "restore" => "trash.after_move",
            _ => "gc.mid_delete",
        };
        let _ = run_child(&w.root, "recover", again, "");
        check_consistent(&w, op, &format!("{point} + recovery crash"));
    }
}

#[test]
fn a_recovery_interrupted_while_it_discards_the_old_upper_is_recovered() {
    let w = world();
    assert_eq!(
        run_child(&w.root, "restore", "restore.after_swap", &w.s1).signal(),
        Some(6)
    );
    // Recovery rolls the restore forward: the old upper goes to the trash, and it dies there.
    assert_eq!(
        run_child(&w.root, "recover", "trash.after_move", "").signal(),
        Some(6)
    );
    check_consistent(
        &w,
        "restore",
        "restore.after_swap + trash.after_move in recovery",
    );
}

#[test]
fn every_listed_crash_point_is_exercised() {
    let mut covered: Vec<&str> = MATRIX.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    covered.push("recovery.mid");
    for p in karapace_store::crash::CRASH_POINTS {
        assert!(covered.contains(p), "crash point {p} has no test");
    }
}

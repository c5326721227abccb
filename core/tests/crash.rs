//! Crash safety: SIGKILL `karapace` at random instants during commit, restore, gc, destroy and
//! rename, then check that the next mutating command recovers, `verify-store` is clean, no staging
//! or journal state is left behind, and the operation either happened completely or not at all.
//!
//! Trials: `KARAPACE_CRASH_TRIALS` per operation (default 40 → 200 in total).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Kp, code, stderr, stdout};

/// A small deterministic PRNG (xorshift) so a failing trial can be replayed from its number.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn trials() -> u64 {
    std::env::var("KARAPACE_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

fn karapace(store: &Path, work: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--store")
        .arg(store)
        .args(args)
        .current_dir(work)
        .stdin(Stdio::null());
    c
}

/// Template: one environment "crash" with a populated upper and one committed snapshot, plus a
/// destroyed environment whose leftovers give gc work. Returns (template dir, `env_id`, snapshot).
fn template() -> (Kp, String, String) {
    let kp = Kp::new();
    let id = kp.build_mock("karapace.toml", &["curl", "git"], Some("crash"));
    // ~400 files so commit/restore take long enough to be interrupted mid-way.
    let upper = kp.upper(&id);
    for d in 1..=20 {
        fs::create_dir_all(upper.join(format!("data/{d}"))).unwrap();
        for f in 1..=20 {
            fs::write(
                upper.join(format!("data/{d}/{f}")),
                format!("{d} {f} payload payload payload\n"),
            )
            .unwrap();
        }
    }
    let snap = kp.json(&["commit", "crash"])["snapshot_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    fs::remove_dir_all(upper.join("data/1")).unwrap();
    fs::write(upper.join("data/2/1"), "changed\n").unwrap();
    fs::write(upper.join("new-file"), "new\n").unwrap();
    let gone = kp.build_mock("gone.toml", &["vim"], Some("gone"));
    kp.ok(&["commit", "gone"]);
    kp.ok(&["destroy", &gone]);
    (kp, id, snap)
}

/// A file of an environment's writable layer ("" when it is missing): what a session would read.
fn read_upper(store: &Path, env_id: &str, rel: &str) -> String {
    fs::read_to_string(common::upper_of(store, env_id).join(rel)).unwrap_or_default()
}

fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success());
}

/// Checks a store after a crash: recovery by a mutating command, verify clean, no leftovers.
fn check_recovered(store: &Path, work: &Path, trial: &str) {
    // Any mutating command recovers. gc is one that cannot re-create what the interrupted
    // operation removed (a build would bring a destroyed environment back, empty).
    let out = karapace(store, work, &["gc"]).output().unwrap();
    assert!(
        out.status.success(),
        "{trial}: recovery build failed: {}",
        stderr(&out)
    );
    let out = karapace(store, work, &["verify-store"]).output().unwrap();
    assert_eq!(
        code(&out),
        0,
        "{trial}: verify-store after recovery:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    let left = leftovers(store);
    assert!(
        left.is_empty(),
        "{trial}: leftovers after recovery: {left:?}"
    );
}

/// Journal entries and staging/temporary files that must not survive recovery.
fn leftovers(store: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for dir in ["store/wal", "store/staging", "store/tmp"] {
        if let Ok(entries) = fs::read_dir(store.join(dir)) {
            found.extend(entries.flatten().map(|e| e.path()));
        }
    }
    found
}

fn timed(store: &Path, work: &Path, args: &[&str]) -> Duration {
    let start = Instant::now();
    let out = karapace(store, work, args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    start.elapsed()
}

fn run_trials(
    op: &str,
    args: impl Fn(&str, &str) -> Vec<String>,
    check: impl Fn(&Path, &Path, &str, &str, &str),
) {
    let (kp, id, snap) = template();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ op.len() as u64);
    // Measure one uninterrupted run to choose kill instants across the whole operation.
    let probe = kp.dir.path().join("probe");
    copy_tree(&kp.store(), &probe);
    let a = args(&id, &snap);
    let full = timed(
        &probe,
        &kp.work(),
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let span = u64::try_from(full.as_micros())
        .unwrap_or(u64::MAX)
        .max(2_000)
        * 12
        / 10;
    for trial in 0..trials() {
        let name = format!("{op} trial {trial}");
        let store = kp.dir.path().join(format!("t-{op}-{trial}"));
        copy_tree(&kp.store(), &store);
        let delay = Duration::from_micros(rng.next() % span);
        let mut child = karapace(
            &store,
            &kp.work(),
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        check_recovered(&store, &kp.work(), &name);
        check(&store, &kp.work(), &id, &snap, &name);
        fs::remove_dir_all(&store).unwrap();
    }
}

fn json(store: &Path, work: &Path, args: &[&str]) -> serde_json::Value {
    let out = karapace(store, work, &[args, &["--json"]].concat())
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn crash_during_commit() {
    run_trials(
        "commit",
        |id, _| vec!["commit".into(), id.into()],
        |store, work, id, _, name| {
            let snaps = json(store, work, &["snapshots", id]);
            let n = snaps["snapshots"].as_array().unwrap().len();
            assert!(
                n == 1 || n == 2,
                "{name}: snapshot committed fully or not at all ({n})"
            );
            // Whatever state: a commit now succeeds and is listed.
            let h = json(store, work, &["commit", id])["snapshot_hash"]
                .as_str()
                .unwrap()
                .to_owned();
            let snaps = json(store, work, &["snapshots", id]);
            assert!(
                snaps["snapshots"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["hash"] == h.as_str()),
                "{name}"
            );
        },
    );
}

#[test]
fn crash_during_restore() {
    run_trials(
        "restore",
        |id, snap| vec!["restore".into(), id.into(), snap.into()],
        |store, _, id, _, name| {
            // Either the old upper (data/1 gone, new-file present) or the restored one — never a mix.
            let upper = common::upper_of(store, id);
            let text = format!(
                "{}\n{}\n{}",
                if upper.join("data/1/1").exists() {
                    "restored"
                } else {
                    "old"
                },
                if upper.join("new-file").exists() {
                    "new"
                } else {
                    "nonew"
                },
                read_upper(store, id, "data/2/1")
            );
            let ok = text == "restored\nnonew\n2 1 payload payload payload\n"
                || text == "old\nnew\nchanged\n";
            assert!(ok, "{name}: upper is a mix of old and restored:\n{text}");
        },
    );
}

#[test]
fn crash_during_gc() {
    run_trials(
        "gc",
        |_, _| vec!["gc".into()],
        |store, work, id, snap, name| {
            // The live environment and its snapshot are intact whatever gc did.
            let out = karapace(store, work, &["restore", id, snap])
                .output()
                .unwrap();
            assert!(out.status.success(), "{name}: {}", stderr(&out));
            assert_eq!(
                read_upper(store, id, "data/1/1"),
                "1 1 payload payload payload\n",
                "{name}"
            );
        },
    );
}

#[test]
fn crash_during_destroy() {
    run_trials(
        "destroy",
        |id, _| vec!["destroy".into(), id.into()],
        |store, work, id, _, name| {
            let out = karapace(store, work, &["inspect", id]).output().unwrap();
            if out.status.success() {
                // Not destroyed: still fully usable.
                assert_eq!(
                    read_upper(store, id, "data/2/1"),
                    "changed\n",
                    "{name}: half-destroyed environment"
                );
            } else {
                assert_eq!(code(&out), 1, "{name}");
            }
        },
    );
}

#[test]
fn crash_during_rename() {
    run_trials(
        "rename",
        |id, _| vec!["rename".into(), id.into(), "renamed".into()],
        |store, work, id, _, name| {
            let v = json(store, work, &["inspect", id]);
            let n = v["name"].as_str().unwrap_or("");
            assert!(n == "crash" || n == "renamed", "{name}: name is {n:?}");
            let envs = json(store, work, &["list"]);
            let with_name = envs
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["name"] == n)
                .count();
            assert_eq!(with_name, 1, "{name}: names stay unique");
        },
    );
}

/// What a rebuild may leave after a crash and recovery: the name on exactly one environment —
/// the old one, untouched (the rebuild did not commit), or the new one, with the old one gone
/// (nothing of the user's in it) or kept unnamed (it holds the user's work). Never both
/// environments with the name on the old one and the new one unnamed.
fn check_rebuild(store: &Path, work: &Path, old: &str, keeps_old: bool, name: &str) {
    let envs = json(store, work, &["list"]);
    let envs = envs.as_array().unwrap();
    let named: Vec<&serde_json::Value> = envs.iter().filter(|e| e["name"] == "crash").collect();
    assert_eq!(
        named.len(),
        1,
        "{name}: one environment named crash: {envs:?}"
    );
    let holder = named[0]["env_id"].as_str().unwrap();
    if holder == old {
        assert_eq!(
            envs.len(),
            1,
            "{name}: not committed, yet a new environment: {envs:?}"
        );
    } else {
        let old_left = envs.iter().find(|e| e["env_id"] == old);
        if keeps_old {
            let kept = old_left.unwrap_or_else(|| panic!("{name}: the user's work was lost"));
            assert!(
                kept["name"].is_null(),
                "{name}: kept environment keeps no name"
            );
            assert_eq!(
                read_upper(store, old, "data/2/1"),
                "changed\n",
                "{name}: the kept work is intact"
            );
        } else {
            assert!(
                old_left.is_none(),
                "{name}: the old environment was not removed"
            );
        }
    }
}

/// Rebuilds of the template's environment (with the user's work: kept) killed at random
/// instants and at every crash point on the way, each in a work directory of its own (a rebuild
/// rewrites the lock beside its manifest).
fn rebuild_trials(label: &str, kp: &Kp, old: &str, keeps_old: bool) {
    let points = [
        "wal.after_journal",
        "create_env.after_env_dir",
        "create_env.after_metadata",
        "handover.after_old",
        "destroy.after_metadata",
        "destroy.mid_remove",
        "set_metadata.after_write",
        "wal.before_clear",
    ];
    let mut rng = Rng(0x5eed_0f4e_b11d);
    let runs: Vec<(String, Option<&str>)> = points
        .iter()
        .map(|p| (format!("{label} at {p}"), Some(*p)))
        .chain((0..trials() / 2).map(|t| (format!("{label} trial {t}"), None)))
        .collect();
    // The rebuild runs where the environment was built (a lock is honoured only there), with
    // the lock of the environment being replaced, restored before every trial.
    let work = kp.work();
    let original = "manifest_version = 1\n[base]\nimage = \"debian/bookworm\"\n[system]\npackages = [\"curl\", \"git\"]\n[runtime]\nbackend = \"mock\"\n";
    fs::write(work.join("karapace.toml"), original).unwrap();
    assert_eq!(json(&kp.store(), &work, &["build"])["env_id"], old);
    let lock = fs::read(work.join("karapace.lock")).unwrap();
    for (i, (name, point)) in runs.iter().enumerate() {
        let store = kp.dir.path().join(format!("t-{label}-{i}"));
        copy_tree(&kp.store(), &store);
        fs::write(work.join("karapace.lock"), &lock).unwrap();
        let _ = fs::remove_file(work.join("karapace.lock.rebuild-old"));
        fs::write(
            work.join("karapace.toml"),
            "manifest_version = 1\n[base]\nimage = \"debian/bookworm\"\n[system]\npackages = [\"curl\", \"git\", \"jq\"]\n[runtime]\nbackend = \"mock\"\n",
        )
        .unwrap();
        let mut cmd = karapace(&store, &work, &["rebuild"]);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        if let Some(p) = point {
            cmd.env("KARAPACE_CRASH_AT", p);
            let _ = cmd.status();
        } else {
            let mut child = cmd.spawn().unwrap();
            std::thread::sleep(Duration::from_micros(rng.next() % 60_000));
            let _ = child.kill();
            let _ = child.wait();
        }
        check_recovered(&store, &work, name);
        check_rebuild(&store, &work, old, keeps_old, name);
        fs::remove_dir_all(&store).unwrap();
    }
}

#[test]
fn crash_during_rebuild() {
    // The template's environment holds the user's work: a rebuild keeps it.
    let (kp, id, _) = template();
    rebuild_trials("rebuild-kept", &kp, &id, true);
    // A fresh one holds nothing: a rebuild destroys it.
    let fresh = Kp::new();
    let old = fresh.build_mock("karapace.toml", &["curl", "git"], Some("crash"));
    rebuild_trials("rebuild-replaced", &fresh, &old, false);
}

//! Issue 13, items 1 and 2: files owned by system users install and keep their owners, and the
//! same lock gives the same layers whoever builds it: root (every id maps to itself), a user
//! whose subordinate range starts at 100000 and one whose range starts at 231072. A user without
//! a range builds too (files collapse to the user, with a hint).
//!
//! The builds run from the root pass (it switches users with `runuser`); the users come from
//! `scripts/test-all` (`kptest` 100000, `kp231` 231072, `kpnorange` without a range). Without
//! root, the users or the mirror the test says why and passes, except under `CI`, where a
//! missing user or mirror fails it.

use karapace_tests::{Karapace, Mirror, TestDir, UserDir, switching_users};
use serde_json::Value;

/// Packages whose files belong to system users (`man`, `_apt`'s downloads, ...).
const MANIFEST: &str = r#"manifest_version = 1

[base]
image = "debian/bookworm"

[system]
packages = ["man-db"]
"#;

/// Users `scripts/test-all` creates with subordinate ranges (at 100000 and 231072).
const RANGE_USERS: [&str; 2] = ["kptest", "kp231"];
const NO_RANGE_USER: &str = "kpnorange";

/// Whether this run can do the test; says why not (and fails under CI where it must).
fn preconditions() -> Option<Mirror> {
    switching_users(&[RANGE_USERS[0], RANGE_USERS[1], NO_RANGE_USER])
}

/// Where `user`'s subordinate uid range starts (panics without one).
fn range_start(user: &str) -> u32 {
    std::fs::read_to_string("/etc/subuid")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 3 && f[0] == user)
                .then(|| f[1].parse().ok())
                .flatten()
        })
        .unwrap_or_else(|| panic!("{user} has no subordinate range in /etc/subuid"))
}

/// Snapshots, diff, restore and verification work on a store with trees of subordinate ids.
fn snapshots_work(k: &Karapace, user: &str) {
    k.exec("t", &["sh", "-c", "echo kept > /etc/karapace-owners-test"])
        .assert_success();
    let snapshot = k.ok(&["commit", "t"]).stdout_str();
    let snapshot = snapshot
        .split_whitespace()
        .find(|w| w.len() == 64)
        .unwrap_or_else(|| panic!("no snapshot hash in {snapshot:?}"))
        .to_owned();
    assert!(
        k.ok(&["diff", "t"])
            .stdout_str()
            .contains("karapace-owners-test"),
        "diff shows the change"
    );
    k.exec("t", &["rm", "/etc/karapace-owners-test"])
        .assert_success();
    // A directory of `man`'s (a subordinate id on the host) in the writable layer that restore
    // replaces: its owner alone cannot remove what is in it.
    k.ok(&[
        "exec",
        "--root",
        "t",
        "--",
        "touch",
        "/var/cache/man/karapace-trash-test",
    ]);
    k.ok(&["restore", "t", &snapshot]);
    let restored = k.exec("t", &["cat", "/etc/karapace-owners-test"]);
    assert_eq!(restored.stdout_str().trim(), "kept", "restored for {user}");
    // The replaced layer went to the store's trash, and `restore` emptied it (through the
    // helper) after printing its result: nothing is left there or in the staging area.
    for dir in ["store/trash", "store/staging"] {
        let left: Vec<_> = std::fs::read_dir(k.store().join(dir))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "restore left {left:?} for {user}");
    }
    k.ok(&["verify-store"]);
}

/// (base layer, dependency layers) of environment `t`.
fn layers(k: &Karapace) -> (String, Vec<String>) {
    let v: Value = k.json(&["inspect", "t", "--json"]);
    let base = v["base_layer"].as_str().unwrap_or_default().to_owned();
    let deps = v["dependency_layers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (base, deps)
}

#[test]
fn files_of_system_users_keep_their_owners_and_layers_match_across_id_maps() {
    let Some(mirror) = preconditions() else {
        return;
    };
    // Root: every id maps to itself.
    let dir = TestDir::new("owners-root");
    dir.write_project_file("karapace.toml", MANIFEST);
    let root = Karapace::new(&dir).image_server(mirror.file_url());
    root.ok(&["build", "--name", "t"]);
    let owners = root.exec(
        "t",
        &["stat", "-c", "%U:%G", "/var/cache/man", "/etc/shadow"],
    );
    owners.assert_success();
    assert_eq!(
        owners.stdout_str().lines().collect::<Vec<_>>(),
        ["man:man", "root:shadow"],
        "owners inside the environment"
    );
    let expected = layers(&root);
    assert_eq!(expected.1.len(), 1, "one dependency layer: {expected:?}");
    let lock = dir.project().join("karapace.lock");

    // Users with subordinate ranges at two different places: the same lock, the same layers.
    let starts: Vec<u32> = RANGE_USERS.iter().map(|u| range_start(u)).collect();
    assert_ne!(starts[0], starts[1], "the two users' ranges must differ");
    for (user, start) in RANGE_USERS.into_iter().zip(starts) {
        let home = UserDir::new("owners", user, MANIFEST, Some(&lock));
        // The first user reaches the store through a symbolic link of its own (a store on
        // another disk, a symlinked home): every tree job must still find it.
        let k = if user == RANGE_USERS[0] {
            let via = home.path.join("via");
            std::os::unix::fs::symlink(&home.path, &via).expect("symlink");
            let u = nix::unistd::User::from_name(user)
                .ok()
                .flatten()
                .expect("user");
            std::os::unix::fs::lchown(&via, Some(u.uid.as_raw()), Some(u.gid.as_raw()))
                .expect("chown the link");
            Karapace::with_paths(
                &via.join("store"),
                &home.path.join("cache"),
                &home.path.join("project"),
            )
            .image_server(mirror.file_url())
            .env("HOME", &home.path)
            .as_user(user)
        } else {
            home.karapace(&mirror)
        };
        k.ok(&["build", "--locked", "--name", "t"]);
        assert_eq!(
            layers(&k),
            expected,
            "{user} (range from {start}) built other layers than root from the same lock"
        );
        // On disk the files belong to the user's range: man (6) is start + 5.
        let tree = home
            .path
            .join("store/store/trees")
            .join(&expected.1[0])
            .join("var/cache/man");
        let meta = std::fs::symlink_metadata(&tree).expect("stat the layer tree");
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            start + 5,
            "host owner of var/cache/man for {user}"
        );
        k.exec("t", &["man", "--version"]).assert_success();
        snapshots_work(&k, user);
        // Everything the store keeps can be removed by its owner (through the helper).
        k.ok(&["destroy", "t"]);
        k.ok(&["gc"]);
        let left =
            std::fs::read_dir(home.path.join("store/store/trees")).map_or(0, Iterator::count);
        assert_eq!(left, 0, "gc left layer trees behind for {user}");
    }

    // No range: the build works, every file is the user's, and the build says how to fix it.
    let home = UserDir::new("owners", NO_RANGE_USER, MANIFEST, None);
    let k = home.karapace(&mirror);
    let built = k.ok(&["build", "--name", "t"]);
    assert!(
        built.stderr_str().contains("usermod --add-subuids"),
        "hint on stderr: {}",
        built.stderr_str()
    );
    assert!(
        !built.stdout_str().contains("usermod"),
        "stdout is for results"
    );
    k.exec("t", &["man", "--version"]).assert_success();
}

//! Drop-in compatibility with the standard `karapace` tool: what its users' scripts parse.
//!
//! One test per row of "Text and JSON outputs users' scripts already parse" and per row of the
//! commands table in the CLI contract (`docs/cli.md` shows the same outputs). Each drives the real
//! binary on the mock backend and asserts the exact text, the JSON keys (and, where the standard
//! tool serialises a struct, their order) and the exit code. A change that breaks a user's script
//! fails here first. `push`/`pull` need a real environment and remote: their exact lines are
//! asserted in `tests/tests/e2e_remote.rs`.

mod common;

use std::fs;

use common::{Kp, code, stderr, stdout};

/// The keys of a JSON object as the text lists them, in order (`serde_json::Value` would sort
/// them). `indent` is the indentation of the object's keys in pretty output.
fn keys_in_order(text: &str, indent: usize) -> Vec<String> {
    let prefix = format!("{}\"", " ".repeat(indent));
    let mut keys = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(&prefix)
            && let Some(end) = rest.find('"')
        {
            keys.push(rest[..end].to_owned());
        }
    }
    keys
}

/// The sorted key set of a JSON object.
fn key_set(v: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

fn strs(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

/// The first regular file beneath `dir`, depth first.
fn first_file(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let mut entries: Vec<_> = fs::read_dir(dir).ok()?.filter_map(Result::ok).collect();
    entries.sort_by_key(fs::DirEntry::file_name);
    entries.into_iter().find_map(|e| {
        let path = e.path();
        let kind = e.file_type().ok()?;
        if kind.is_file() {
            Some(path)
        } else if kind.is_dir() {
            first_file(&path)
        } else {
            None
        }
    })
}

/// Writes a file into an environment's writable layer (what a workload would leave behind).
fn drift(kp: &Kp, env_id: &str, rel: &str, body: &str) {
    let path = kp.store().join("env").join(env_id).join("upper").join(rel);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, body).expect("write");
}

const ENV_KEYS: [&str; 12] = [
    "env_id",
    "short_id",
    "name",
    "state",
    "manifest_hash",
    "base_layer",
    "dependency_layers",
    "policy_layer",
    "created_at",
    "updated_at",
    "ref_count",
    "checksum",
];

// ---- Rows of "Text and JSON outputs users' scripts already parse" ----

#[test]
fn build_and_rebuild_print_the_standard_two_lines() {
    let kp = Kp::new();
    let id = kp.build_mock("named.toml", &["git"], Some("web"));
    // The no-op build prints the same two lines (our note goes to stderr).
    let text = kp.ok(&["build", "named.toml", "--name", "web"]);
    assert_eq!(
        text,
        format!("built environment 'web' ({})\nenv_id: {id}\n", &id[..12])
    );
    let text = kp.ok(&["rebuild", "named.toml", "--name", "web"]);
    assert_eq!(
        text,
        format!("rebuilt environment 'web' ({})\nenv_id: {id}\n", &id[..12])
    );
    // Unnamed, in a directory of its own (a directory holds one karapace.lock).
    let plain = Kp::new();
    let id2 = plain.build_mock("karapace.toml", &["curl"], None);
    let text = plain.ok(&["build"]);
    assert_eq!(
        text,
        format!("built environment {}\nenv_id: {id2}\n", &id2[..12])
    );
    let text = plain.ok(&["rebuild"]);
    assert_eq!(
        text,
        format!("rebuilt environment {}\nenv_id: {id2}\n", &id2[..12])
    );
    let v = plain.json(&["rebuild"]);
    assert_eq!(v["status"], "rebuilt");
    assert_eq!(v["name"], serde_json::Value::Null);
    let v = kp.json(&["build", "named.toml", "--name", "web"]);
    assert_eq!(key_set(&v), strs(&["env_id", "name", "short_id", "status"]));
    assert_eq!(v["status"], "built");
    assert_eq!(v["name"], "web");
    assert_eq!(v["short_id"], &id[..12]);
}

#[test]
fn freeze_archive_and_destroy_echo_the_argument_as_typed() {
    let kp = Kp::new();
    let id = kp.build_mock("karapace.toml", &[], Some("st"));
    let prefix = &id[..7];
    assert_eq!(
        kp.ok(&["freeze", prefix]),
        format!("frozen environment {prefix}\n")
    );
    assert_eq!(kp.ok(&["archive", "st"]), "archived environment st\n");
    assert_eq!(
        kp.ok(&["destroy", &id[..12]]),
        format!("destroyed environment {}\n", &id[..12])
    );
}

#[test]
fn stop_echoes_the_argument_as_typed() {
    let kp = Kp::new();
    let id = kp.build_mock("karapace.toml", &[], Some("run"));
    let session = kp.stand_in_session(&id);
    assert_eq!(kp.ok(&["stop", "run"]), "stopped environment run\n");
    session.wait();
    let out = kp.run(&["stop", "run"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("is not running"), "{}", stderr(&out));
}

#[test]
fn rename_prints_an_arrow_to_the_quoted_new_name() {
    let kp = Kp::new();
    let id = kp.build_mock("karapace.toml", &[], Some("old"));
    assert_eq!(
        kp.ok(&["rename", "old", "new"]),
        format!("renamed {} \u{2192} 'new'\n", &id[..12])
    );
    // Names outside [A-Za-z0-9_-]{1,64} or taken: exit 3.
    assert_eq!(code(&kp.run(&["rename", "new", "bad name"])), 3);
    assert_eq!(code(&kp.run(&["rename", "new", &"x".repeat(65)])), 3);
    kp.build_mock("other.toml", &["x"], Some("taken"));
    assert_eq!(code(&kp.run(&["rename", "new", "taken"])), 3);
}

#[test]
fn commit_prints_the_hash_for_the_argument() {
    let kp = Kp::new();
    let id = kp.build_mock("karapace.toml", &[], Some("c"));
    drift(&kp, &id, "work/file", "one\n");
    let v = kp.json(&["commit", "c"]);
    assert_eq!(key_set(&v), strs(&["env_id", "snapshot_hash"]));
    let hash = v["snapshot_hash"].as_str().expect("hash").to_owned();
    assert_eq!(hash.len(), 64);
    // Idempotent for unchanged content, and the line names the argument as typed.
    assert_eq!(
        kp.ok(&["commit", &id[..9]]),
        format!("committed snapshot {hash} for {}\n", &id[..9])
    );
}

#[test]
fn restore_prints_the_argument_and_the_snapshot() {
    let kp = Kp::new();
    let id = kp.build_mock("karapace.toml", &[], Some("r"));
    drift(&kp, &id, "work/file", "one\n");
    let hash = kp.json(&["commit", "r"])["snapshot_hash"]
        .as_str()
        .expect("hash")
        .to_owned();
    assert_eq!(
        kp.ok(&["restore", "r", &hash]),
        format!("restored r from snapshot {hash}\n")
    );
    let v = kp.json(&["restore", "r", &hash]);
    assert_eq!(key_set(&v), strs(&["env_id", "restored_snapshot"]));
    assert_eq!(v["restored_snapshot"], hash.as_str());
    assert_eq!(code(&kp.run(&["restore", "r", &"0".repeat(64)])), 3);
}

#[test]
fn snapshots_list_restore_hashes_under_a_header() {
    let kp = Kp::new();
    let id = kp.build_mock("karapace.toml", &[], Some("s"));
    assert_eq!(kp.ok(&["snapshots", "s"]), "no snapshots for s\n");
    drift(&kp, &id, "a", "1\n");
    kp.ok(&["commit", "s"]);
    let v = kp.json(&["snapshots", "s"]);
    assert_eq!(key_set(&v), strs(&["env_id", "snapshots"]));
    let snap = &v["snapshots"][0];
    for key in ["hash", "parent", "restore_hash", "tar_hash"] {
        assert!(snap.get(key).is_some(), "{key} in {v}");
    }
    let restore = snap["restore_hash"].as_str().expect("restore_hash");
    let tar = snap["tar_hash"].as_str().expect("tar_hash");
    assert_eq!(
        kp.ok(&["snapshots", &id[..12]]),
        format!(
            "snapshots for {}:\n  {restore} (tar: {})\n",
            &id[..12],
            &tar[..12]
        )
    );
}

#[test]
fn diff_prints_a_header_then_marked_paths() {
    let kp = Kp::new();
    let id = kp.build_mock("karapace.toml", &[], Some("d"));
    assert_eq!(
        kp.ok(&["diff", "d"]),
        "no drift detected in environment d\n"
    );
    let v = kp.json(&["diff", "d"]);
    assert_eq!(
        key_set(&v),
        strs(&["added", "env_id", "has_drift", "modified", "removed"])
    );
    assert_eq!(v["has_drift"], false);
    drift(&kp, &id, "new-file", "x\n");
    assert_eq!(
        kp.ok(&["diff", &id[..6]]),
        format!(
            "drift detected in environment {}:\n  + new-file\n",
            &id[..6]
        )
    );
    let v = kp.json(&["diff", "d"]);
    assert_eq!(v["has_drift"], true);
    assert_eq!(v["added"], serde_json::json!(["new-file"]));
}

#[test]
fn list_pads_its_columns_like_the_standard_tool() {
    let kp = Kp::new();
    assert_eq!(kp.ok(&["list"]), "no environments found\n");
    let a = kp.build_mock("a.toml", &["a"], Some("alpha"));
    let b = kp.build_mock("b.toml", &["b"], None);
    kp.ok(&["freeze", "alpha"]);
    let text = kp.ok(&["list"]);
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert_eq!(
        lines.first().map(String::as_str),
        Some("SHORT_ID       NAME             STATE      ENV_ID"),
        "{text}"
    );
    let mut expected = vec![
        format!("{:<14} {:<16} {:<10} {a}", &a[..12], "alpha", "frozen"),
        format!("{:<14} {:<16} {:<10} {b}", &b[..12], "", "built"),
    ];
    expected.sort();
    let mut rows = lines.split_off(1);
    rows.sort();
    assert_eq!(rows, expected, "{text}");
}

#[test]
fn list_json_carries_the_standard_keys_in_order() {
    let kp = Kp::new();
    kp.build_mock("karapace.toml", &["git"], Some("j"));
    let out = kp.run(&["list", "--json"]);
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    // Objects of the array are indented 2, their keys 4.
    let keys = keys_in_order(&text, 4);
    assert_eq!(keys[..ENV_KEYS.len()], ENV_KEYS, "{text}");
    // Ours after them.
    assert_eq!(keys[ENV_KEYS.len()..], ["usage"], "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v[0]["ref_count"], 1);
    assert_eq!(v[0]["state"], "Built");
    assert_eq!(v[0]["name"], "j");
    assert_eq!(kp.json(&["list"]).as_array().map(Vec::len), Some(1));
}

#[test]
fn inspect_prints_the_standard_nine_lines_first() {
    let kp = Kp::new();
    let id = kp.build_mock("karapace.toml", &["git", "curl"], None);
    let v = kp.json(&["inspect", &id]);
    let text = kp.ok(&["inspect", &id[..12]]);
    let lines: Vec<&str> = text.lines().collect();
    let s = |k: &str| v[k].as_str().expect(k).to_owned();
    let expected = [
        format!("env_id:      {id}"),
        format!("short_id:    {}", &id[..12]),
        "name:        (none)".to_owned(),
        "state:       built".to_owned(),
        format!("base_layer:  {}", s("base_layer")),
        format!(
            "deps:        {}",
            v["dependency_layers"].as_array().map_or(0, Vec::len)
        ),
        "ref_count:   1".to_owned(),
        format!("created_at:  {}", s("created_at")),
        format!("updated_at:  {}", s("updated_at")),
    ];
    assert!(lines.len() > expected.len(), "{text}");
    assert_eq!(lines[..expected.len()], expected, "{text}");
    // Our extra lines come after, in the same key: value form.
    assert!(
        lines[expected.len()..]
            .iter()
            .any(|l| *l == format!("manifest_hash: {}", s("manifest_hash"))),
        "{text}"
    );
}

#[test]
fn inspect_json_carries_the_standard_keys_in_order() {
    let kp = Kp::new();
    let id = kp.build_mock("karapace.toml", &["git"], Some("i"));
    let out = kp.run(&["inspect", "i", "--json"]);
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    let keys = keys_in_order(&text, 2);
    assert_eq!(keys[..ENV_KEYS.len()], ENV_KEYS, "{text}");
    // Ours after them.
    assert_eq!(
        keys[ENV_KEYS.len()..],
        ["usage", "desktop_entries"],
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["env_id"], id.as_str());
    assert_eq!(v["ref_count"], 1);
    assert_eq!(v["checksum"].as_str().map(str::len), Some(64));
}

#[test]
fn gc_prints_real_counts_in_both_modes() {
    let kp = Kp::new();
    let gone = kp.build_mock("a.toml", &["a"], Some("gone"));
    kp.build_mock("b.toml", &["b"], Some("kept"));
    kp.ok(&["destroy", &gone]);
    let dry = kp.json(&["gc", "--dry-run"]);
    assert_eq!(
        // The standard tool's keys, then ours.
        key_set(&dry),
        strs(&[
            "freed_bytes",
            "dry_run",
            "orphaned_envs",
            "orphaned_layers",
            "orphaned_objects",
            "removed_envs",
            "removed_layers",
            "removed_objects",
        ])
    );
    let n = |k: &str| dry[k].as_array().map_or(0, Vec::len);
    let (envs, layers, objects) = (
        n("orphaned_envs"),
        n("orphaned_layers"),
        n("orphaned_objects"),
    );
    assert!(layers + objects > 0, "something to collect: {dry}");
    let first = |text: String| text.lines().next().unwrap_or_default().to_owned();
    assert_eq!(
        first(kp.ok(&["gc", "--dry-run"])),
        format!("gc: would remove {envs} envs, {layers} layers, {objects} objects")
    );
    assert_eq!(
        first(kp.ok(&["gc"])),
        format!("gc: removed {envs} envs, {layers} layers, {objects} objects")
    );
    assert_eq!(
        first(kp.ok(&["gc"])),
        "gc: removed 0 envs, 0 layers, 0 objects"
    );
}

#[test]
fn verify_store_summary_comes_first_then_failures() {
    let kp = Kp::new();
    kp.build_mock("karapace.toml", &["git"], None);
    let v = kp.json(&["verify-store"]);
    for key in ["checked", "passed", "failed"] {
        assert!(v[key].is_u64(), "{key} in {v}");
    }
    let (checked, passed) = (v["checked"].as_u64(), v["passed"].as_u64());
    assert_eq!(checked, passed);
    let checked = checked.unwrap_or(0);
    assert_eq!(
        kp.ok(&["verify-store"]),
        format!("store integrity: {checked}/{checked} objects passed\n")
    );
    // Corrupt one object: exit 3, the summary, then one FAIL line.
    let objects = kp.store().join("store").join("objects");
    let victim = first_file(&objects).expect("an object");
    fs::write(&victim, b"tampered").expect("tamper");
    let failed = kp.run(&["verify-store", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&failed)).expect("json");
    let (passed, failed) = (
        report["passed"].as_u64().unwrap_or(0),
        report["failed"].as_u64().unwrap_or(0),
    );
    assert!(failed >= 1, "{report}");
    let out = kp.run(&["verify-store"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("store integrity: {passed}/{checked} objects passed")
    );
    let key = victim.file_name().and_then(|n| n.to_str()).unwrap_or("");
    assert_eq!(lines.len() as u64, 1 + failed, "{text}");
    assert!(
        lines[1..].iter().all(|l| l.starts_with("  FAIL ")),
        "{text}"
    );
    assert!(
        lines[1..]
            .iter()
            .any(|l| l.starts_with(&format!("  FAIL object:{key}: "))),
        "{text}"
    );
}

#[test]
fn new_prints_the_file_and_the_template() {
    let kp = Kp::new();
    assert_eq!(
        kp.ok(&["new", "demo", "--template", "dev"]),
        "wrote ./karapace.toml for 'demo'\ntemplate: dev\n"
    );
    let v = kp.json(&["new", "demo", "--template", "minimal", "--force"]);
    assert_eq!(
        v,
        serde_json::json!({"name": "demo", "path": "./karapace.toml", "status": "written", "template": "minimal"})
    );
    // An unknown template is exit 1 with the standard message, and writes nothing.
    fs::write(kp.work().join("karapace.toml"), "# mine\n").expect("write");
    let out = kp.run(&["new", "demo", "--template", "nope", "--force"]);
    assert_eq!(code(&out), 1);
    assert_eq!(
        stderr(&out).trim(),
        "error: unknown template 'nope' (expected: minimal, dev, gui-dev, rust-dev, ubuntu-dev)"
    );
    assert_eq!(
        fs::read_to_string(kp.work().join("karapace.toml")).expect("read"),
        "# mine\n"
    );
}

#[test]
fn new_templates_are_the_standard_tools_manifests() {
    let kp = Kp::new();
    let expect = [
        ("minimal", "rolling", 0),
        ("dev", "rolling", 10),
        ("gui-dev", "rolling", 7),
        ("rust-dev", "rolling", 8),
        ("ubuntu-dev", "ubuntu/24.04", 8),
    ];
    for (t, image, packages) in expect {
        kp.ok(&["new", "x", "--template", t, "--force"]);
        let text = fs::read_to_string(kp.work().join("karapace.toml")).expect("read");
        let v: toml::Value = toml::from_str(&text).expect("toml");
        assert_eq!(v["base"]["image"].as_str(), Some(image), "{t}");
        let n = v
            .get("system")
            .and_then(|s| s.get("packages"))
            .and_then(toml::Value::as_array)
            .map_or(0, Vec::len);
        assert_eq!(n, packages, "{t}");
    }
}

#[test]
fn pin_names_the_manifest_it_rewrote() {
    let kp = Kp::new();
    kp.manifest(
        "karapace.toml",
        "manifest_version = 1\n[base]\nimage = \"https://images.example/rootfs.tar.xz\"\n",
    );
    assert_eq!(kp.ok(&["pin"]), "pinned base image in karapace.toml\n");
    let v = kp.json(&["pin", "karapace.toml"]);
    assert_eq!(key_set(&v), strs(&["base_image", "manifest", "status"]));
    assert_eq!(v["status"], "pinned");
    assert_eq!(code(&kp.run(&["pin", "--check"])), 0);
    kp.manifest(
        "alias.toml",
        "manifest_version = 1\n[base]\nimage = \"debian/bookworm\"\n",
    );
    assert_eq!(code(&kp.run(&["pin", "alias.toml", "--check"])), 1);
}

#[test]
fn doctor_prints_the_standard_frame() {
    let kp = Kp::new();
    let out = kp.run(&["doctor"]);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..2], ["Karapace Doctor", ""], "{text}");
    let last = lines.last().copied().unwrap_or("");
    assert_eq!(lines[lines.len() - 2], "", "{text}");
    let checks = &lines[2..lines.len() - 2];
    assert!(!checks.is_empty());
    for l in checks {
        let icon = l.chars().nth(2).unwrap_or(' ');
        assert!(l.starts_with("  "), "{l}");
        assert!(
            ['\u{2713}', '\u{2717}', '\u{26a0}', '\u{2139}'].contains(&icon),
            "{l}"
        );
        assert_eq!(l.chars().nth(3), Some(' '), "{l}");
    }
    let v = kp.json(&["doctor"]);
    assert_eq!(key_set(&v), strs(&["checks", "healthy"]));
    let healthy = v["healthy"].as_bool().expect("healthy");
    if healthy {
        assert_eq!(last, "All checks passed.");
        assert_eq!(code(&out), 0);
    } else {
        assert_eq!(last, "Some checks failed. See above for details.");
        assert_eq!(code(&out), 1);
    }
    let names: Vec<&str> = v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names[..8],
        [
            "runtime_prereqs",
            "store_exists",
            "store_version",
            "store_integrity",
            "wal_clean",
            "store_lock",
            "environments",
            "disk_space",
        ]
    );
    assert_eq!(checks.len(), names.len());
    for c in v["checks"].as_array().expect("checks") {
        assert_eq!(key_set(c), strs(&["message", "name", "status"]));
        let status = c["status"].as_str().unwrap_or("");
        assert!(["pass", "fail", "warn", "info"].contains(&status), "{c}");
    }
}

#[test]
fn migrate_prints_the_standard_status_text_and_json() {
    let kp = Kp::new();
    let out = kp.run(&["migrate", "--json"]);
    assert_eq!(code(&out), 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(
        v,
        serde_json::json!({"status": "no_store", "message": "No store found."})
    );
    assert_eq!(
        kp.ok(&["migrate"]),
        format!(
            "No store found at {}. Nothing to migrate.\n",
            kp.store().display()
        )
    );
    kp.build_mock("karapace.toml", &[], None);
    let v = kp.json(&["migrate"]);
    let version = v["format_version"].as_u64().expect("format_version");
    assert_eq!(
        v,
        serde_json::json!({"status": "current", "format_version": version})
    );
    assert_eq!(
        kp.ok(&["migrate"]),
        format!("Store format version: {version} (current)\nNo migration needed.\n")
    );
    // A store from a newer karapace: exit 1, found and supported.
    let version_file = kp.store().join("store").join("version");
    let newer = version + 1;
    let body = fs::read_to_string(&version_file).expect("version file");
    let replaced = body.replace(&version.to_string(), &newer.to_string());
    fs::write(&version_file, replaced).expect("write version");
    let out = kp.run(&["migrate", "--json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(
        v,
        serde_json::json!({"status": "newer", "found": newer, "supported": version})
    );
}

#[test]
fn man_pages_name_the_directory() {
    let kp = Kp::new();
    assert_eq!(
        kp.ok(&["man-pages", "pages"]),
        "man pages written to pages\n"
    );
    assert!(kp.work().join("pages").join("karapace-build.1").is_file());
}

// ---- Rows of the commands table: arguments, exit codes and rules below the outputs ----

#[test]
fn require_pinned_image_on_an_alias_is_a_manifest_error() {
    let kp = Kp::new();
    kp.manifest(
        "karapace.toml",
        "manifest_version = 1\n[base]\nimage = \"debian/bookworm\"\n[runtime]\nbackend = \"mock\"\n",
    );
    let out = kp.run(&["build", "--require-pinned-image"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("base.image is not pinned: 'debian/bookworm'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_build_makes_a_frozen_or_archived_environment_built_again() {
    let kp = Kp::new();
    let id = kp.build_mock("karapace.toml", &["git"], Some("f"));
    kp.ok(&["freeze", "f"]);
    kp.ok(&["build"]);
    assert_eq!(kp.json(&["inspect", &id])["state"], "Built");
    kp.ok(&["archive", "f"]);
    kp.ok(&["rebuild"]);
    assert_eq!(kp.json(&["inspect", "f"])["state"], "Built");
}

#[test]
fn exec_requires_dashes_and_calls_the_command_command() {
    let kp = Kp::new();
    let out = kp.run(&["exec", "x", "true"]);
    assert_eq!(code(&out), 2);
    let help = kp.ok(&["exec", "--help"]);
    assert!(help.contains("COMMAND"), "{help}");
    assert!(!help.contains("<CMD>"), "{help}");
    let help = kp.ok(&["enter", "--help"]);
    assert!(help.contains("[COMMAND]"), "{help}");
}

#[test]
fn tui_refuses_json_with_the_standard_message() {
    let kp = Kp::new();
    let out = kp.run(&["tui", "--json"]);
    assert_eq!(code(&out), 1);
    assert_eq!(
        stderr(&out).trim(),
        "error: JSON output is not supported for 'tui'"
    );
}

#[test]
fn unknown_environments_and_ambiguous_prefixes_exit_1() {
    let kp = Kp::new();
    kp.build_mock("a.toml", &["a"], Some("one"));
    let out = kp.run(&["inspect", "zzz"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).starts_with("error: no environment matching 'zzz'"),
        "{}",
        stderr(&out)
    );
    // Build environments until two share a first hex digit: an ambiguous one-digit prefix.
    let mut ids = vec![
        kp.json(&["inspect", "one"])["env_id"]
            .as_str()
            .expect("id")
            .to_owned(),
    ];
    let mut n = 0;
    let prefix = loop {
        n += 1;
        let id = kp.build_mock(&format!("m{n}.toml"), &[&format!("p{n}")], None);
        if let Some(other) = ids.iter().find(|o| o[..1] == id[..1]) {
            break other[..1].to_owned();
        }
        ids.push(id);
    };
    let out = kp.run(&["inspect", &prefix]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).starts_with(&format!(
            "error: ambiguous env_id prefix '{prefix}': matches 2 environments"
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn exit_codes_follow_the_error_kind() {
    let kp = Kp::new();
    // Usage: 2.
    assert_eq!(code(&kp.run(&["frobnicate"])), 2);
    assert_eq!(code(&kp.run(&["completions", "tcsh"])), 2);
    // Manifest: 2.
    kp.manifest("bad.toml", "manifest_version = 7\n");
    assert_eq!(code(&kp.run(&["build", "bad.toml"])), 2);
    // Store: 3 (invalid name).
    kp.manifest(
        "ok.toml",
        "manifest_version = 1\n[base]\nimage = \"debian/bookworm\"\n[runtime]\nbackend = \"mock\"\n",
    );
    assert_eq!(code(&kp.run(&["build", "ok.toml", "--name", "no way"])), 3);
    // General: 1.
    assert_eq!(code(&kp.run(&["destroy", "nothing"])), 1);
    assert_eq!(
        kp.ok(&["--version"]).trim(),
        format!("karapace {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn json_and_store_flags_are_accepted_before_or_after_the_subcommand() {
    let kp = Kp::new();
    let id = kp.build_mock("karapace.toml", &[], Some("g"));
    let store = kp.store();
    let store = store.to_str().expect("utf8");
    for args in [
        &["--json", "inspect", "g"][..],
        &["inspect", "g", "--json"],
        &["inspect", "--json", "g"],
    ] {
        let out = std::process::Command::new(common::BIN)
            .args(args)
            .arg("--store")
            .arg(store)
            .current_dir(kp.work())
            .output()
            .expect("spawn");
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
        assert_eq!(v["env_id"], id.as_str());
    }
}

//! The CLI contract, end to end through the real binary, on the mock backend.

mod common;

use std::fs;
use std::process::{Command, Stdio};

use common::{BIN, Kp, code, stderr, stdout};

#[test]
fn version_and_help() {
    let kp = Kp::new();
    let out = kp.ok(&["--version"]);
    assert_eq!(
        out.trim(),
        format!("karapace {}", env!("CARGO_PKG_VERSION"))
    );
    let help = kp.ok(&["--help"]);
    for sub in ["build", "exec", "verify-store", "man-pages", "migrate"] {
        assert!(help.contains(sub), "help lists {sub}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let kp = Kp::new();
    assert_eq!(code(&kp.run(&["exec", "x", "true"])), 2, "exec without --");
    assert_eq!(code(&kp.run(&["frobnicate"])), 2);
    assert_eq!(code(&kp.run(&["completions", "tcsh"])), 2);
}

#[test]
fn read_only_commands_never_create_a_store() {
    let kp = Kp::new();
    for args in [
        &["list"][..],
        &["inspect", "abc"],
        &["diff", "abc"],
        &["snapshots", "abc"],
        &["verify-store"],
        &["migrate"],
        &["doctor"],
        &["gc", "--dry-run"],
        &["du"],
    ] {
        let _ = kp.run(args);
        assert!(!kp.store().exists(), "{args:?} created the store");
    }
    assert_eq!(kp.ok(&["list"]).trim(), "no environments found");
    assert_eq!(kp.json(&["list"]), serde_json::json!([]));
    // Nor does running something in an environment that cannot exist yet.
    for args in [&["exec", "abc", "--", "true"][..], &["enter", "abc"]] {
        let out = kp.run(args);
        assert_ne!(code(&out), 0, "{args:?}");
        assert!(
            stderr(&out).contains("no environment matching 'abc'"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!kp.store().exists(), "{args:?} created the store");
    }
}

#[test]
fn new_writes_templates_and_refuses_to_overwrite() {
    let kp = Kp::new();
    let v = kp.json(&["new", "demo", "--template", "dev"]);
    assert_eq!(v["status"], "written");
    assert_eq!(v["template"], "dev");
    assert_eq!(v["name"], "demo");
    assert_eq!(v["path"], "./karapace.toml");
    let manifest = kp.work().join("karapace.toml");
    assert!(
        fs::read_to_string(&manifest)
            .unwrap()
            .contains("manifest_version = 1")
    );
    // Non-TTY without --force: refuse, keep the file.
    fs::write(&manifest, "# mine\n").unwrap();
    let out = kp.run(&["new", "demo", "--template", "minimal"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(fs::read_to_string(&manifest).unwrap(), "# mine\n");
    kp.ok(&["new", "demo", "--template", "minimal", "--force"]);
    assert_ne!(fs::read_to_string(&manifest).unwrap(), "# mine\n");
    // No template and no TTY to ask on.
    assert_eq!(code(&kp.run(&["new", "other", "--force"])), 1);
    for t in ["minimal", "dev", "gui-dev", "rust-dev", "ubuntu-dev"] {
        kp.ok(&["new", "x", "--template", t, "--force"]);
    }
}

#[test]
fn manifest_errors_exit_2_with_position() {
    let kp = Kp::new();
    kp.manifest(
        "bad.toml",
        "manifest_version = 1\n[base]\nimage = \"debian\"\nfrobnicate = true\n",
    );
    let out = kp.run(&["build", "bad.toml"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("frobnicate"), "{err}");
    assert!(err.contains(":4:"), "line 4 named: {err}");
    kp.manifest(
        "dash.toml",
        "manifest_version = 1\n[base]\nimage = \"debian\"\n[system]\npackages = [\"-oDebug=1\"]\n",
    );
    assert_eq!(code(&kp.run(&["build", "dash.toml"])), 2);
    assert_eq!(code(&kp.run(&["build", "missing.toml"])), 2);
}

#[test]
fn build_list_inspect_and_env_id_resolution() {
    let kp = Kp::new();
    let id = kp.build_mock("karapace.toml", &["git", "curl"], Some("web"));
    assert_eq!(id.len(), 64);
    let lock = fs::read_to_string(kp.work().join("karapace.lock")).unwrap();
    assert!(lock.starts_with("lock_version = 2"), "{lock}");
    assert!(lock.contains(&id));

    let list = kp.json(&["list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["env_id"], id.as_str());
    assert_eq!(list[0]["state"], "Built");
    let text = kp.ok(&["list"]);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["SHORT_ID", "NAME", "STATE", "ENV_ID"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row, [&id[..12], "web", "built", id.as_str()]);

    for q in [id.as_str(), &id[..12], &id[..5], "web"] {
        assert_eq!(kp.json(&["inspect", q])["env_id"], id.as_str(), "query {q}");
    }
    let text = kp.ok(&["inspect", "web"]);
    assert!(
        text.lines().any(|l| l == format!("env_id:      {id}")),
        "{text}"
    );
    assert!(text.lines().any(|l| l == "state:       built"), "{text}");

    let out = kp.run(&["inspect", "wbe"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("no environment matching 'wbe'"));
    assert!(stderr(&out).contains("Did you mean"), "{}", stderr(&out));
    assert!(stderr(&out).contains("web"));

    // A no-op build returns the same environment.
    let again = kp.json(&["build"]);
    assert_eq!(again["env_id"], id.as_str());
    assert_eq!(again["status"], "built");
}

#[test]
fn ambiguous_prefix_is_exit_1() {
    let kp = Kp::new();
    let mut ids = Vec::new();
    for i in 0..24 {
        ids.push(kp.build_mock(&format!("m{i}.toml"), &[&format!("pkg{i}")], None));
    }
    // Find two ids sharing a first hex digit (24 ids over 16 digits: guaranteed).
    let (a, _) = ids
        .iter()
        .enumerate()
        .find_map(|(i, a)| {
            ids[i + 1..]
                .iter()
                .find(|b| b[..1] == a[..1])
                .map(|b| (a.clone(), b.clone()))
        })
        .unwrap();
    let out = kp.run(&["inspect", &a[..1]]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("ambiguous env_id prefix"),
        "{}",
        stderr(&out)
    );
}

/// The mock backend runs nothing: `exec` and `enter` print the command they stand for and exit 0
/// (exit statuses and streamed stdio of real sessions: `tests/tests/e2e_debian.rs`).
#[test]
fn mock_sessions_print_the_command_and_succeed() {
    let kp = Kp::new();
    let id = kp.build_mock("karapace.toml", &[], Some("m"));
    let out = kp.run(&["exec", &id, "--", "sh", "-c", "exit 7"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "mock-exec: sh -c exit 7\n");
    let out = kp.run(&["enter", "m", "--", "vim", "-R", "notes"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "mock-enter: vim -R notes\n");
    // A bare `enter` names the login shell a real backend would start.
    let out = kp.run(&["enter", "m"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("mock-enter: /bin/sh -c ") && stdout(&out).contains("bash -l"),
        "{}",
        stdout(&out)
    );
    // Nothing ran, so nothing was recorded: the environment is not left Running.
    assert_eq!(kp.json(&["inspect", "m"])["state"], "Built");
}

#[test]
fn snapshots_commit_diff_restore() {
    let kp = Kp::new();
    let id = kp.build_mock("karapace.toml", &["curl"], Some("snap"));
    assert!(
        kp.ok(&["diff", "snap"]).starts_with("no drift detected"),
        "no drift right after build"
    );
    let d = kp.json(&["diff", "snap"]);
    assert_eq!(d["has_drift"], false);

    // What a session would write lands in the writable layer.
    let upper = kp.upper(&id);
    fs::create_dir_all(upper.join("work")).unwrap();
    fs::write(upper.join("work/file"), "one\n").unwrap();
    let d = kp.json(&["diff", "snap"]);
    assert_eq!(d["has_drift"], true);
    assert!(
        d["added"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "work/file"),
        "{d}"
    );

    let c1 = kp.json(&["commit", "snap"]);
    let hash = c1["snapshot_hash"].as_str().unwrap().to_owned();
    assert_eq!(c1["env_id"], id.as_str());
    let text = kp.ok(&["commit", "snap"]);
    assert_eq!(
        text.trim(),
        format!("committed snapshot {hash} for snap"),
        "commit is idempotent"
    );
    let snaps = kp.json(&["snapshots", "snap"]);
    let list = snaps["snapshots"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["restore_hash"], hash.as_str());
    for key in ["hash", "parent", "restore_hash", "tar_hash"] {
        assert!(list[0][key].is_string(), "{key} in {snaps}");
    }

    fs::write(upper.join("work/file"), "two\n").unwrap();
    fs::write(upper.join("extra"), "x\n").unwrap();
    let r = kp.json(&["restore", "snap", &hash]);
    assert_eq!(r["restored_snapshot"], hash.as_str());
    assert_eq!(
        fs::read_to_string(upper.join("work/file")).unwrap(),
        "one\n"
    );
    assert!(
        !upper.join("extra").exists(),
        "restore removes what came after"
    );

    let out = kp.run(&["restore", "snap", &"0".repeat(64)]);
    assert_eq!(code(&out), 3, "unknown snapshot: {}", stderr(&out));
}

#[test]
fn states_freeze_archive_destroy_rename() {
    let kp = Kp::new();
    let id = kp.build_mock("karapace.toml", &[], Some("st"));
    kp.ok(&["freeze", "st"]);
    assert_eq!(kp.json(&["inspect", "st"])["state"], "Frozen");
    assert_eq!(
        code(&kp.run(&["exec", "st", "--", "true"])),
        1,
        "frozen refuses exec"
    );
    kp.ok(&["commit", "st"]);
    kp.ok(&["archive", "st"]);
    assert_eq!(kp.json(&["inspect", "st"])["state"], "Archived");
    assert_eq!(
        code(&kp.run(&["enter", "st", "--", "true"])),
        1,
        "archived refuses entry"
    );
    let stop = kp.run(&["stop", "st"]);
    assert_eq!(code(&stop), 1);
    assert!(
        stderr(&stop).contains("is not running"),
        "{}",
        stderr(&stop)
    );

    assert_eq!(code(&kp.run(&["rename", "st", "bad name!"])), 3);
    kp.build_mock("other.toml", &["x"], Some("taken"));
    assert_eq!(
        code(&kp.run(&["rename", "st", "taken"])),
        3,
        "duplicate name"
    );
    kp.ok(&["rename", "st", "renamed"]);
    assert_eq!(kp.json(&["inspect", "renamed"])["env_id"], id.as_str());

    kp.ok(&["destroy", "renamed"]);
    assert_eq!(code(&kp.run(&["inspect", &id])), 1);
}

#[test]
fn gc_dry_run_matches_real_run_and_protects_archived() {
    let kp = Kp::new();
    let keep = kp.build_mock("a.toml", &["a"], Some("keep"));
    kp.ok(&["archive", "keep"]);
    let gone = kp.build_mock("b.toml", &["b"], Some("gone"));
    kp.ok(&["commit", "gone"]);
    kp.ok(&["destroy", &gone]);
    let dry = kp.json(&["gc", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    let would = (
        dry["orphaned_envs"].as_array().unwrap().len(),
        dry["orphaned_layers"].as_array().unwrap().len(),
        dry["orphaned_objects"].as_array().unwrap().len(),
    );
    assert!(
        would.1 > 0 || would.2 > 0,
        "destroying an env leaves something to collect: {dry}"
    );
    let real = kp.json(&["gc"]);
    assert_eq!(real["dry_run"], false);
    let removed = (
        usize::try_from(real["removed_envs"].as_u64().unwrap()).unwrap(),
        usize::try_from(real["removed_layers"].as_u64().unwrap()).unwrap(),
        usize::try_from(real["removed_objects"].as_u64().unwrap()).unwrap(),
    );
    assert_eq!(would, removed, "dry run predicts the real run");
    let again = kp.json(&["gc", "--dry-run"]);
    assert!(again["orphaned_layers"].as_array().unwrap().is_empty());
    assert_eq!(kp.json(&["inspect", "keep"])["env_id"], keep.as_str());
    kp.ok(&["verify-store"]);
}

#[test]
fn verify_store_reports_corruption_with_exit_3() {
    let kp = Kp::new();
    kp.build_mock("karapace.toml", &["curl"], None);
    let clean = kp.json(&["verify-store"]);
    assert_eq!(clean["failed"], 0);
    assert!(clean["checked"].as_u64().unwrap() > 0);
    // Corrupt one object.
    let objects = kp.store().join("store/objects");
    let victim = walk_files(&objects).into_iter().next().expect("an object");
    let mut bytes = fs::read(&victim).unwrap();
    bytes.push(b'!');
    fs::write(&victim, bytes).unwrap();
    let out = kp.run(&["verify-store"]);
    assert_eq!(code(&out), 3);
    assert!(stdout(&out).contains("  FAIL "), "{}", stdout(&out));
}

#[test]
fn json_stdout_stays_clean_with_logging() {
    let kp = Kp::new();
    kp.build_mock("karapace.toml", &[], None);
    let out = kp.cmd(&["--trace", "list", "--json"]).output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("stdout is pure JSON");
    let out = kp
        .cmd(&["list", "--json"])
        .env("KARAPACE_LOG", "debug")
        .output()
        .unwrap();
    serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("stdout is pure JSON");
}

#[test]
fn locked_build_in_a_fresh_store_gives_the_same_env_id() {
    let kp = Kp::new();
    let id = kp.build_mock("karapace.toml", &["curl", "git"], None);
    let lock_before = fs::read(kp.work().join("karapace.lock")).unwrap();
    let fresh = kp.dir.path().join("fresh-store");
    let out = std::process::Command::new(common::BIN)
        .arg("--store")
        .arg(&fresh)
        .args(["build", "--locked", "--json"])
        .current_dir(kp.work())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["env_id"], id.as_str());
    assert_eq!(
        fs::read(kp.work().join("karapace.lock")).unwrap(),
        lock_before,
        "--locked never rewrites the lock"
    );
    // A lock that no longer matches the manifest fails --locked with exit 1.
    kp.manifest("karapace.toml", "manifest_version = 1\n[base]\nimage = \"debian\"\n[system]\npackages = [\"vim\"]\n[runtime]\nbackend = \"mock\"\n");
    assert_eq!(code(&kp.run(&["build", "--locked"])), 1);
    fs::remove_file(kp.work().join("karapace.lock")).unwrap();
    assert_eq!(
        code(&kp.run(&["build", "--locked"])),
        1,
        "missing lock under --locked"
    );
}

#[test]
fn rebuild_keeps_the_name_and_replaces_the_env() {
    let kp = Kp::new();
    let old = kp.build_mock("karapace.toml", &["curl"], Some("rb"));
    kp.manifest("karapace.toml", "manifest_version = 1\n[base]\nimage = \"debian/bookworm\"\n[system]\npackages = [\"curl\", \"git\"]\n[runtime]\nbackend = \"mock\"\n");
    let v = kp.json(&["rebuild"]);
    assert_eq!(v["status"], "rebuilt");
    assert_ne!(v["env_id"], old.as_str());
    assert_eq!(v["name"], "rb");
    assert_eq!(code(&kp.run(&["inspect", &old])), 1, "old env destroyed");
    assert_eq!(kp.json(&["list"]).as_array().unwrap().len(), 1);
}

#[test]
fn running_sessions_stop_and_block_destroy() {
    let kp = Kp::new();
    let id = kp.build_mock("karapace.toml", &[], Some("run"));
    let session = kp.stand_in_session(&id);
    assert_eq!(kp.json(&["inspect", "run"])["state"], "Running");
    assert_eq!(
        code(&kp.run(&["destroy", "run"])),
        1,
        "running env is not destroyed"
    );
    // Another environment is not blocked by the open session.
    kp.build_mock("other.toml", &["x"], Some("free"));
    kp.ok(&["exec", "free", "--", "true"]);
    kp.ok(&["stop", "run"]);
    let status = session.wait();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(15),
        "stop sends SIGTERM first"
    );
    assert_eq!(kp.json(&["inspect", &id])["state"], "Built");
    kp.ok(&["destroy", "run"]);
}

#[test]
fn tui_json_and_unavailable_features_fail_clearly() {
    let kp = Kp::new();
    let out = kp.run(&["tui", "--json"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("JSON output is not supported for 'tui'"));
    let out = kp
        .cmd(&["pull", "x@latest"])
        .env("HOME", kp.dir.path())
        .env_remove("KARAPACE_REMOTE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "pull never pretends to succeed");
    assert!(
        stderr(&out).contains("no remote configured: pass --remote <URL>"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn push_and_pull_refuse_bad_references_and_urls_before_any_request() {
    let kp = Kp::new();
    let id = kp.build_mock("karapace.toml", &["curl"], Some("web"));
    for args in [
        vec![
            "push",
            id.as_str(),
            "--tag",
            "Web@v1",
            "--remote",
            "http://127.0.0.1:9",
        ],
        vec![
            "push",
            id.as_str(),
            "--tag",
            "web",
            "--remote",
            "http://127.0.0.1:9",
        ],
        vec![
            "push",
            id.as_str(),
            "--tag",
            "web@v1",
            "--remote",
            "ftp://127.0.0.1:9",
        ],
        vec!["pull", "../x@y", "--remote", "http://127.0.0.1:9"],
        vec![
            "pull",
            "web@v1",
            "--remote",
            "https://user:secret@127.0.0.1:9",
        ],
    ] {
        let out = kp.run(&args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("secret"), "{}", stderr(&out));
    }
    // Nothing listens on port 9: a clear connection error naming the server, exit 1.
    let out = kp.run(&["push", &id, "--remote", "http://127.0.0.1:9"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("127.0.0.1:9"), "{}", stderr(&out));
}

#[test]
fn completions_and_man_pages() {
    let kp = Kp::new();
    for shell in ["bash", "elvish", "fish", "powershell", "zsh"] {
        // The script asks karapace at each <TAB> (what it offers: tests/completion.rs).
        let out = kp.ok(&["completions", shell]);
        assert!(
            out.contains("COMPLETE") && out.contains("karapace"),
            "{shell} completion calls back into karapace"
        );
    }
    kp.ok(&["man-pages", "pages"]);
    let pages = fs::read_dir(kp.work().join("pages")).unwrap().count();
    // The standard tool's 26 subcommands, our `du` and `plugin`, and karapace.1.
    assert_eq!(pages, 29, "karapace.1 plus one page per subcommand");
    assert!(kp.work().join("pages/karapace-plugin.1").is_file());
}

#[test]
fn doctor_reports_checks_in_contract_order() {
    let kp = Kp::new();
    let out = kp.cmd(&["doctor", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        &names[..8],
        [
            "runtime_prereqs",
            "store_exists",
            "store_version",
            "store_integrity",
            "wal_clean",
            "store_lock",
            "environments",
            "disk_space"
        ]
    );
    assert_eq!(v["healthy"].as_bool().unwrap(), out.status.success());
}

#[test]
fn doctor_says_whether_files_keep_their_owners() {
    let kp = Kp::new();
    let out = kp.cmd(&["doctor", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "id-maps")
        .cloned()
        .unwrap_or_else(|| panic!("no id-maps check: {v:#}"));
    let message = check["message"].as_str().unwrap_or_default();
    if nix::unistd::geteuid().is_root() {
        assert_eq!(check["status"], "pass", "{check:#}");
        assert!(message.contains("every id to itself"), "{message}");
    } else if check["status"] == "pass" {
        assert!(message.contains("subordinate"), "{message}");
    } else {
        assert_eq!(check["status"], "warn", "{check:#}");
        assert!(message.contains("usermod --add-subuids"), "{message}");
    }
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `karapace` runs `exec`/`enter` itself and hands everything else to `karapace-cli`: both must
/// answer every run line identically (output, errors, exit codes).
#[test]
fn the_fast_front_and_the_complete_cli_agree() {
    const FULL: &str = env!("CARGO_BIN_EXE_karapace-cli");
    let kp = Kp::new();
    let id = kp.build_mock("karapace.toml", &[], None);
    let store = kp.store();
    let store = store.to_str().unwrap();
    let store_eq = format!("--store={store}");
    let lines: Vec<Vec<&str>> = vec![
        vec![
            "--store",
            store,
            "exec",
            &id,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 7",
        ],
        vec![
            "exec",
            &id,
            &store_eq,
            "--json",
            "--",
            "sh",
            "-c",
            "echo $KARAPACE_ENV",
        ],
        vec!["--store", store, "exec", "no-such-env", "--", "true"],
        vec!["--store", store, "enter", "no-such-env"],
        vec!["--store", store, "enter", "no-such-env", "--", "true"],
        vec!["--store=", "exec", &id, "--", "true"],
        vec!["--store", store, "exec", &id],
        vec!["--store", store, "exec", &id, "true"],
        vec![
            "--store", store, "exec", &id, "--json", "--json", "--", "true",
        ],
        vec!["--store", store, "exec", "--help"],
    ];
    for args in &lines {
        let run = |bin: &str| {
            Command::new(bin)
                .args(args)
                .current_dir(kp.work())
                .env_remove("KARAPACE_LOG")
                .stdin(Stdio::null())
                .output()
                .unwrap()
        };
        let (front, full) = (run(BIN), run(FULL));
        assert_eq!(code(&front), code(&full), "{args:?}");
        assert_eq!(stdout(&front), stdout(&full), "{args:?}");
        assert_eq!(stderr(&front), stderr(&full), "{args:?}");
    }
    // Delegated lines keep `karapace` as the program name in usage text.
    let out = Command::new(BIN).args(["exec", "x"]).output().unwrap();
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("Usage: karapace exec"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missing_complete_cli_is_a_clear_error() {
    let out = Command::new(BIN)
        .arg("list")
        .env("KARAPACE_CLI", "/nonexistent/karapace-cli")
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("cannot run /nonexistent/karapace-cli"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn everyday_errors_say_what_to_do() {
    let kp = Kp::new();
    kp.build_mock("karapace.toml", &[], Some("py"));
    // A missing `--`: clap's error, then what to type.
    let out = kp.run(&["exec", "py", "ls"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("hint: put `--` between the environment and the command"),
        "{}",
        stderr(&out)
    );
    // An unknown environment names the store searched, from both binaries' paths.
    for args in [&["inspect", "nope"][..], &["exec", "nope", "--", "true"]] {
        let out = kp.run(args);
        assert_eq!(code(&out), 1);
        assert!(
            stderr(&out).contains(&format!(
                "note: searched the store at {}",
                kp.store().display()
            )),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // --workdir must be absolute.
    let out = kp.run(&["exec", "-w", "rel", "py", "--", "true"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

#[test]
fn snapshots_take_labels_and_restore_takes_prefixes() {
    let kp = Kp::new();
    let id = kp.build_mock("karapace.toml", &[], Some("lab"));
    let upper = kp.store().join("env").join(&id).join("upper");
    let mut hashes = Vec::new();
    // Commit distinct contents until two snapshots share a first hex digit.
    let shared = loop {
        let n = hashes.len();
        fs::write(upper.join(format!("f{n}")), format!("{n}\n")).unwrap();
        let v = kp.json(&["commit", "lab", "-m", &format!("step {n}")]);
        let hash = v["snapshot_hash"].as_str().unwrap().to_owned();
        if let Some(other) = hashes.iter().find(|h: &&String| h[..1] == hash[..1]) {
            break (other.clone(), hash);
        }
        hashes.push(hash);
    };
    let snaps = kp.json(&["snapshots", "lab"]);
    let list = snaps["snapshots"].as_array().unwrap();
    assert!(list.iter().all(|s| s["created_at"].is_string()), "{snaps}");
    let first = list
        .iter()
        .find(|s| s["restore_hash"] == hashes[0].as_str())
        .unwrap();
    assert_eq!(first["label"], "step 0");
    // The text output stays the standard tool's (no label).
    assert!(!kp.ok(&["snapshots", "lab"]).contains("step 0"));

    // Relabel: the same content committed again with another message.
    let (a, b) = &shared;
    let unique = hashes
        .iter()
        .find(|h| h[..1] != a[..1])
        .cloned()
        .unwrap_or_else(|| a.clone());
    let prefix = &unique[..if unique[..1] == a[..1] { 64 } else { 6 }];
    let out = kp.ok(&["restore", "lab", prefix]);
    assert_eq!(out, format!("restored lab from snapshot {unique}\n"));
    let v = kp.json(&["restore", "lab", prefix]);
    assert_eq!(v["restored_snapshot"], unique.as_str());
    let again = kp.json(&["commit", "lab", "--message", "relabelled"]);
    assert_eq!(again["snapshot_hash"], unique.as_str());
    let snaps = kp.json(&["snapshots", "lab"]);
    let entry = snaps["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["restore_hash"] == unique.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["label"], "relabelled");

    // An ambiguous prefix is an error listing the candidates; an unknown one is exit 3.
    let out = kp.run(&["restore", "lab", &a[..1]]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("ambiguous snapshot prefix"), "{err}");
    assert!(
        err.contains(a.as_str()) && err.contains(b.as_str()),
        "{err}"
    );
    let unknown = if a.starts_with('z') { "y" } else { "zz" };
    assert_eq!(code(&kp.run(&["restore", "lab", unknown])), 3);
    // Labels with control characters are refused before anything is written.
    let out = kp.run(&["commit", "lab", "-m", "bad\u{1b}[2J"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

#[test]
fn rebuild_never_discards_what_the_user_made() {
    let kp = Kp::new();
    let old = kp.build_mock("karapace.toml", &["curl"], Some("work"));
    // The user made something by hand in the environment, and a snapshot.
    let upper = kp.store().join("env").join(&old).join("upper");
    fs::write(upper.join("notes.txt"), "mine\n").unwrap();
    let snap = kp.json(&["commit", "work", "-m", "before the rebuild"])["snapshot_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    kp.manifest("karapace.toml", "manifest_version = 1\n[base]\nimage = \"debian/bookworm\"\n[system]\npackages = [\"curl\", \"git\"]\n[runtime]\nbackend = \"mock\"\n");
    let out = kp.run(&["rebuild"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Stdout is the standard tool's; stderr says what was kept and how to reach it.
    let new: serde_json::Value = kp.json(&["inspect", "work"]);
    let new_id = new["env_id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, old);
    assert_eq!(
        stdout(&out),
        format!(
            "rebuilt environment 'work' ({})\nenv_id: {new_id}\n",
            &new_id[..12]
        )
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!("the previous environment {} was kept", &old[..12]))
            && err.contains("1 changed path(s)")
            && err.contains("1 snapshot(s)"),
        "{err}"
    );
    // The old environment is still there, unnamed, with its file and its snapshot.
    let kept = kp.json(&["inspect", &old]);
    assert_eq!(kept["name"], serde_json::Value::Null);
    assert_eq!(
        fs::read_to_string(upper.join("notes.txt")).unwrap(),
        "mine\n"
    );
    kp.ok(&["restore", &old, &snap[..8]]);
    // Once it is empty and has no snapshot, a rebuild replaces it as before.
    kp.ok(&["destroy", &old]);
    kp.manifest("karapace.toml", "manifest_version = 1\n[base]\nimage = \"debian/bookworm\"\n[system]\npackages = [\"git\"]\n[runtime]\nbackend = \"mock\"\n");
    let out = kp.run(&["rebuild"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stderr(&out).contains("was kept"), "{}", stderr(&out));
    assert_eq!(code(&kp.run(&["inspect", &new_id])), 1, "replaced");
}

#[test]
fn disk_usage_is_shown_and_gc_says_what_it_freed() {
    let kp = Kp::new();
    let a = kp.build_mock("a.toml", &["shared", "a"], Some("a"));
    let b = kp.build_mock("b.toml", &["shared", "b"], Some("b"));
    let upper = kp.store().join("env").join(&a).join("upper");
    fs::write(upper.join("big"), vec![1u8; 3 << 20]).unwrap();
    let du = kp.json(&["du"]);
    let envs = du["environments"].as_array().unwrap();
    assert_eq!(envs.len(), 2);
    let ua = envs.iter().find(|e| e["env_id"] == a.as_str()).unwrap();
    assert!(ua["writable_bytes"].as_u64().unwrap() >= 3 << 20, "{du}");
    // Both use the same base layer: shared, and counted once.
    assert!(
        ua["layers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["kind"] == "base" && l["shared_by"] == 2),
        "{du}"
    );
    assert!(du["shared_bytes"].as_u64().unwrap() > 0, "{du}");
    for key in [
        "tree_cache_bytes",
        "image_cache_bytes",
        "reclaimable_bytes",
        "store_bytes",
    ] {
        assert!(du[key].is_u64(), "{key}: {du}");
    }
    let text = kp.ok(&["du"]);
    assert!(text.starts_with("SHORT_ID"), "{text}");
    assert!(text.contains("reclaimable by gc"), "{text}");
    // inspect and list carry the sizes too (ours, after the standard keys and lines).
    let inspect = kp.ok(&["inspect", "a"]);
    assert!(
        inspect
            .lines()
            .any(|l| l.starts_with("writable:    3.0 MiB")),
        "{inspect}"
    );
    let list = kp.json(&["list"]);
    assert!(list[0]["usage"]["writable_bytes"].is_u64(), "{list}");
    // destroy says gc frees the space; gc says how much, on its second line.
    let out = kp.run(&["destroy", &b]);
    assert!(stderr(&out).contains("karapace gc"), "{}", stderr(&out));
    let dry = kp.json(&["gc", "--dry-run"]);
    let would = dry["freed_bytes"].as_u64().unwrap();
    assert!(would > 0, "{dry}");
    let text = kp.ok(&["gc"]);
    let second = text.lines().nth(1).unwrap_or_default().to_owned();
    assert!(
        second.starts_with("gc: freed ") && second.ends_with(&format!("({would} bytes)")),
        "{text}"
    );
}

#[test]
fn gc_images_prunes_the_images_no_environment_uses() {
    let kp = Kp::new();
    let cache = kp.dir.path().join("cache");
    let images = cache.join("karapace/images");
    let blobs = images.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    fs::create_dir_all(images.join("base-layers")).unwrap();
    let unused = "a".repeat(64);
    fs::write(blobs.join(&unused), vec![0u8; 1 << 20]).unwrap();
    fs::write(
        images.join("base-layers").join(format!("{unused}-owners")),
        "x",
    )
    .unwrap();
    fs::write(
        images.join("index.json"),
        format!("{{\"version\":1,\"urls\":{{\"http://127.0.0.1/x.tar\":{{\"sha256\":\"{unused}\",\"size\":1}}}},\"aliases\":{{}}}}"),
    )
    .unwrap();
    kp.build_mock("karapace.toml", &[], None);
    let run = |args: &[&str]| kp.cmd(args).env("XDG_CACHE_HOME", &cache).output().unwrap();
    let dry = run(&["gc", "--images", "--dry-run", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(v["removed_images"], serde_json::json!([unused]), "{v}");
    assert!(blobs.join(&unused).exists(), "a dry run removes nothing");
    let out = run(&["gc", "--images"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("removed 1 cached images"),
        "{}",
        stdout(&out)
    );
    assert!(!blobs.join(&unused).exists());
    assert!(
        !images
            .join("base-layers")
            .join(format!("{unused}-owners"))
            .exists()
    );
    let index = fs::read_to_string(images.join("index.json")).unwrap();
    assert!(!index.contains(&unused), "{index}");
}

#[test]
fn mounts_are_checked_at_build_and_a_project_may_mount_its_own_directory() {
    let kp = Kp::new();
    let project = kp.work().join("proj");
    fs::create_dir_all(project.join("data")).unwrap();
    // The test's work dir lies outside every default prefix (under /tmp): its own directory,
    // which the user owns, is enough for `./data`.
    let body = |mount: &str| {
        format!(
            "manifest_version = 1\n[base]\nimage = \"debian/bookworm\"\n[mounts]\nw = \"{mount}\"\n[runtime]\nbackend = \"mock\"\n"
        )
    };
    fs::write(project.join("karapace.toml"), body("./data:/data")).unwrap();
    let out = kp
        .cmd(&["build", "proj/karapace.toml"])
        .env("HOME", kp.dir.path().join("home"))
        .output()
        .unwrap();
    if nix::unistd::geteuid().is_root() {
        // For root "owned by me" says nothing: its projects get no implicit prefix.
        assert_eq!(code(&out), 1, "{}", stderr(&out));
    } else {
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("/data (read-write)"),
            "{}",
            stderr(&out)
        );
    }
    // Outside it: the build fails at once, naming the prefixes and the line that allows it.
    fs::write(project.join("karapace.toml"), body("/etc:/host-etc")).unwrap();
    let out = kp
        .cmd(&["build", "proj/karapace.toml"])
        .env("HOME", kp.dir.path().join("home"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("outside the allowed mount prefixes"), "{err}");
    assert!(err.contains("have an administrator add \"/etc\""), "{err}");
    // A source that does not exist yet does not stop the build.
    fs::write(project.join("karapace.toml"), body("~/projects:/workspace")).unwrap();
    let out = kp
        .cmd(&["build", "proj/karapace.toml"])
        .env("HOME", kp.dir.path().join("home"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn a_lock_from_another_directory_never_hands_an_environment_over() {
    let kp = Kp::new();
    let trusted = kp.work().join("trusted");
    let evil = kp.work().join("evil");
    fs::create_dir_all(&trusted).unwrap();
    fs::create_dir_all(&evil).unwrap();
    let manifest = |pkgs: &str| {
        format!(
            "manifest_version = 1\n[base]\nimage = \"debian/bookworm\"\n[system]\npackages = [{pkgs}]\n[runtime]\nbackend = \"mock\"\n"
        )
    };
    fs::write(trusted.join("karapace.toml"), manifest("\"curl\"")).unwrap();
    let work = kp.json(&["build", "trusted/karapace.toml", "--name", "work"])["env_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A hostile checkout ships the trusted environment's lock (env_ids are public).
    fs::copy(trusted.join("karapace.lock"), evil.join("karapace.lock")).unwrap();
    fs::write(evil.join("karapace.toml"), manifest("\"evil\"")).unwrap();
    let out = kp.run(&["rebuild", "evil/karapace.toml"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("it was left as it is"),
        "{}",
        stderr(&out)
    );
    assert_eq!(kp.json(&["inspect", "work"])["env_id"], work.as_str());
    assert_eq!(kp.json(&["list"]).as_array().unwrap().len(), 2);
}

#[test]
fn a_mock_environment_never_runs_anything_and_says_so() {
    let kp = Kp::new();
    let out = kp.cmd(&["build", "--name", "m"]).output().unwrap();
    assert_eq!(code(&out), 2, "no manifest yet");
    kp.build_mock("karapace.toml", &[], Some("m"));
    let marker = kp.dir.path().join("ran");
    let marker = marker.to_str().unwrap();
    for (args, line) in [
        (["exec", "m", "--", "touch", marker], "mock-exec"),
        (["enter", "m", "--", "touch", marker], "mock-enter"),
    ] {
        let out = kp.run(&args);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), format!("{line}: touch {marker}\n"));
        assert!(
            !kp.dir.path().join("ran").exists(),
            "{args:?} ran a command on the host"
        );
    }
    let out = kp.cmd(&["build"]).output().unwrap();
    assert!(
        stderr(&out).contains(
            "warning: this environment uses the test-only mock backend: it isolates nothing and runs nothing"
        ),
        "{}",
        stderr(&out)
    );
    let doctor = kp.json(&["doctor"]);
    let check = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "backends")
        .unwrap_or_else(|| panic!("no backends check: {doctor}"))
        .clone();
    assert_eq!(check["status"], "warn", "{check}");
    assert!(
        check["message"]
            .as_str()
            .unwrap()
            .contains("environment m uses the test-only mock backend"),
        "{check}"
    );
}

/// A mock manifest gets the standard tool's `env_id`: its base image digest is
/// `blake3("mock-image:" + image)`.
#[test]
fn a_mock_manifest_gets_the_standard_tools_env_id() {
    let kp = Kp::new();
    // Computed outside karapace with b3sum:
    //   d=$(printf %s 'mock-image:debian/bookworm' | b3sum --no-names)
    //   printf %s "base_digest:${d}backend:mock" | b3sum --no-names
    //   printf %s "base_digest:${d}pkg:curl@0.0.0-mockbackend:mock" | b3sum --no-names
    assert_eq!(
        kp.build_mock("bare.toml", &[], None),
        "15d687dc3af5681024dccb93f094aef5c6312c62c850350c52664b6fec4ad1b8"
    );
    assert_eq!(
        kp.build_mock("curl.toml", &["curl"], None),
        "09989e7b208165293853c25b8970a6de95d7fc22fe364c8293c78ff64ed5cd56"
    );
    let lock = fs::read_to_string(kp.work().join("karapace.lock")).unwrap();
    assert!(
        lock.contains(
            "base_image_digest = \"9fcb8924e0dcbde6e054af462b0289284608ca5eb84ea16b4c53dd3cb0fe423a\""
        ),
        "{lock}"
    );
}

#[test]
fn a_usage_error_with_non_utf8_arguments_is_exit_2_not_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    let kp = Kp::new();
    let bad = std::ffi::OsStr::from_bytes(b"\xff\xfe");
    for args in [
        vec![
            std::ffi::OsStr::new("inspect"),
            std::ffi::OsStr::new("--"),
            bad,
        ],
        vec![std::ffi::OsStr::new("exec"), std::ffi::OsStr::new("x"), bad],
    ] {
        let out = Command::new(BIN)
            .arg("--store")
            .arg(kp.store())
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
}

/// A hostile manifest that picks the mock backend and names host paths as packages: the build
/// refuses the names (exit 2) and writes nothing outside the store, also with a lock that
/// pins them.
#[test]
fn mock_package_names_cannot_name_host_paths() {
    let kp = Kp::new();
    let victim = kp.dir.path().join("victim");
    std::fs::write(&victim, "mine\n").unwrap();
    for name in [
        victim.to_str().unwrap(),
        "../../../../../../victim-x",
        "a/b",
    ] {
        kp.manifest(
            "karapace.toml",
            &format!(
                "manifest_version = 1\n[base]\nimage = \"rolling\"\n[system]\npackages = [\"{name}\"]\n[runtime]\nbackend = \"mock\"\n"
            ),
        );
        let out = kp.run(&["build"]);
        assert_eq!(code(&out), 2, "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("not valid for the mock backend"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine\n");
}

/// One unreadable metadata file (a disk error, a half-written file of another program) hides only
/// its own environment: the others are listed and run, the bad one is named with the way out,
/// `destroy <env_id>` removes it, and `gc` removes nothing until then (it cannot know what the
/// unreadable environment uses).
#[test]
fn one_unreadable_metadata_file_blocks_only_its_own_environment() {
    let kp = Kp::new();
    let good = kp.build_mock("good.toml", &["git"], Some("good"));
    // Named like a prefix of the readable one's id: once its file is unreadable, that name
    // must not quietly resolve to the readable environment.
    let bad = kp.build_mock("bad.toml", &["curl"], Some(&good[..4]));
    let file = kp.store().join("store/metadata").join(&bad);
    let trees = kp.store().join("env").join(&bad);
    assert!(trees.exists(), "{}", trees.display());
    fs::write(&file, "{\"garbage").expect("corrupt the metadata");

    // list: the readable one on stdout, the bad one on stderr, exit 0.
    let out = kp.run(&["list"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains(&good) && !stdout(&out).contains(&bad));
    assert!(
        stderr(&out).contains(&format!("karapace destroy {bad}")),
        "{}",
        stderr(&out)
    );
    let listed = kp.json(&["list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    // Commands about the readable one work, by name and by id.
    kp.ok(&["inspect", "good"]);
    kp.ok(&["exec", &good[..12], "--", "true"]);

    // A query that may mean the unreadable one says so (exit 3), with the fix.
    for query in [&bad[..12], &bad[..]] {
        let out = kp.run(&["exec", query, "--", "true"]);
        assert_eq!(code(&out), 3, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("corrupt metadata")
                && stderr(&out).contains(&format!("karapace destroy {bad}")),
            "{}",
            stderr(&out)
        );
    }
    // A name nothing readable has, or a prefix: the unreadable file may be the one meant (here
    // the prefix is the unreadable environment's name).
    for query in ["no-such-name", &good[..4]] {
        let out = kp.run(&["destroy", query]);
        assert_eq!(code(&out), 3, "{query}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("corrupt metadata"),
            "{}",
            stderr(&out)
        );
    }
    kp.ok(&["inspect", &good]);
    // A file that cannot be read at all (here a directory) is named, not fatal.
    let unreadable = kp.store().join("store/metadata").join("a".repeat(64));
    fs::create_dir(&unreadable).expect("mkdir");
    let out = kp.run(&["list"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains(&"a".repeat(64)), "{}", stderr(&out));
    fs::remove_dir(&unreadable).expect("rmdir");

    // gc removes nothing while it cannot know what the unreadable environment uses.
    let out = kp.run(&["gc"]);
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).contains("gc removes nothing"),
        "{}",
        stderr(&out)
    );

    // destroy needs the full env_id of an unreadable environment, then removes it.
    let out = kp.run(&["destroy", &bad[..12]]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(file.exists());
    let gone = kp.json(&["destroy", &bad]);
    assert_eq!(gone["env_id"], bad.as_str());
    assert!(!file.exists());
    assert!(!trees.exists(), "{}", trees.display());
    let out = kp.run(&["list"]);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    kp.ok(&["gc"]);
    kp.ok(&["verify-store"]);
    kp.ok(&["exec", "good", "--", "true"]);
}

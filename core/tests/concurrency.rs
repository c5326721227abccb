//! Eight concurrent `karapace` processes mutating one store must never corrupt it.

mod common;

use std::process::{Command, Stdio};

use common::{BIN, Kp, stderr};

#[test]
fn eight_concurrent_writers() {
    let kp = Kp::new();
    // Seed the store so everyone contends on the same files from the start.
    kp.build_mock("seed.toml", &["seed"], Some("seed"));
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let store = kp.store();
            let work = kp.work();
            let manifest = format!(
                "manifest_version = 1\n[base]\nimage = \"debian/bookworm\"\n[system]\npackages = [\"p{i}\", \"shared\"]\n[runtime]\nbackend = \"mock\"\n"
            );
            let dir = work.join(format!("w{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("karapace.toml"), manifest).unwrap();
            std::thread::spawn(move || {
                let run = |args: &[&str]| {
                    let out = Command::new(BIN)
                        .arg("--store")
                        .arg(&store)
                        .args(args)
                        .current_dir(&dir)
                        .stdin(Stdio::null())
                        .output()
                        .unwrap();
                    assert!(out.status.success(), "worker {i} {args:?}: {}", stderr(&out));
                    String::from_utf8_lossy(&out.stdout).into_owned()
                };
                let name = format!("w{i}");
                for round in 0..4 {
                    let built: serde_json::Value =
                        serde_json::from_str(&run(&["build", "--name", &name, "--json"])).unwrap();
                    let id = built["env_id"].as_str().unwrap().to_owned();
                    // The mock runs nothing: the session's write is the test's own.
                    let printed = run(&["exec", &name, "--", "touch", "r"]);
                    assert_eq!(printed, "mock-exec: touch r\n");
                    std::fs::write(
                        common::upper_of(&store, &id).join(format!("r{round}")),
                        format!("{round}\n"),
                    )
                    .unwrap();
                    let snap = run(&["commit", &name, "--json"]);
                    let v: serde_json::Value = serde_json::from_str(&snap).unwrap();
                    let hash = v["snapshot_hash"].as_str().unwrap().to_owned();
                    run(&["rename", &name, &format!("{name}-tmp")]);
                    run(&["rename", &format!("{name}-tmp"), &name]);
                    run(&["restore", &name, &hash]);
                    run(&["gc"]);
                    run(&["list"]);
                    if round == 3 {
                        run(&["destroy", &name]);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker panicked");
    }
    let out = kp.run(&["verify-store"]);
    assert!(
        out.status.success(),
        "store corrupt after concurrent writers: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let envs = kp.json(&["list"]);
    let names: Vec<&str> = envs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["seed"], "only the seed remains");
    kp.ok(&["gc"]);
    kp.ok(&["verify-store"]);
}

/// Two builds of different manifests into one fresh store, started together (a CI job's
/// first step): both succeed, every time, and the store they made is whole.
#[test]
fn two_commands_creating_one_store_at_once_both_succeed() {
    for round in 0..12 {
        let kp = Kp::new();
        let dirs: Vec<std::path::PathBuf> = (0..3)
            .map(|i| {
                let dir = kp.work().join(format!("m{i}"));
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(
                    dir.join("karapace.toml"),
                    format!(
                        "manifest_version = 1\n[base]\nimage = \"debian/bookworm\"\n[system]\npackages = [\"p{i}\"]\n[runtime]\nbackend = \"mock\"\n"
                    ),
                )
                .unwrap();
                dir
            })
            .collect();
        let children: Vec<_> = dirs
            .iter()
            .map(|dir| {
                Command::new(BIN)
                    .arg("--store")
                    .arg(kp.store())
                    .arg("build")
                    .current_dir(dir)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(kp.json(&["list"]).as_array().map(Vec::len), Some(3));
        kp.ok(&["verify-store"]);
    }
}

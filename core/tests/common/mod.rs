//! Test support: run the real `karapace` binary against a private store and work directory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_karapace");

/// A private store and working directory for one test.
pub struct Kp {
    pub dir: tempfile::TempDir,
}

impl Kp {
    pub fn new() -> Kp {
        Kp {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn work(&self) -> PathBuf {
        let w = self.dir.path().join("work");
        std::fs::create_dir_all(&w).expect("work dir");
        w
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        // --store first: anything after `--` belongs to the inner command.
        c.arg("--store")
            .arg(self.store())
            .args(args)
            .current_dir(self.work())
            .env_remove("KARAPACE_LOG")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("spawn karapace")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "karapace {args:?} failed: {}\n{}",
            code(&out),
            stderr(&out)
        );
        String::from_utf8(out.stdout).expect("utf8 stdout")
    }

    /// Runs with --json and parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let text = self.ok(&all);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("bad JSON from {args:?}: {e}\n{text}"))
    }

    /// Writes a manifest into the work dir and returns its path.
    pub fn manifest(&self, file: &str, body: &str) -> PathBuf {
        let p = self.work().join(file);
        std::fs::write(&p, body).expect("write manifest");
        p
    }

    /// Builds a mock environment with `packages` and returns its `env_id`.
    pub fn build_mock(&self, file: &str, packages: &[&str], name: Option<&str>) -> String {
        let pkgs: Vec<String> = packages.iter().map(|p| format!("\"{p}\"")).collect();
        self.manifest(
            file,
            &format!(
                "manifest_version = 1\n[base]\nimage = \"debian/bookworm\"\n[system]\npackages = [{}]\n[runtime]\nbackend = \"mock\"\n",
                pkgs.join(", ")
            ),
        );
        let mut args = vec!["build", file];
        if let Some(n) = name {
            args.extend(["--name", n]);
        }
        let v = self.json(&args);
        v["env_id"].as_str().expect("env_id").to_owned()
    }

    pub fn upper(&self, env_id: &str) -> PathBuf {
        find_upper(&self.store(), env_id)
    }
}

/// The writable layer of an environment: asked from `karapace exec -- pwd` (mock runs there).
pub fn find_upper(store: &Path, env_id: &str) -> PathBuf {
    let out = Command::new(BIN)
        .arg("--store")
        .arg(store)
        .args(["exec", env_id, "--", "pwd"])
        .output()
        .expect("spawn");
    assert!(out.status.success(), "{}", stderr(&out));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

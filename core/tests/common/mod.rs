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

    /// The writable layer of an environment, where a session's writes land (the mock backend
    /// runs nothing: tests write there themselves).
    pub fn upper(&self, env_id: &str) -> PathBuf {
        upper_of(&self.store(), env_id)
    }

    /// Makes `env_id` Running with a stand-in session (see [`StandIn`]).
    pub fn stand_in_session(&self, env_id: &str) -> StandIn {
        StandIn::start(&self.store(), env_id)
    }
}

/// The writable layer of an environment of the store at `store`.
pub fn upper_of(store: &Path, env_id: &str) -> PathBuf {
    store.join("env").join(env_id).join("upper")
}

/// A session for tests of what a Running environment does (stop, destroy refused, state
/// changes): a `sleep` of the test's own, recorded in the store as a backend records the process
/// of a session. The mock backend runs nothing, so its environments are never Running otherwise.
pub struct StandIn {
    pub child: std::process::Child,
    record: Option<karapace_store::SessionGuard>,
}

impl StandIn {
    pub fn start(store: &Path, env_id: &str) -> StandIn {
        let child = Command::new("sleep")
            .arg("120")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        let store = karapace_store::Store::open(store).expect("open store");
        let record = store
            .begin_session(env_id, child.id(), None)
            .expect("record the session");
        StandIn {
            child,
            record: Some(record),
        }
    }

    /// Waits for the process (after `karapace stop`, say) and removes its record.
    pub fn wait(mut self) -> std::process::ExitStatus {
        let status = self.child.wait().expect("wait for the stand-in");
        self.record.take();
        status
    }
}

impl StandIn {
    /// Kills the process and leaves its record behind, as a session killed with no chance to
    /// clean up does.
    pub fn kill_leaving_record(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(mut record) = self.record.take() {
            record.keep_record();
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if self.record.take().is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
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

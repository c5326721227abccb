//! A private directory per test: store, image cache and project directory.
//!
//! Kept (and its path printed) when the test fails, so the store and logs can be inspected.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// `<tmp>/karapace-<label>-XXXXXX/{store,cache,project}`.
pub struct TestDir {
    dir: Option<TempDir>,
    path: PathBuf,
}

impl TestDir {
    pub fn new(label: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("karapace-{label}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let path = dir.path().to_path_buf();
        for sub in ["cache", "project"] {
            std::fs::create_dir_all(path.join(sub))
                .unwrap_or_else(|e| panic!("cannot create {}/{sub}: {e}", path.display()));
        }
        TestDir {
            dir: Some(dir),
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Store root (not created: `build` must create it).
    pub fn store(&self) -> PathBuf {
        self.path.join("store")
    }

    /// `XDG_CACHE_HOME` for karapace (its image cache is `<cache>/karapace/images`).
    pub fn cache(&self) -> PathBuf {
        self.path.join("cache")
    }

    /// Where manifests and lock files go.
    pub fn project(&self) -> PathBuf {
        self.path.join("project")
    }

    /// Writes `<project>/<name>` and returns its path.
    pub fn write_project_file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.project().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        if std::thread::panicking() || std::env::var_os("KARAPACE_TEST_KEEP").is_some() {
            let kept = dir.keep();
            eprintln!("kept test directory for inspection: {}", kept.display());
            return;
        }
        let path = dir.keep();
        // Trees holding files of the user's subordinate ids (a rootless run with a range): only
        // the store can remove them, through its helper. Empty the store with its own commands
        // *before* anything else is removed: a plain removal that fails half-way has already
        // taken the store's metadata, and the store's commands can no longer open it then, so
        // every such run used to leave its trees behind in /tmp.
        if !nix::unistd::geteuid().is_root() {
            empty_store(&path.join("store"), &path.join("cache"));
        }
        // Overlayfs leaves `work/work` with mode 000, and read-only layer trees may lack write
        // bits: open directories up, then remove. A leftover temp directory must not fail a
        // test (`scripts/test-all` reports and removes what a run left behind).
        if std::fs::remove_dir_all(&path).is_err() {
            make_dirs_writable(&path);
            if let Err(e) = std::fs::remove_dir_all(&path) {
                eprintln!("note: could not fully remove {}: {e}", path.display());
            }
        }
    }
}

/// Destroys every environment of the store at `store` and collects its garbage, base images'
/// layers included, with the `karapace` under test (best effort: a leftover must not fail a
/// test, but every CI run as an unprivileged user would otherwise leave gigabytes of trees in
/// /tmp). `cache` is the test's own image cache: `gc --images` must never look at the user's.
fn empty_store(store: &Path, cache: &Path) {
    if !store.join("store/version").is_file() {
        return;
    }
    let bin = crate::bins::karapace_bin();
    if !bin.is_file() {
        return;
    }
    // Bounded, all of it: a session or helper a failed test leaked may hold the store's lock,
    // and a test's clean-up must never hang its binary. After one command ran out of time, none
    // is started.
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(2);
    let gave_up = std::cell::Cell::new(false);
    let karapace = |args: &[&str]| {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if gave_up.get() || left.is_zero() {
            return None;
        }
        let mut cmd = std::process::Command::new(&bin);
        cmd.env("XDG_CACHE_HOME", cache)
            .arg("--store")
            .arg(store)
            .args(args);
        let outcome = crate::process::run(cmd, format!("karapace {}", args.join(" ")), None, left);
        gave_up.set(outcome.timed_out);
        outcome.success().then_some(outcome.stdout)
    };
    let listed = karapace(&["list", "--json"]).unwrap_or_default();
    let envs: Vec<String> = serde_json::from_slice::<serde_json::Value>(&listed)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["env_id"].as_str().map(str::to_owned))
        .collect();
    for env in envs {
        let _ = karapace(&["destroy", &env]);
    }
    let _ = karapace(&["gc", "--images"]);
}

/// Adds `u+rwx` to every directory below `path` (never following symlinks).
fn make_dirs_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            make_dirs_writable(&entry.path());
        }
    }
}

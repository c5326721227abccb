//! Shared by the remote tests (protocol v1 and OCI): where the pulling side works and what a
//! clean store looks like.

use std::path::PathBuf;

use crate::{Karapace, Mirror, TestDir, UserDir, user_exists};

/// The unprivileged user the root pass pulls as (`scripts/test-all` creates it).
pub const PULL_USER: &str = "kptest";

/// Where the pulling side works: another user's directory in the root pass, a second test
/// directory of this user otherwise.
pub enum PullSide {
    Other(UserDir),
    Same(TestDir),
}

impl PullSide {
    /// `manifest` is written as the project's `karapace.toml` (a pull needs none; it keeps
    /// the directory like a user's).
    pub fn new(label: &str, manifest: &str) -> PullSide {
        if nix::unistd::geteuid().is_root() {
            if user_exists(PULL_USER) {
                return PullSide::Other(UserDir::new(label, PULL_USER, manifest, None));
            }
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must create {PULL_USER} (scripts/test-all)"
            );
        }
        PullSide::Same(TestDir::new(label))
    }

    pub fn karapace(&self, mirror: &Mirror) -> Karapace {
        match self {
            PullSide::Other(u) => u.karapace(mirror),
            PullSide::Same(d) => Karapace::new(d).image_server(mirror.file_url()),
        }
    }

    pub fn store(&self) -> PathBuf {
        match self {
            PullSide::Other(u) => u.path.join("store"),
            PullSide::Same(d) => d.store(),
        }
    }
}

/// The environments `list` shows (their `env_id`s).
pub fn env_ids(k: &Karapace) -> Vec<String> {
    k.json(&["list"])
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["env_id"].as_str().expect("env_id").to_owned())
        .collect()
}

/// `verify-store` finds nothing wrong.
pub fn assert_store_clean(k: &Karapace) {
    let v = k.json(&["verify-store"]);
    assert_eq!(v["failed"], 0, "verify-store: {v}");
}

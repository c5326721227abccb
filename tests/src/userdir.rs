//! A work directory that belongs to another local user, for tests that run in the root pass and
//! switch users (`runuser`): the user's store, image cache and project with a manifest.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::{Karapace, Mirror};

/// `<tmp>/kp-<label>-<user>-<pid>/{store,cache,project}`, owned by the user, removed (by root)
/// on drop, files of the user's subordinate ids included.
pub struct UserDir {
    pub path: PathBuf,
    user: String,
}

/// Whether the local user `name` exists.
pub fn user_exists(name: &str) -> bool {
    nix::unistd::User::from_name(name).ok().flatten().is_some()
}

/// The mirror, for a test of the root pass that switches to the local `users`; `None` (with the
/// reason on stderr) without root, a user or the mirror, except under `CI`, where a missing user
/// or mirror fails the test.
pub fn switching_users(users: &[&str]) -> Option<Mirror> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: switches users, runs in the root pass");
        return None;
    }
    let missing: Vec<&str> = users.iter().copied().filter(|u| !user_exists(u)).collect();
    if !missing.is_empty() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must create the test users {missing:?} (scripts/test-all)"
        );
        eprintln!("skipped: test users {missing:?} missing (scripts/test-all creates them)");
        return None;
    }
    Mirror::fixture()
}

impl UserDir {
    /// A fresh directory for `user` with `manifest` as `project/karapace.toml` and, when given,
    /// a copy of `lock` as `project/karapace.lock`. Panics when the user does not exist.
    pub fn new(label: &str, user: &str, manifest: &str, lock: Option<&Path>) -> UserDir {
        let path = std::env::temp_dir().join(format!("kp-{label}-{user}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("project")).expect("mkdir");
        std::fs::create_dir_all(path.join("cache")).expect("mkdir");
        std::fs::write(path.join("project/karapace.toml"), manifest).expect("manifest");
        if let Some(lock) = lock {
            std::fs::copy(lock, path.join("project/karapace.lock")).expect("copy lock");
        }
        let u = nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("test user {user} does not exist"));
        let mut owned = vec![
            path.clone(),
            path.join("project"),
            path.join("project/karapace.toml"),
            path.join("cache"),
        ];
        if lock.is_some() {
            owned.push(path.join("project/karapace.lock"));
        }
        for p in owned {
            nix::unistd::chown(&p, Some(u.uid), Some(u.gid)).expect("chown");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        UserDir {
            path,
            user: user.to_owned(),
        }
    }

    /// `karapace` run as the user, on this directory's store, cache and project, with the
    /// directory as `HOME`.
    pub fn karapace(&self, mirror: &Mirror) -> Karapace {
        Karapace::with_paths(
            &self.path.join("store"),
            &self.path.join("cache"),
            &self.path.join("project"),
        )
        .image_server(mirror.file_url())
        .env("HOME", &self.path)
        .as_user(&self.user)
    }
}

impl Drop for UserDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

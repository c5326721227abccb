//! Host prerequisites for real (non-mock) environments. `KARAPACE_SKIP_PREREQS=1` skips the gate.

use std::fs;
use std::path::PathBuf;

/// What a prerequisite is needed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Creating the environment's user namespace (and with it the others).
    UserNamespaces,
    /// Mounting the environment's layers.
    Overlay,
    /// Starting the helper at all.
    Helper,
}

/// One failed prerequisite, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub kind: Kind,
    pub what: String,
    pub fix: String,
}

/// Whether the user asked to skip the prerequisite gate.
pub fn skipped() -> bool {
    std::env::var("KARAPACE_SKIP_PREREQS").is_ok_and(|v| v == "1")
}

fn read_number(path: &str) -> Option<i64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// How the helper runs environments (`karapace-helper --mode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperMode {
    /// Through unprivileged user namespaces (the default).
    Rootless,
    /// Installed with file capabilities on a host without unprivileged user namespaces: no
    /// user namespace at all (its capabilities, as it lists them).
    Privileged(String),
}

/// The helper's own answer about its mode; `None` when it cannot be asked (not found, or a
/// helper that refuses to start, e.g. one installed set-user-ID: its error comes later).
pub fn helper_mode() -> Option<HelperMode> {
    let helper = helper_path()?;
    let out = std::process::Command::new(helper)
        .arg("--mode")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let text = text.trim();
    if text == karapace_helper_client::MODE_ROOTLESS {
        return Some(HelperMode::Rootless);
    }
    match text.split_once(' ') {
        Some((karapace_helper_client::MODE_PRIVILEGED, caps)) => {
            Some(HelperMode::Privileged(caps.to_owned()))
        }
        _ => None,
    }
}

/// The second way out of a host without unprivileged user namespaces.
fn privileged_install_fix() -> String {
    format!(
        "or install karapace-helper privileged: a copy owned and writable by root alone, next to \
         karapace, with `setcap {}` (scripts/install-privileged-helper does both; \
         docs/security-model.md, \"The privileged mode\")",
        karapace_helper_client::PRIVILEGED_FILE_CAPABILITIES
    )
}

/// Checks user namespaces, overlayfs and the helper binary. Without unprivileged user
/// namespaces a privileged helper is all it takes.
pub fn check() -> Vec<Missing> {
    let mut missing = Vec::new();
    let mut userns = Vec::new();
    if read_number("/proc/sys/user/max_user_namespaces") == Some(0) {
        userns.push(Missing {
            kind: Kind::UserNamespaces,
            what: "user namespaces are disabled (user.max_user_namespaces = 0)".into(),
            fix: "sysctl -w user.max_user_namespaces=15000".into(),
        });
    }
    if read_number("/proc/sys/kernel/unprivileged_userns_clone") == Some(0) {
        userns.push(Missing {
            kind: Kind::UserNamespaces,
            what:
                "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)"
                    .into(),
            fix: "sysctl -w kernel.unprivileged_userns_clone=1".into(),
        });
    }
    if read_number("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == Some(1) {
        userns.push(Missing {
            kind: Kind::UserNamespaces,
            what: "AppArmor restricts unprivileged user namespaces".into(),
            fix: "add an AppArmor profile allowing userns for karapace-helper".into(),
        });
    }
    if !userns.is_empty() && !matches!(helper_mode(), Some(HelperMode::Privileged(_))) {
        let or_privileged = privileged_install_fix();
        missing.extend(userns.into_iter().map(|m| Missing {
            fix: format!("{}, {or_privileged}", m.fix),
            ..m
        }));
    }
    let filesystems = fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems
        .lines()
        .any(|l| l.trim_end().ends_with("overlay"))
        && !has_fuse_overlayfs()
    {
        missing.push(Missing {
            kind: Kind::Overlay,
            what: "neither kernel overlayfs nor fuse-overlayfs is available".into(),
            fix: "modprobe overlay, or install fuse-overlayfs".into(),
        });
    }
    if helper_path().is_none() {
        missing.push(Missing {
            kind: Kind::Helper,
            what: "karapace-helper was not found next to karapace".into(),
            fix: "install karapace-helper beside the karapace binary or set KARAPACE_HELPER".into(),
        });
    }
    missing
}

fn has_fuse_overlayfs() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("fuse-overlayfs").is_file()))
}

/// Where the helper binary is (`KARAPACE_HELPER`, else next to `karapace`); the helper client
/// owns that rule.
pub fn helper_path() -> Option<PathBuf> {
    karapace_helper_client::helper_path().ok()
}

//! `doctor`: host, store and runtime checks, in the order of the contract, then ours.

use serde::Serialize;

use crate::cli::Ctx;
use crate::error::Result;
use crate::{output, prereqs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Pass,
    Fail,
    Warn,
    Info,
}

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    status: Status,
    message: String,
}

fn check(name: &'static str, status: Status, message: impl Into<String>) -> Check {
    Check {
        name,
        status,
        message: message.into(),
    }
}

/// The standard tool's checks, in its order; ours follow them.
const STANDARD_CHECKS: [&str; 8] = [
    "runtime_prereqs",
    "store_exists",
    "store_version",
    "store_integrity",
    "wal_clean",
    "store_lock",
    "environments",
    "disk_space",
];

pub fn run(ctx: &Ctx) -> Result<i32> {
    let mut checks = Vec::new();
    let missing = prereqs::check();
    checks.push(if missing.is_empty() {
        check(
            "runtime_prereqs",
            Status::Pass,
            "Runtime prerequisites satisfied (user namespaces, overlayfs, karapace-helper)",
        )
    } else {
        let text: Vec<String> = missing
            .iter()
            .map(|m| format!("{} (fix: {})", m.what, m.fix))
            .collect();
        check(
            "runtime_prereqs",
            Status::Fail,
            format!("Missing prerequisites: {}", text.join("; ")),
        )
    });
    store_checks(ctx, &mut checks);
    checks.push(disk_space(ctx));
    checks.push(match prereqs::helper_path() {
        Some(p) => check(
            "helper",
            Status::Pass,
            format!("karapace-helper at {}", p.display()),
        ),
        None => check(
            "helper",
            Status::Fail,
            "karapace-helper not found next to karapace (or KARAPACE_HELPER)",
        ),
    });
    checks.push(mode());
    checks.push(landlock(ctx));
    checks.push(id_maps());
    checks.push(seccomp());
    plugins(&mut checks);
    checks.push(backends(ctx));

    let healthy = !checks.iter().any(|c| c.status == Status::Fail);
    if ctx.json() {
        output::json(&serde_json::json!({"checks": checks, "healthy": healthy}))?;
    } else {
        // The standard tool's frame, which users and scripts know.
        output::line("Karapace Doctor")?;
        output::line("")?;
        for c in &checks {
            let icon = match c.status {
                Status::Pass => "\u{2713}",
                Status::Fail => "\u{2717}",
                Status::Warn => "\u{26a0}",
                Status::Info => "\u{2139}",
            };
            // Our own checks carry their name: their messages were written to be read with it.
            if STANDARD_CHECKS.contains(&c.name) {
                output::line(&format!("  {icon} {}", c.message))?;
            } else {
                output::line(&format!("  {icon} {}: {}", c.name, c.message))?;
            }
        }
        output::line("")?;
        output::line(if healthy {
            "All checks passed."
        } else {
            "Some checks failed. See above for details."
        })?;
    }
    Ok(i32::from(!healthy))
}

fn store_checks(ctx: &Ctx, checks: &mut Vec<Check>) {
    let root = ctx.engine.root();
    let store = match ctx.engine.open_read() {
        Ok(Some(store)) => store,
        Ok(None) => {
            checks.push(check(
                "store_exists",
                Status::Info,
                format!(
                    "Store not initialized (will be created on first build): {}",
                    root.display()
                ),
            ));
            for name in [
                "store_version",
                "store_integrity",
                "wal_clean",
                "store_lock",
                "environments",
            ] {
                checks.push(check(name, Status::Info, "skipped: no store"));
            }
            return;
        }
        Err(e) => {
            checks.push(check(
                "store_exists",
                Status::Pass,
                format!("Store directory exists ({})", root.display()),
            ));
            checks.push(check(
                "store_version",
                Status::Fail,
                format!("Store version check failed: {e}"),
            ));
            for name in ["store_integrity", "wal_clean", "store_lock", "environments"] {
                checks.push(check(name, Status::Info, "skipped: store cannot be opened"));
            }
            return;
        }
    };
    checks.push(check(
        "store_exists",
        Status::Pass,
        format!("Store directory exists ({})", root.display()),
    ));
    open_store_checks(&store, checks);
}

/// The checks of a store that opened: version, integrity, WAL, lock, environments.
fn open_store_checks(store: &karapace_store::Store, checks: &mut Vec<Check>) {
    checks.push(check(
        "store_version",
        Status::Pass,
        format!(
            "Store format version valid (format {})",
            karapace_store::STORE_FORMAT_VERSION
        ),
    ));
    checks.push(match store.verify() {
        Ok(r) if r.failed == 0 => check(
            "store_integrity",
            Status::Pass,
            format!("Store integrity OK ({} objects checked)", r.checked),
        ),
        Ok(r) => check(
            "store_integrity",
            Status::Fail,
            format!(
                "{} of {} objects corrupted (run verify-store)",
                r.failed, r.checked
            ),
        ),
        Err(e) => check(
            "store_integrity",
            Status::Fail,
            format!("Integrity check failed: {e}"),
        ),
    });
    checks.push(match store.wal_pending() {
        Ok(0) => check(
            "wal_clean",
            Status::Pass,
            "WAL is clean (no incomplete entries)",
        ),
        Ok(n) => check(
            "wal_clean",
            Status::Warn,
            format!("WAL has {n} incomplete entries (will recover on next start)"),
        ),
        Err(e) => check("wal_clean", Status::Fail, format!("Cannot read WAL: {e}")),
    });
    checks.push(match store.try_lock_exclusive() {
        Ok(Some(_lock)) => check("store_lock", Status::Pass, "Store lock is free"),
        Ok(None) => check(
            "store_lock",
            Status::Warn,
            "Store lock is held by another process",
        ),
        Err(e) => check(
            "store_lock",
            Status::Fail,
            format!("Cannot check store lock: {e}"),
        ),
    });
    checks.push(match store.list_envs() {
        Ok(envs) => {
            let running = envs
                .iter()
                .filter(|e| e.state == karapace_store::EnvState::Running)
                .count();
            check(
                "environments",
                Status::Info,
                format!("{} environments ({running} running)", envs.len()),
            )
        }
        Err(e) => check(
            "environments",
            Status::Warn,
            format!("Cannot list environments: {e}"),
        ),
    });
}

fn disk_space(ctx: &Ctx) -> Check {
    let mut dir = ctx.engine.root().to_path_buf();
    while !dir.exists() {
        if !dir.pop() {
            break;
        }
    }
    match nix::sys::statvfs::statvfs(&dir) {
        Ok(s) => {
            let free = s.blocks_available().saturating_mul(s.fragment_size());
            let gib = free / (1 << 30);
            let mib = free / (1 << 20);
            if mib < 256 {
                check(
                    "disk_space",
                    Status::Fail,
                    format!("Low disk space: {mib} MB available at {}", dir.display()),
                )
            } else if gib < 2 {
                check(
                    "disk_space",
                    Status::Warn,
                    format!(
                        "Disk space: {mib} MB available at {} (consider freeing space)",
                        dir.display()
                    ),
                )
            } else {
                check(
                    "disk_space",
                    Status::Pass,
                    format!("Disk space: {gib} GB available at {}", dir.display()),
                )
            }
        }
        Err(e) => check(
            "disk_space",
            Status::Warn,
            format!("cannot measure free space: {e}"),
        ),
    }
}

/// Every resolver plugin found (built-in or from a plugin directory), and every one that failed.
fn plugins(checks: &mut Vec<Check>) {
    use karapace_plugin_host::PluginHost;
    match PluginHost::load(&PluginHost::default_dirs()) {
        Ok(host) => {
            let found: Vec<String> = host
                .list()
                .iter()
                .map(|p| {
                    let source = super::plugin::source_label(p);
                    match &p.path {
                        Some(path) => format!(
                            "{} {} ({source}, WIT {}: {})",
                            p.name,
                            p.version,
                            p.interface,
                            path.display()
                        ),
                        None => format!("{} {} ({source}, WIT {})", p.name, p.version, p.interface),
                    }
                })
                .collect();
            checks.push(check("plugins", Status::Pass, found.join(", ")));
            for failure in host.failures() {
                checks.push(check(
                    "plugins",
                    Status::Warn,
                    // The error names the file.
                    format!("failed to load: {}", failure.error),
                ));
            }
        }
        Err(e) => checks.push(check("plugins", Status::Fail, e.to_string())),
    }
}

/// Environments whose backend the user must know about: the mock's, which isolates nothing and
/// runs nothing, can come with any manifest.
fn backends(ctx: &Ctx) -> Check {
    match ctx.engine.backend_caveats() {
        Ok(found) if found.is_empty() => check(
            "backends",
            Status::Pass,
            "every environment runs in a backend that isolates it",
        ),
        Ok(found) => {
            let lines: Vec<String> = found
                .iter()
                .map(|(env, caveat)| {
                    let who = env.name.as_deref().unwrap_or(&env.short_id);
                    format!("environment {who} uses {caveat}")
                })
                .collect();
            check("backends", Status::Warn, lines.join("; "))
        }
        Err(e) => check(
            "backends",
            Status::Warn,
            format!("cannot read the environments' backends: {e}"),
        ),
    }
}

/// How environments are made: rootless (user namespaces) or through a privileged helper.
fn mode() -> Check {
    match prereqs::helper_mode() {
        Some(prereqs::HelperMode::Rootless) => check(
            "mode",
            Status::Pass,
            "rootless: environments run in user namespaces of yours; karapace-helper holds no \
             privilege",
        ),
        Some(prereqs::HelperMode::Privileged(caps)) => check(
            "mode",
            Status::Pass,
            format!(
                "privileged: this host allows no unprivileged user namespaces, and \
                 karapace-helper holds {caps}; environments run without a user namespace, as \
                 you, and every file of theirs is yours (docs/security-model.md, \
                 \"The privileged mode\")"
            ),
        ),
        None => check(
            "mode",
            Status::Fail,
            "karapace-helper did not say how it runs environments (karapace-helper --mode)",
        ),
    }
}

/// Whether environments keep the owners of system users' files (docs/storage-format.md,
/// "Owners and id maps"): a warning, with the fix, for a user without a subordinate range.
fn id_maps() -> Check {
    use crate::engine::trees::{Ownership, collapsed_hint};
    match Ownership::detect() {
        Ownership::Root => check(
            "id-maps",
            Status::Pass,
            "root: environments map every id to itself; files keep their owners",
        ),
        Ownership::Subordinate(maps) => check(
            "id-maps",
            Status::Pass,
            format!("{maps}: files keep their owners"),
        ),
        Ownership::Collapsed(why) => check("id-maps", Status::Warn, collapsed_hint(&why)),
        Ownership::Privileged(why) => check("id-maps", Status::Info, why),
    }
}

/// Landlock as the helper, which applies it, sees it (`karapace-helper --landlock-abi`).
fn landlock(ctx: &Ctx) -> Check {
    let Some(helper) = prereqs::helper_path() else {
        return check(
            "landlock",
            Status::Fail,
            "cannot ask karapace-helper whether this kernel has Landlock: it was not found",
        );
    };
    let answer = std::process::Command::new(&helper)
        .arg("--landlock-abi")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    let abi = match answer {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            match text.trim() {
                "none" => None,
                v => match v.parse::<i32>() {
                    Ok(v) => Some(v),
                    Err(_) => {
                        return check(
                            "landlock",
                            Status::Fail,
                            format!("karapace-helper answered {v:?} about Landlock"),
                        );
                    }
                },
            }
        }
        Ok(out) => {
            return check(
                "landlock",
                Status::Fail,
                format!("karapace-helper --landlock-abi failed ({})", out.status),
            );
        }
        Err(e) => {
            return check(
                "landlock",
                Status::Fail,
                format!("cannot run {}: {e}", helper.display()),
            );
        }
    };
    let allowed = crate::engine::runtime::allow_without_landlock(ctx.global.allow_without_landlock);
    landlock_check(abi, allowed.unwrap_or(false))
}

/// The `landlock` check for the kernel's Landlock ABI (`None`: none) and the user's opt-out.
/// A kernel without Landlock fails the check even with the opt-out: environments then run
/// without their file-system and ptrace rules.
fn landlock_check(abi: Option<i32>, allowed: bool) -> Check {
    use crate::engine::runtime::ALLOW_WITHOUT_LANDLOCK_KEY;
    match abi {
        Some(v) if v >= 1 => check(
            "landlock",
            Status::Pass,
            format!("Landlock ABI {v} is available"),
        ),
        _ if allowed => check(
            "landlock",
            Status::Fail,
            format!(
                "this kernel has no Landlock; environments run anyway because \
                 {ALLOW_WITHOUT_LANDLOCK_KEY} = true (config) or --allow-without-landlock \
                 allows it, confined by namespaces, capabilities and seccomp only"
            ),
        ),
        _ => check(
            "landlock",
            Status::Fail,
            format!(
                "this kernel has no Landlock, so environments are refused; enable Landlock \
                 (lsm=…,landlock), or opt out with {ALLOW_WITHOUT_LANDLOCK_KEY} = true in \
                 ~/.config/karapace/config.toml or --allow-without-landlock"
            ),
        ),
    }
}

fn seccomp() -> Check {
    if std::path::Path::new("/proc/sys/kernel/seccomp/actions_avail").exists() {
        check("seccomp", Status::Pass, "seccomp filters are available")
    } else {
        check(
            "seccomp",
            Status::Fail,
            "seccomp filter mode is not available in this kernel",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{Status, landlock_check};

    #[test]
    fn a_kernel_without_landlock_fails_the_check_naming_the_opt_out() {
        for allowed in [false, true] {
            let c = landlock_check(None, allowed);
            assert_eq!(c.status, Status::Fail, "{}", c.message);
            assert!(
                c.message.contains("allow_without_landlock = true")
                    && c.message.contains("--allow-without-landlock"),
                "{}",
                c.message
            );
        }
        let c = landlock_check(Some(7), false);
        assert_eq!(c.status, Status::Pass, "{}", c.message);
    }
}

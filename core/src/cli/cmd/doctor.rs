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

pub fn run(ctx: &Ctx) -> Result<i32> {
    let mut checks = Vec::new();
    let missing = prereqs::check();
    checks.push(if missing.is_empty() {
        check(
            "runtime_prereqs",
            Status::Pass,
            "user namespaces, overlayfs and karapace-helper available",
        )
    } else {
        let text: Vec<String> = missing
            .iter()
            .map(|m| format!("{} (fix: {})", m.what, m.fix))
            .collect();
        check("runtime_prereqs", Status::Fail, text.join("; "))
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
    checks.push(landlock(ctx));
    checks.push(id_maps());
    checks.push(seccomp());
    plugins(&mut checks);

    let healthy = !checks.iter().any(|c| c.status == Status::Fail);
    if ctx.json() {
        output::json(&serde_json::json!({"checks": checks, "healthy": healthy}))?;
    } else {
        for c in &checks {
            let tag = match c.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::Warn => "WARN",
                Status::Info => "INFO",
            };
            output::line(&format!("[{tag}] {}: {}", c.name, c.message))?;
        }
        output::line(if healthy { "healthy" } else { "problems found" })?;
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
                    "no store at {} yet (created by the first build)",
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
                format!("store at {}", root.display()),
            ));
            checks.push(check("store_version", Status::Fail, e.to_string()));
            for name in ["store_integrity", "wal_clean", "store_lock", "environments"] {
                checks.push(check(name, Status::Info, "skipped: store cannot be opened"));
            }
            return;
        }
    };
    checks.push(check(
        "store_exists",
        Status::Pass,
        format!("store at {}", root.display()),
    ));
    checks.push(check(
        "store_version",
        Status::Pass,
        format!("format {}", karapace_store::STORE_FORMAT_VERSION),
    ));
    checks.push(match store.verify() {
        Ok(r) if r.failed == 0 => check(
            "store_integrity",
            Status::Pass,
            format!("{} items verified", r.checked),
        ),
        Ok(r) => check(
            "store_integrity",
            Status::Fail,
            format!(
                "{} of {} items failed (run verify-store)",
                r.failed, r.checked
            ),
        ),
        Err(e) => check("store_integrity", Status::Fail, e.to_string()),
    });
    checks.push(match store.wal_pending() {
        Ok(0) => check("wal_clean", Status::Pass, "no interrupted operations"),
        Ok(n) => check(
            "wal_clean",
            Status::Warn,
            format!("{n} interrupted operation(s); the next mutating command recovers them"),
        ),
        Err(e) => check("wal_clean", Status::Fail, e.to_string()),
    });
    checks.push(match store.try_lock_exclusive() {
        Ok(Some(_lock)) => check("store_lock", Status::Pass, "store lock is free"),
        Ok(None) => check(
            "store_lock",
            Status::Warn,
            "another karapace process holds the store lock",
        ),
        Err(e) => check("store_lock", Status::Fail, e.to_string()),
    });
    checks.push(match store.list_envs() {
        Ok(envs) => check(
            "environments",
            Status::Pass,
            format!("{} environment(s)", envs.len()),
        ),
        Err(e) => check("environments", Status::Fail, e.to_string()),
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
                    format!("only {mib} MiB free at {}", dir.display()),
                )
            } else if gib < 2 {
                check(
                    "disk_space",
                    Status::Warn,
                    format!("{mib} MiB free at {}", dir.display()),
                )
            } else {
                check(
                    "disk_space",
                    Status::Pass,
                    format!("{gib} GiB free at {}", dir.display()),
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
                .map(|p| match &p.path {
                    Some(path) => format!(
                        "{} {} ({}: {})",
                        p.name,
                        p.version,
                        p.source.as_str(),
                        path.display()
                    ),
                    None => format!("{} {} ({})", p.name, p.version, p.source.as_str()),
                })
                .collect();
            checks.push(check("plugins", Status::Pass, found.join(", ")));
            for failure in host.failures() {
                checks.push(check(
                    "plugins",
                    Status::Warn,
                    format!(
                        "{} failed to load: {}",
                        failure.path.display(),
                        failure.error
                    ),
                ));
            }
        }
        Err(e) => checks.push(check("plugins", Status::Fail, e.to_string())),
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

//! `plugin install <wasm>`: loads the component in the host exactly as a plugin directory would
//! (so a component that imports anything, exports no supported interface or returns bad
//! metadata is refused here, not at the next build), then moves it into the user's plugin
//! directory atomically as `<plugin name>.wasm`.
//!
//! Refuses to replace an installed plugin of the same name with other content unless
//! `--force`: a plugin decides what runs in every later build.

use std::path::{Path, PathBuf};

use karapace_plugin_host::{LoadOptions, Plugin, PluginHost, PluginSource};

use crate::cli::Ctx;
use crate::error::{CoreError, Result};
use crate::output;

/// Larger files are refused before reading (the host's own cap is 16 MiB).
const MAX_BYTES: u64 = 16 * 1024 * 1024;

pub fn run(ctx: &Ctx, wasm: &Path, force: bool) -> Result<i32> {
    let dir = PluginHost::user_dir()
        .ok_or_else(|| CoreError::Usage("no plugin directory: set HOME or XDG_DATA_HOME".into()))?;
    let bytes = read_component(wasm)?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| CoreError::io(format!("cannot create {}", dir.display()), e))?;

    // Validate exactly the bytes that will be installed: written to a temporary file in the
    // target directory (no .wasm suffix, so concurrent loads ignore it), loaded from there.
    let (staged, plugin) = super::stage_and_load(&dir, ".install-", &bytes, wasm)?;
    let dest = dir.join(format!("{}.wasm", plugin.name()));

    let same_name = installed_with_name(&dir, plugin.name(), &dest);
    let identical = |p: &PathBuf| std::fs::read(p).is_ok_and(|b| b == bytes);
    if !force && let Some(other) = same_name.iter().find(|p| !identical(p)) {
        return Err(CoreError::Refused(format!(
            "plugin {} is already installed at {} with other content; pass --force to replace it",
            plugin.name(),
            other.display()
        )));
    }
    let status = match same_name.as_slice() {
        [] => "installed",
        [only] if *only == dest && identical(only) => "unchanged",
        _ => "replaced",
    };
    if status != "unchanged" {
        set_mode(staged.as_file())?;
        staged
            .persist(&dest)
            .map_err(|e| CoreError::io(format!("cannot install {}", dest.display()), e.error))?;
        // The same plugin under another file name would now be a duplicate.
        for old in same_name.iter().filter(|p| **p != dest) {
            std::fs::remove_file(old)
                .map_err(|e| CoreError::io(format!("cannot remove {}", old.display()), e))?;
        }
    }
    report(ctx, &plugin, &dest, status)
}

fn read_component(wasm: &Path) -> Result<Vec<u8>> {
    let err = |e| CoreError::io(format!("cannot read {}", wasm.display()), e);
    let meta = std::fs::metadata(wasm).map_err(err)?;
    if !meta.is_file() {
        return Err(CoreError::Usage(format!(
            "{} is not a regular file",
            wasm.display()
        )));
    }
    if meta.len() > MAX_BYTES {
        return Err(CoreError::Usage(format!(
            "{}: {} bytes, more than a plugin may have ({MAX_BYTES})",
            wasm.display(),
            meta.len()
        )));
    }
    std::fs::read(wasm).map_err(err)
}

/// Files of the user's plugin directory that hold a plugin named `name`, and `dest` itself when
/// it exists (whatever it holds). Files that do not load are not ours to judge here.
fn installed_with_name(dir: &Path, name: &str, dest: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = PluginHost::load_with(&LoadOptions {
        dirs: vec![dir.to_path_buf()],
        ..LoadOptions::default()
    })
    .map(|host| {
        host.plugins()
            .iter()
            .filter(|p| p.source() == PluginSource::Directory && p.name() == name)
            .filter_map(|p| p.path().map(Path::to_path_buf))
            .collect()
    })
    .unwrap_or_default();
    if dest.exists() && !found.iter().any(|p| p == dest) {
        found.push(dest.to_path_buf());
    }
    found
}

/// Plugin files are data read by every user's builds: 0644, like the system directory's.
fn set_mode(file: &std::fs::File) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| CoreError::io("cannot set the plugin's mode", e))
}

fn report(ctx: &Ctx, plugin: &Plugin, dest: &Path, status: &str) -> Result<i32> {
    if ctx.json() {
        output::json(&serde_json::json!({
            "name": plugin.name(),
            "version": plugin.version(),
            "interface": plugin.interface(),
            "path": dest,
            "status": status,
        }))?;
    } else {
        output::line(&format!(
            "{status} plugin {} {} (WIT {}) at {}",
            plugin.name(),
            plugin.version(),
            plugin.interface(),
            dest.display()
        ))?;
        if karapace_plugin_host::builtin_names().any(|n| n == plugin.name()) {
            output::note(&format!(
                "note: it replaces the built-in {} plugin for your builds",
                plugin.name()
            ));
        }
    }
    Ok(0)
}

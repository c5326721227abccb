//! `plugin` (ours): the resolver plugins a distribution maintainer writes — list what is
//! loaded, build an SDK crate into a component, try it on given inputs, install it.
//! docs/plugins.md is the guide; everything here goes through the same host
//! (`karapace-plugin-host`) and limits as a build does.

mod build;
mod install;
mod list;
mod sdk;
mod test;
mod toolchain;

use std::path::Path;

use karapace_plugin_host::{PluginHost, PluginInfo, PluginSource, SYSTEM_PLUGIN_DIR};

use crate::cli::Ctx;
use crate::cli::args::PluginAction;
use crate::error::{CoreError, Result};

pub fn run(ctx: &Ctx, action: PluginAction) -> Result<i32> {
    match action {
        PluginAction::List => list::run(ctx),
        PluginAction::Build { dir, output } => build::run(ctx, &dir, output.as_deref()),
        PluginAction::Test {
            wasm,
            detect,
            install,
            parse,
            single_uid_map,
        } => test::run(
            ctx,
            &test::Inputs {
                wasm: &wasm,
                detect: detect.as_deref(),
                install: &install,
                parse: parse.as_deref(),
                single_uid_map,
            },
        ),
        PluginAction::Install { wasm, force } => install::run(ctx, &wasm, force),
    }
}

/// Where a loaded plugin comes from, as `plugin list` and `doctor` say it: `built-in`, `user`
/// (the user's plugin directory), `system` (/usr/lib/karapace/plugins) or `directory`.
pub(crate) fn source_label(info: &PluginInfo) -> &'static str {
    match (info.source, info.path.as_deref()) {
        (PluginSource::Builtin, _) => "built-in",
        (PluginSource::Directory, Some(path)) if in_dir(path, Path::new(SYSTEM_PLUGIN_DIR)) => {
            "system"
        }
        (PluginSource::Directory, Some(path))
            if PluginHost::user_dir().is_some_and(|d| in_dir(path, &d)) =>
        {
            "user"
        }
        (PluginSource::Directory, _) => "directory",
    }
}

fn in_dir(path: &Path, dir: &Path) -> bool {
    path.parent() == Some(dir)
}

/// Writes `bytes` to a temporary file in `dir` (no `.wasm` suffix, so concurrent loads of the
/// directory ignore it; beside the destination, so the final rename stays on one file system)
/// and loads exactly those bytes as the host would. Errors name `shown_as`, the file the user
/// knows, not the staging copy.
fn stage_and_load(
    dir: &Path,
    prefix: &str,
    bytes: &[u8],
    shown_as: &Path,
) -> Result<(tempfile::NamedTempFile, karapace_plugin_host::Plugin)> {
    use std::io::Write;
    let mut staged = tempfile::Builder::new()
        .prefix(prefix)
        .tempfile_in(dir)
        .map_err(|e| CoreError::io(format!("cannot write in {}", dir.display()), e))?;
    staged
        .write_all(bytes)
        .and_then(|()| staged.as_file().sync_all())
        .map_err(|e| CoreError::io(format!("cannot write {}", staged.path().display()), e))?;
    let plugin = PluginHost::load_file(staged.path(), karapace_plugin_host::Limits::default())
        .map_err(|e| {
            CoreError::Plugin(e.to_string().replace(
                &staged.path().display().to_string(),
                &shown_as.display().to_string(),
            ))
        })?;
    Ok((staged, plugin))
}

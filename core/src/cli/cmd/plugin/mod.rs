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
use crate::error::Result;

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

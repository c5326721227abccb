//! `plugin list`: every loaded resolver plugin in detection order (what `doctor` checks), with
//! its WIT version and where it comes from, then the plugin files that failed to load.

use karapace_plugin_host::{PluginHost, SYSTEM_PLUGIN_DIR};

use super::source_label;
use crate::cli::Ctx;
use crate::error::{CoreError, Result};
use crate::output;

pub fn run(ctx: &Ctx) -> Result<i32> {
    let host = PluginHost::load(&PluginHost::default_dirs()).map_err(CoreError::plugin)?;
    let user_dir = PluginHost::user_dir();
    if ctx.json() {
        let plugins: Vec<serde_json::Value> = host
            .list()
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name,
                    "version": p.version,
                    "interface": p.interface,
                    "source": source_label(p),
                    "path": p.path,
                })
            })
            .collect();
        let failures: Vec<serde_json::Value> = host
            .failures()
            .iter()
            .map(|f| serde_json::json!({"path": f.path, "error": f.error.to_string()}))
            .collect();
        output::json(&serde_json::json!({
            "plugins": plugins,
            "failures": failures,
            "system_dir": SYSTEM_PLUGIN_DIR,
            "user_dir": user_dir,
        }))?;
        return Ok(0);
    }
    output::line(&format!(
        "{:<12} {:<10} {:<6} {:<9} PATH",
        "NAME", "VERSION", "WIT", "SOURCE"
    ))?;
    for p in host.list() {
        let path = p
            .path
            .as_ref()
            .map_or_else(|| "-".to_string(), |p| p.display().to_string());
        output::line(&format!(
            "{:<12} {:<10} {:<6} {:<9} {path}",
            p.name,
            p.version,
            p.interface,
            source_label(&p)
        ))?;
    }
    for f in host.failures() {
        // The error names the file itself.
        output::note(&format!("warning: {}", f.error));
    }
    output::note(&format!(
        "plugin directories (later wins): {SYSTEM_PLUGIN_DIR}, {}",
        user_dir.map_or_else(
            || "(none: HOME and XDG_DATA_HOME unset)".to_string(),
            |d| d.display().to_string()
        )
    ));
    Ok(0)
}

//! `inspect`: one environment's metadata.

use crate::cli::Ctx;
use crate::cli::env_view::{EnvView, REF_COUNT};
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx, query: &str) -> Result<i32> {
    let env = ctx.engine.inspect(query)?;
    let entries: Vec<String> = ctx
        .engine
        .desktop_entries(&env)
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let usage = ctx.engine.env_usage(&env)?;
    if ctx.json() {
        let mut view = EnvView::from(&env);
        view.usage = usage.map(Into::into);
        view.desktop_entries = Some(entries);
        return output::json(&view).map(|()| 0);
    }
    // The standard tool's lines first, in its order (value column at 13); ours after them.
    let deps = env.dependency_layers.len().to_string();
    let ref_count = REF_COUNT.to_string();
    let lines: [(&str, &str); 9] = [
        ("env_id", &env.env_id),
        ("short_id", &env.short_id),
        ("name", env.name.as_deref().unwrap_or("(none)")),
        ("state", &env.state.to_string()),
        ("base_layer", &env.base_layer),
        ("deps", &deps),
        ("ref_count", &ref_count),
        ("created_at", &env.created_at),
        ("updated_at", &env.updated_at),
    ];
    for (key, value) in lines {
        field(key, value)?;
    }
    field("manifest_hash", &env.manifest_hash)?;
    for layer in &env.dependency_layers {
        field("dependency", layer)?;
    }
    field(
        "policy_layer",
        env.policy_layer.as_deref().unwrap_or("(none)"),
    )?;
    if let Some(u) = &usage {
        field("writable", &output::bytes(u.writable_bytes))?;
        let layers: u64 = u.layers.iter().map(|l| l.bytes).sum();
        let shared = u.layers.iter().filter(|l| l.shared_by > 1).count();
        field(
            "layers",
            &format!(
                "{} in {} layers ({shared} shared with other environments)",
                output::bytes(layers),
                u.layers.len()
            ),
        )?;
        field(
            "exclusive",
            &format!(
                "{} (what destroy and then gc would free)",
                output::bytes(u.exclusive_bytes)
            ),
        )?;
    }
    for entry in &entries {
        field("desktop_entry", entry)?;
    }
    Ok(0)
}

fn field(key: &str, value: &str) -> Result<()> {
    output::line(&format!("{:<12} {value}", format!("{key}:")))
}

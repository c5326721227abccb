//! `inspect`: one environment's metadata.

use crate::cli::Ctx;
use crate::cli::env_view::{EnvView, inspect_fields, inspect_line};
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
    for (key, value) in inspect_fields(&env) {
        output::line(&inspect_line(key, &value))?;
    }
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
    output::line(&inspect_line(key, value))
}

//! `inspect`: one environment's metadata.

use crate::cli::Ctx;
use crate::cli::env_view::{EnvView, inspect_fields, inspect_line, usage_and_desktop_fields};
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
    let fields = inspect_fields(&env)
        .into_iter()
        .chain(usage_and_desktop_fields(usage.as_ref(), &entries));
    for (key, value) in fields {
        output::line(&inspect_line(key, &value))?;
    }
    Ok(0)
}

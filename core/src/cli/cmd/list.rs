//! `list`.

use crate::cli::Ctx;
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx) -> Result<i32> {
    let envs = ctx.engine.list()?;
    if ctx.json() {
        return output::json(&envs).map(|()| 0);
    }
    if envs.is_empty() {
        output::line("no environments found")?;
        return Ok(0);
    }
    let name_width = envs
        .iter()
        .filter_map(|e| e.name.as_ref().map(String::len))
        .max()
        .unwrap_or(0)
        .max(4);
    output::line(&format!(
        "{:<12}  {:<name_width$}  {:<8}  ENV_ID",
        "SHORT_ID", "NAME", "STATE"
    ))?;
    for e in &envs {
        output::line(&format!(
            "{:<12}  {:<name_width$}  {:<8}  {}",
            e.short_id,
            e.name.as_deref().unwrap_or("-"),
            e.state.to_string(),
            e.env_id
        ))?;
    }
    Ok(0)
}

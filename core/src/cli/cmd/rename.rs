//! `rename`.

use crate::cli::Ctx;
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx, query: &str, new_name: &str) -> Result<i32> {
    let env = ctx.engine.rename(query, new_name)?;
    if ctx.json() {
        output::json(&serde_json::json!({"env_id": env.env_id, "name": env.name}))?;
    } else {
        output::line(&format!("renamed {} \u{2192} '{new_name}'", env.short_id))?;
    }
    Ok(0)
}

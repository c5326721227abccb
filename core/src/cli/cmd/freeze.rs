//! `freeze`.

use crate::cli::Ctx;
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx, query: &str) -> Result<i32> {
    let env = ctx.engine.freeze(query)?;
    if ctx.json() {
        output::json(&serde_json::json!({"env_id": env.env_id, "state": env.state}))?;
    } else {
        output::line(&format!(
            "environment {} is now {}",
            env.short_id, env.state
        ))?;
    }
    Ok(0)
}

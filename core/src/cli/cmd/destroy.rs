//! `destroy`.

use crate::cli::Ctx;
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx, query: &str) -> Result<i32> {
    let env = ctx.engine.destroy(query)?;
    if ctx.json() {
        output::json(&serde_json::json!({"env_id": env.env_id, "status": "destroyed"}))?;
    } else {
        output::line(&format!("destroyed environment {query}"))?;
    }
    Ok(0)
}

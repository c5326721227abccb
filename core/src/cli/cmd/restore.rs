//! `restore`.

use crate::cli::Ctx;
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx, query: &str, snapshot: &str) -> Result<i32> {
    let env = ctx.engine.restore(query, snapshot)?;
    if ctx.json() {
        output::json(&serde_json::json!({"env_id": env.env_id, "restored_snapshot": snapshot}))?;
    } else {
        output::line(&format!("restored {query} from snapshot {snapshot}"))?;
    }
    Ok(0)
}

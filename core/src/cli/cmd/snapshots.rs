//! `snapshots`.

use crate::cli::Ctx;
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx, query: &str) -> Result<i32> {
    let (env, snaps) = ctx.engine.snapshots(query)?;
    if ctx.json() {
        output::json(&serde_json::json!({"env_id": env.env_id, "snapshots": snaps}))?;
    } else if snaps.is_empty() {
        output::line(&format!("no snapshots for {query}"))?;
    } else {
        for s in &snaps {
            let parent = s.parent.as_deref().unwrap_or("-");
            output::line(&format!(
                "{}  parent {parent}  tar {}",
                s.restore_hash, s.tar_hash
            ))?;
        }
    }
    Ok(0)
}

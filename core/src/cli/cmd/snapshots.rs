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
        output::line(&format!("snapshots for {query}:"))?;
        for s in &snaps {
            let tar = s.tar_hash.get(..12).unwrap_or(&s.tar_hash);
            output::line(&format!("  {} (tar: {tar})", s.restore_hash))?;
        }
    }
    Ok(0)
}

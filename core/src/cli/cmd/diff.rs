//! `diff`: changes in the writable layer, whiteout-aware.

use crate::cli::Ctx;
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx, query: &str) -> Result<i32> {
    let (env, diff) = ctx.engine.diff(query)?;
    let has_drift = !(diff.added.is_empty() && diff.modified.is_empty() && diff.removed.is_empty());
    if ctx.json() {
        output::json(&serde_json::json!({
            "env_id": env.env_id,
            "added": diff.added,
            "modified": diff.modified,
            "removed": diff.removed,
            "has_drift": has_drift,
        }))?;
    } else if !has_drift {
        output::line(&format!("no drift detected in environment {query}"))?;
    } else {
        output::line(&format!("drift detected in environment {query}:"))?;
        for p in &diff.added {
            output::line(&format!("  + {p}"))?;
        }
        for p in &diff.modified {
            output::line(&format!("  ~ {p}"))?;
        }
        for p in &diff.removed {
            output::line(&format!("  - {p}"))?;
        }
    }
    Ok(0)
}

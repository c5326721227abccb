//! `commit`.

use crate::cli::Ctx;
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx, query: &str, message: Option<&str>) -> Result<i32> {
    let (env, hash) = ctx.engine.commit_labelled(query, message)?;
    if ctx.json() {
        output::json(&serde_json::json!({"env_id": env.env_id, "snapshot_hash": hash}))?;
    } else {
        output::line(&format!("committed snapshot {hash} for {query}"))?;
    }
    Ok(0)
}

//! `restore`: the snapshot may be named by a unique prefix of its hash; the output names it in
//! full.

use crate::cli::Ctx;
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx, query: &str, snapshot: &str) -> Result<i32> {
    let (env, hash) = ctx.engine.restore_snapshot(query, snapshot)?;
    if ctx.json() {
        output::json(&serde_json::json!({"env_id": env.env_id, "restored_snapshot": hash}))?;
    } else {
        output::line(&format!("restored {query} from snapshot {hash}"))?;
    }
    Ok(0)
}

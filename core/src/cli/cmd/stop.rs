//! `stop`: SIGTERM every session, SIGKILL after a timeout.

use crate::cli::Ctx;
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx, query: &str) -> Result<i32> {
    let stopped = ctx.engine.stop(query)?;
    if ctx.json() {
        output::json(&serde_json::json!({"env_id": query, "stopped_sessions": stopped}))?;
    } else {
        output::line(&format!("stopped environment {query}"))?;
        output::note(&format!("{stopped} session(s) stopped"));
    }
    Ok(0)
}

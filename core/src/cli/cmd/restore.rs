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
    // The replaced writable layer went to the store's trash; give its space back now that the
    // result is out, rather than inside the restore. No store lock is taken; when another
    // process is emptying the trash this returns at once; what is left (an error, a kill) waits
    // for the next emptier or gc.
    if let Ok(Some(store)) = ctx.engine.open_read() {
        let _ = store.empty_trash();
    }
    Ok(0)
}

//! `destroy`.

use crate::cli::Ctx;
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx, query: &str) -> Result<i32> {
    let env = ctx.engine.destroy(query)?;
    if ctx.json() {
        output::json(&serde_json::json!({"env_id": env.env_id(), "status": "destroyed"}))?;
    } else {
        output::line(&format!("destroyed environment {query}"))?;
        output::note(
            "note: its layers and snapshots stay in the store until `karapace gc` frees them (`karapace du` shows how much)",
        );
    }
    Ok(0)
}

//! `migrate`: store format check and upgrade with a backup.

use crate::cli::Ctx;
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx) -> Result<i32> {
    let report = karapace_store::migrate::migrate(ctx.engine.root())?;
    if ctx.json() {
        output::json(&report)?;
    } else {
        output::line(&report.message)?;
    }
    Ok(i32::from(report.status == "error"))
}

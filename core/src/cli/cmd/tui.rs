//! `tui`: the terminal UI (`crate::tui`); `e` in it runs what `karapace enter <id>` runs.

use crate::cli::Ctx;
use crate::error::{CoreError, Result};

pub fn run(ctx: &Ctx) -> Result<i32> {
    if ctx.json() {
        return Err(CoreError::Refused(
            "JSON output is not supported for 'tui'".into(),
        ));
    }
    crate::tui::run(&ctx.engine, &|env_id| super::enter::run(ctx, env_id, &[]))
}

//! `tui`.

use crate::cli::Ctx;
use crate::error::{CoreError, Result};

pub fn run(ctx: &Ctx) -> Result<i32> {
    if ctx.json() {
        return Err(CoreError::Other(
            "JSON output is not supported for 'tui'".into(),
        ));
    }
    Err(CoreError::Unavailable {
        what: "the terminal UI".into(),
    })
}

//! `push`: remote protocol v1 client.

use crate::cli::Ctx;
use crate::error::{CoreError, Result};

pub fn run(ctx: &Ctx, query: &str, _tag: Option<&str>, _remote: Option<&str>) -> Result<i32> {
    // Resolve first so a typo is reported as such, not as a missing feature.
    ctx.engine.inspect(query)?;
    Err(CoreError::Unavailable {
        what: "push (remote stores)".into(),
    })
}

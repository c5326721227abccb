//! `freeze`.

use crate::cli::Ctx;
use crate::error::Result;

pub fn run(ctx: &Ctx, query: &str) -> Result<i32> {
    let env = ctx.engine.freeze(query)?;
    super::print_state(ctx, "frozen", query, &env)
}

//! `inspect`: one environment's metadata.

use crate::cli::Ctx;
use crate::cli::env_view::{EnvView, inspect_fields, inspect_line};
use crate::error::Result;
use crate::output;

pub fn run(ctx: &Ctx, query: &str) -> Result<i32> {
    let env = ctx.engine.inspect(query)?;
    if ctx.json() {
        return output::json(&EnvView::from(&env)).map(|()| 0);
    }
    for (key, value) in inspect_fields(&env) {
        output::line(&inspect_line(key, &value))?;
    }
    Ok(0)
}

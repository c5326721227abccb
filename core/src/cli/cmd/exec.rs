//! `exec <ENV_ID> -- <CMD...>`: exits with the inner command's status.

use crate::cli::Ctx;
use crate::engine::{RunMode, SessionOptions};
use crate::error::Result;

pub fn run(ctx: &Ctx, query: &str, command: &[String]) -> Result<i32> {
    run_with(ctx, query, command, &SessionOptions::default())
}

/// `exec --workdir DIR`, `exec --root`.
pub fn run_with(
    ctx: &Ctx,
    query: &str,
    command: &[String],
    options: &SessionOptions,
) -> Result<i32> {
    let code = ctx
        .engine
        .run_with(query, command, RunMode::Exec, options)?;
    super::root_hint::print_root_hint(ctx, RunMode::Exec, query, command, options, code);
    Ok(code)
}

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
    if let Some(hint) = super::root_hint::root_hint(
        RunMode::Exec,
        query,
        command,
        options,
        ctx.global.store.as_deref(),
        code,
    ) {
        crate::output::note(&hint);
    }
    Ok(code)
}

//! `exec <ENV_ID> -- <CMD...>`: exits with the inner command's status.

use crate::cli::Ctx;
use crate::engine::RunMode;
use crate::error::Result;

pub fn run(ctx: &Ctx, query: &str, command: &[String]) -> Result<i32> {
    run_in(ctx, query, command, None)
}

/// `exec --workdir DIR`.
pub fn run_in(
    ctx: &Ctx,
    query: &str,
    command: &[String],
    workdir: Option<&std::path::Path>,
) -> Result<i32> {
    ctx.engine.run_in(query, command, RunMode::Exec, workdir)
}

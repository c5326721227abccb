//! `exec <ENV_ID> -- <CMD...>`: exits with the inner command's status.

use crate::cli::Ctx;
use crate::engine::RunMode;
use crate::error::Result;

pub fn run(ctx: &Ctx, query: &str, command: &[String]) -> Result<i32> {
    ctx.engine.run(query, command, RunMode::Exec)
}

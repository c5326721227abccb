//! `enter <ENV_ID> [-- CMD...]`: a login shell, or CMD, with the user's terminal.

use karapace_helper_client::terminal;

use crate::cli::Ctx;
use crate::engine::RunMode;
use crate::error::Result;

pub fn run(ctx: &Ctx, query: &str, command: &[String]) -> Result<i32> {
    run_in(ctx, query, command, None)
}

/// `enter --workdir DIR`.
pub fn run_in(
    ctx: &Ctx,
    query: &str,
    command: &[String],
    workdir: Option<&std::path::Path>,
) -> Result<i32> {
    let interactive = command.is_empty();
    if interactive {
        // Markers and banner go to stderr, and only when it is a terminal.
        let env = ctx.engine.inspect(query)?;
        terminal::enter_banner(env.name.as_deref().unwrap_or(&env.short_id), &env.short_id);
    }
    let code = ctx.engine.run_in(query, command, RunMode::Enter, workdir);
    if interactive {
        terminal::leave_banner();
    }
    code
}

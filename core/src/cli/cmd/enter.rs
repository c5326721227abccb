//! `enter <ENV_ID> [-- CMD...]`: a login shell, or CMD, with the user's terminal.

use crate::cli::banner;

use crate::cli::Ctx;
use crate::engine::{RunMode, SessionOptions};
use crate::error::Result;

pub fn run(ctx: &Ctx, query: &str, command: &[String]) -> Result<i32> {
    run_with(ctx, query, command, &SessionOptions::default())
}

/// `enter --workdir DIR`, `enter --root`.
pub fn run_with(
    ctx: &Ctx,
    query: &str,
    command: &[String],
    options: &SessionOptions,
) -> Result<i32> {
    let interactive = command.is_empty();
    if interactive {
        // Markers and banner go to stderr, and only when it is a terminal.
        let env = ctx.engine.inspect(query)?;
        banner::enter_banner(env.name.as_deref().unwrap_or(&env.short_id), &env.short_id);
    }
    let code = ctx.engine.run_with(query, command, RunMode::Enter, options);
    if interactive {
        banner::leave_banner();
    }
    if let Ok(code) = code {
        super::root_hint::print_root_hint(ctx, RunMode::Enter, query, command, options, code);
    }
    code
}

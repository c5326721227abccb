//! `enter <ENV_ID> [-- CMD...]`: a login shell, or CMD, with the user's terminal.

use std::io::IsTerminal;

use crate::cli::Ctx;
use crate::engine::RunMode;
use crate::error::Result;

pub fn run(ctx: &Ctx, query: &str, command: &[String]) -> Result<i32> {
    let tty = std::io::stderr().is_terminal();
    if tty && command.is_empty() {
        // OSC 777 lets terminals that understand it mark the nested context.
        eprint!("\x1b]777;push;karapace;{query}\x07");
        eprintln!("karapace: entering environment {query} (exit the shell to leave)");
    }
    let code = ctx.engine.run(query, command, RunMode::Enter);
    if tty && command.is_empty() {
        eprint!("\x1b]777;pop;karapace\x07");
    }
    code
}

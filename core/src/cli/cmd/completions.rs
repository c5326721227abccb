//! `completions <SHELL>`: the script that registers completion, which asks `karapace` for the
//! candidates at each <TAB> (environment names, snapshot hashes: `cli::complete`).

use crate::cli::args::Shell;
use crate::cli::complete;

pub fn run(shell: Shell) -> crate::error::Result<i32> {
    complete::write_registration(shell, &mut std::io::stdout().lock())
        .map_err(|e| crate::error::CoreError::io("cannot write the completion script", e))?;
    Ok(0)
}

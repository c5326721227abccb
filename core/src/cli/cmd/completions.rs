//! `completions <SHELL>`.

use clap::CommandFactory;
use clap_complete::Shell as Target;

use crate::cli::args::{Cli, Shell};

pub fn run(shell: Shell) -> i32 {
    let target = match shell {
        Shell::Bash => Target::Bash,
        Shell::Elvish => Target::Elvish,
        Shell::Fish => Target::Fish,
        Shell::Powershell => Target::PowerShell,
        Shell::Zsh => Target::Zsh,
    };
    clap_complete::generate(
        target,
        &mut Cli::command(),
        "karapace",
        &mut std::io::stdout(),
    );
    0
}

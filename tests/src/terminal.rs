//! Running `karapace` with its stderr on a real pseudo-terminal, through util-linux's
//! `script`, to see what a user's terminal gets (progress lines, their redraws) while stdout
//! goes to a file, as when a script captures the results.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::{self, Outcome, shell_quote};
use crate::runner::Karapace;

/// `script` from util-linux, if installed.
pub fn script_bin() -> Option<PathBuf> {
    ["/usr/bin/script", "/bin/script"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// What the terminal showed, and what went to stdout.
#[derive(Debug)]
pub struct OnTerminal {
    /// `script`'s run; its stdout is everything written to the terminal (karapace's stderr).
    pub outcome: Outcome,
    /// karapace's stdout (redirected to a file).
    pub stdout: String,
}

impl OnTerminal {
    /// The terminal's bytes as text (lossy).
    pub fn terminal(&self) -> String {
        self.outcome.stdout_str()
    }
}

/// Runs `karapace <args>` on a pseudo-terminal that `script -qfec` makes (stdin and stderr),
/// with stdout into `stdout_file`. `None` when `script` is not installed
/// (the caller decides whether that skips the test).
pub fn run_on_terminal(k: &Karapace, args: &[&str], stdout_file: &Path) -> Option<OnTerminal> {
    let script = script_bin()?;
    let (cmd, _) = k.command(args);
    let line = shell_line(&cmd, stdout_file);
    let mut run = Command::new(script);
    // -q: no "Script started" lines; -f: flush as it comes; -e: karapace's exit code;
    // -c: the command; /dev/null: no typescript file (the transcript is script's stdout).
    run.args(["-qfec", &line, "/dev/null"]);
    let shown = format!("script -qfec {}", shell_quote(&line));
    let outcome = process::run(run, shown, None, k.timeout_limit());
    let stdout = std::fs::read_to_string(stdout_file).unwrap_or_default();
    Some(OnTerminal { outcome, stdout })
}

/// `cd <dir> && exec env [-u K] [K=V]… <program> <args>… > <stdout_file>`: the command as a
/// shell line for `script -c`.
fn shell_line(cmd: &Command, stdout_file: &Path) -> String {
    let mut words = Vec::new();
    if let Some(dir) = cmd.get_current_dir() {
        words.push(format!("cd {} &&", shell_quote(&dir.to_string_lossy())));
    }
    words.push("exec env".to_owned());
    for (key, value) in cmd.get_envs() {
        let key = key.to_string_lossy();
        match value {
            Some(v) => words.push(shell_quote(&format!("{key}={}", v.to_string_lossy()))),
            None => words.push(format!("-u {}", shell_quote(&key))),
        }
    }
    words.push(shell_quote(&cmd.get_program().to_string_lossy()));
    words.extend(cmd.get_args().map(|a| shell_quote(&a.to_string_lossy())));
    words.push(format!("> {}", shell_quote(&stdout_file.to_string_lossy())));
    words.join(" ")
}

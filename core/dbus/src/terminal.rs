//! `RunEnvironment`: an interactive shell in a terminal emulator the desktop provides, running
//! `karapace enter`. Never a shell inside the service (the standard tool runs one there, with no
//! terminal and the service's lifetime).
//!
//! The command line is the configured terminal prefix, then `karapace --store <root> enter
//! <env_id>`: the full `env_id` the engine resolved, never the caller's text, so nothing a client
//! sends becomes an argument.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::config::Config;
use crate::error::ManagerError;

/// The argv that opens the shell of `env_id`.
pub fn argv(config: &Config, env_id: &str) -> Vec<String> {
    let mut argv = config.terminal.clone();
    argv.push(config.karapace_bin.to_string_lossy().into_owned());
    argv.push("--store".into());
    argv.push(config.store_root.to_string_lossy().into_owned());
    argv.push("enter".into());
    argv.push(env_id.to_owned());
    argv
}

/// Starts the terminal and returns once it runs; a thread reaps it when it exits. It gets its own
/// process group (a signal to the service does not close the user's shell) and no stdin.
pub fn open(config: &Config, env_id: &str) -> Result<(), ManagerError> {
    let command = argv(config, env_id);
    let Some((program, args)) = command.split_first() else {
        return Err(ManagerError::Failed(
            "no terminal command is configured".into(),
        ));
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| {
            ManagerError::Failed(format!(
                "cannot start the terminal '{}': {e} (set KARAPACE_TERMINAL to the command that \
                 opens one, e.g. \"gnome-terminal --\")",
                Path::new(program).display()
            ))
        })?;
    std::thread::Builder::new()
        .name("terminal-reaper".into())
        .spawn(move || {
            let _ = child.wait();
        })
        .map_err(|e| ManagerError::Failed(format!("cannot wait for the terminal: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn the_terminal_runs_karapace_enter_with_the_store_and_the_resolved_id() {
        let config = Config {
            store_root: PathBuf::from("/s"),
            idle_timeout: None,
            terminal: vec!["x-terminal-emulator".into(), "-e".into()],
            karapace_bin: PathBuf::from("/usr/bin/karapace"),
        };
        assert_eq!(
            argv(&config, "abc"),
            [
                "x-terminal-emulator",
                "-e",
                "/usr/bin/karapace",
                "--store",
                "/s",
                "enter",
                "abc"
            ]
        );
    }
}

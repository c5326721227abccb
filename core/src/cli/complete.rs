//! Shell completion that knows the store: environment names and ids for every `<ENV_ID>`, and
//! snapshot hashes for `restore`. The script `completions <SHELL>` prints asks the program at
//! each <TAB> (`COMPLETE=<shell> karapace -- <words>`, `clap_complete`'s protocol), so what it
//! offers is always the store's current content.
//!
//! Completing never writes and never prints an error: a missing or unreadable store, or a store
//! busy with a build, offers no candidates rather than a message in the middle of the user's
//! command line.

use std::ffi::OsString;
use std::io::Write;

use clap::CommandFactory;
use clap_complete::CompletionCandidate;
use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};

use super::args::{Cli, Shell};
use crate::engine::Engine;

/// The environment variable of the completion protocol (`clap_complete`'s default).
const VAR: &str = "COMPLETE";

/// Answers a completion request and exits when the shell's script made one; returns otherwise.
/// Runs before the command line is parsed (the words being completed are not a valid one).
pub fn answer_if_asked() {
    clap_complete::CompleteEnv::with_factory(Cli::command)
        .var(VAR)
        .complete();
}

/// Writes the script that registers completion for `shell` (what `completions <SHELL>` prints).
pub fn write_registration(shell: Shell, out: &mut dyn Write) -> std::io::Result<()> {
    let completer: &dyn EnvCompleter = match shell {
        Shell::Bash => &Bash,
        Shell::Elvish => &Elvish,
        Shell::Fish => &Fish,
        Shell::Powershell => &Powershell,
        Shell::Zsh => &Zsh,
    };
    completer.write_registration(VAR, "karapace", "karapace", "karapace", out)
}

/// The store the command line being completed names (`--store PATH` or `--store=PATH`
/// anywhere in it), else the default.
fn engine(args: impl IntoIterator<Item = OsString>) -> Option<Engine> {
    let args: Vec<String> = args
        .into_iter()
        .filter_map(|a| a.into_string().ok())
        .collect();
    let mut flag = None;
    for (i, arg) in args.iter().enumerate() {
        if arg == "--store" {
            flag = args.get(i + 1).cloned();
        } else if let Some(v) = arg.strip_prefix("--store=") {
            flag = Some(v.to_owned());
        }
    }
    let root = super::store_root(flag.as_deref()).ok()?;
    Some(Engine::new(std::path::absolute(root).ok()?))
}

/// Names and short ids of the store's environments.
pub fn env_ids() -> Vec<CompletionCandidate> {
    let Some(engine) = engine(std::env::args_os()) else {
        return Vec::new();
    };
    let Ok((envs, _)) = engine.list_readable() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for env in envs {
        let state = format!("{:?}", env.state).to_lowercase();
        if let Some(name) = &env.name {
            out.push(
                CompletionCandidate::new(name)
                    .help(Some(format!("{} ({state})", env.short_id).into())),
            );
        }
        out.push(
            CompletionCandidate::new(&env.short_id)
                .help(env.name.as_ref().map(|n| n.clone().into()))
                .hide(env.name.is_some()),
        );
    }
    out
}

/// Hashes of the snapshots of the environment the command line names (`restore <ENV> <TAB>`),
/// or of every environment when that does not name exactly one.
pub fn snapshot_hashes() -> Vec<CompletionCandidate> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let Some(engine) = engine(args.iter().cloned()) else {
        return Vec::new();
    };
    let words: Vec<String> = args
        .iter()
        .filter_map(|a| a.to_str().map(str::to_owned))
        .collect();
    let named = words
        .iter()
        .position(|w| w == "restore")
        .and_then(|i| words.get(i + 1))
        .filter(|w| !w.starts_with('-'));
    let envs = match named.map(|q| engine.inspect(q)) {
        Some(Ok(env)) => vec![env],
        _ => engine
            .list_readable()
            .map(|(envs, _)| envs)
            .unwrap_or_default(),
    };
    let mut out = Vec::new();
    for env in envs {
        let Ok((_, snaps)) = engine.snapshots(&env.env_id) else {
            continue;
        };
        let shown = env.name.clone().unwrap_or_else(|| env.short_id.clone());
        for s in snaps {
            let help = match &s.label {
                Some(label) => format!("{shown}: {label}"),
                None => shown.clone(),
            };
            out.push(CompletionCandidate::new(&s.restore_hash).help(Some(help.into())));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_comes_from_the_line_being_completed() {
        let line = |words: &[&str]| words.iter().map(OsString::from).collect::<Vec<_>>();
        let at = |words: &[&str]| engine(line(words)).map(|e| e.root().to_path_buf());
        assert_eq!(
            at(&["karapace", "--", "karapace", "--store", "/s", "exec", ""]),
            Some("/s".into())
        );
        assert_eq!(
            at(&["karapace", "--", "karapace", "exec", "--store=/t", ""]),
            Some("/t".into())
        );
    }

    #[test]
    fn every_shell_gets_a_script_that_calls_back_into_karapace() {
        for shell in [
            Shell::Bash,
            Shell::Elvish,
            Shell::Fish,
            Shell::Powershell,
            Shell::Zsh,
        ] {
            let mut out = Vec::new();
            write_registration(shell, &mut out).expect("write");
            let text = String::from_utf8(out).expect("utf8");
            assert!(text.contains("COMPLETE"), "{shell:?}: {text}");
            assert!(text.contains("karapace"), "{shell:?}: {text}");
        }
    }
}

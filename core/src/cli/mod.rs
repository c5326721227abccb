//! The command-line front-end: parse, set up logging, dispatch to one module per subcommand, and
//! turn errors into exit codes in one place.

pub mod args;
mod banner;
mod cmd;
mod complete;
pub(crate) mod env_view;
pub mod fast;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Parser;
use tracing_subscriber::EnvFilter;

pub use args::{Cli, Command, GlobalArgs};

use crate::engine::Engine;
use crate::error::{CoreError, Result};

/// What every subcommand gets: the global flags and the engine over the chosen store.
pub struct Ctx {
    pub global: GlobalArgs,
    pub engine: Engine,
}

impl Ctx {
    pub fn json(&self) -> bool {
        self.global.json
    }
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    complete::answer_if_asked();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version on stdout (exit 0) and usage errors on stderr (exit 2).
            let _ = e.print();
            if e.exit_code() == 2
                && let Some(hint) = missing_dashes_hint(
                    &std::env::args_os()
                        .map(|a| a.to_string_lossy().into_owned())
                        .collect::<Vec<_>>(),
                )
            {
                crate::output::note(&hint);
            }
            return e.exit_code();
        }
    };
    init_logging(&cli.global);
    let store = store_root(cli.global.store.as_deref())
        .ok()
        .and_then(|r| std::path::absolute(r).ok());
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            report(&e, store.as_deref());
            e.exit_code()
        }
    }
}

/// `karapace exec env ls` (no `--`): clap only says `unexpected argument 'ls'`; say what to type.
fn missing_dashes_hint(args: &[String]) -> Option<String> {
    if args.iter().any(|a| a == "--") {
        return None;
    }
    let sub = args
        .iter()
        .skip(1)
        .find(|a| *a == "exec" || *a == "enter")?;
    Some(format!(
        "hint: put `--` between the environment and the command: karapace {sub} <ENV_ID> -- <COMMAND>..."
    ))
}

fn run(cli: Cli) -> Result<i32> {
    let ctx = context(cli.global)?;
    cmd::dispatch(&ctx, cli.command)
}

/// The engine over the chosen store. The root is made absolute once, here: every path derived
/// from it (layer trees, uppers) then is too, which the helper requires.
fn context(global: GlobalArgs) -> Result<Ctx> {
    let root = std::path::absolute(store_root(global.store.as_deref())?)
        .map_err(|e| CoreError::io("cannot resolve the store path", e))?;
    let engine = Engine::new(root).allow_without_landlock(global.allow_without_landlock);
    Ok(Ctx { global, engine })
}

/// `--store`, else `~/.local/share/karapace`. A leading `~/` expands to `$HOME`.
pub fn store_root(flag: Option<&str>) -> Result<PathBuf> {
    let home = || {
        karapace_dirs::home()
            .ok_or_else(|| CoreError::Usage("HOME is not set; pass --store <PATH>".into()))
    };
    match flag {
        Some("~") => home(),
        Some(p) if p.starts_with("~/") => Ok(home()?.join(&p[2..])),
        Some("") => Err(CoreError::Usage("--store must not be empty".into())),
        Some(p) => Ok(PathBuf::from(p)),
        None => crate::engine::default_root()
            .ok_or_else(|| CoreError::Usage("HOME is not set; pass --store <PATH>".into())),
    }
}

/// Logs go to stderr only. `KARAPACE_LOG` (tracing filter syntax) overrides `-v`/`--trace`.
fn init_logging(global: &GlobalArgs) {
    let default = if global.trace {
        "trace"
    } else if global.verbose {
        "debug"
    } else {
        "warn"
    };
    let filter = std::env::var("KARAPACE_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let _ = log_format().with_env_filter(filter).try_init();
}

/// The log format both binaries use (stderr, colour only on a terminal, no targets); each adds
/// its filter (`karapace`'s run path a plain level, so it never builds an `EnvFilter`).
fn log_format() -> tracing_subscriber::fmt::SubscriberBuilder<
    tracing_subscriber::fmt::format::DefaultFields,
    tracing_subscriber::fmt::format::Format,
    tracing_subscriber::filter::LevelFilter,
    fn() -> std::io::Stderr,
> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr as fn() -> std::io::Stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
}

/// Prints `error: <message>` (and suggestions, in text mode) on stderr; for an unknown
/// environment, which store was searched (`store`, when known).
fn report(e: &CoreError, store: Option<&std::path::Path>) {
    crate::output::note(&format!("error: {e}"));
    if let (CoreError::NoMatch { .. }, Some(store)) = (e, store) {
        crate::output::note(&format!(
            "note: searched the store at {} (choose another with --store)",
            store.display()
        ));
    }
    if let CoreError::NoMatch { suggestions, .. } = e
        && !suggestions.is_empty()
    {
        crate::output::note("Did you mean:");
        for s in suggestions {
            crate::output::note(&format!("  {s}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_root_expansion() {
        // SAFETY-free: tests in this module only read HOME.
        let home = std::env::var("HOME").unwrap_or_default();
        if home.is_empty() {
            return;
        }
        assert_eq!(
            store_root(Some("~/s")).unwrap(),
            PathBuf::from(&home).join("s")
        );
        assert_eq!(store_root(Some("/abs")).unwrap(), PathBuf::from("/abs"));
        assert_eq!(
            store_root(None).unwrap(),
            PathBuf::from(&home).join(".local/share/karapace")
        );
        assert_eq!(store_root(Some("")).unwrap_err().exit_code(), 2);
    }
}

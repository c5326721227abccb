//! The `karapace` binary's hot path: `exec` and `enter` command lines are recognised here without
//! clap and run straight away; every other command line goes to the complete CLI,
//! `karapace-cli`, installed next to `karapace`.
//!
//! Why: running a command in an environment is what users do hundreds of times a day, and the
//! complete CLI (clap's whole command tree, the WebAssembly resolver host, HTTP, image
//! decompression) costs about a millisecond just to load and relocate. This binary links only
//! the run path (measured in docs/benchmarks.md).
//!
//! The recogniser is deliberately narrow: it accepts exactly the command lines clap would parse
//! into `exec`/`enter` with `--store`/`--json`, and hands anything else — help, version,
//! verbose or trace logging, `KARAPACE_LOG`, unknown or repeated flags, a missing `--`,
//! non-UTF-8 arguments — to `karapace-cli` unchanged, which parses (or rejects) it with the full
//! grammar. So both binaries behave the same on every command line.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use super::{GlobalArgs, cmd, context, log_format, report};
use crate::engine::RunMode;

/// An `exec` or `enter` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLine {
    pub store: Option<String>,
    pub json: bool,
    pub mode: RunMode,
    pub env_id: String,
    pub command: Vec<String>,
}

/// Recognises an `exec`/`enter` command line (`args[0]` is the program); `None` for anything
/// the complete CLI must handle.
pub fn parse(args: &[OsString]) -> Option<RunLine> {
    // Logging and shell-completion requests (`COMPLETE=<shell>`) are the complete CLI's.
    if std::env::var_os("KARAPACE_LOG").is_some()
        || std::env::var_os("COMPLETE").is_some_and(|v| !v.is_empty() && v != "0")
    {
        return None;
    }
    let args: Vec<&str> = args
        .iter()
        .skip(1)
        .map(|a| a.to_str())
        .collect::<Option<_>>()?;
    let (mut store, mut json) = (None, false);
    let mut positionals: Vec<&str> = Vec::new();
    let mut rest = args.iter();
    let mut after_dashes = None;
    while let Some(&arg) = rest.next() {
        match arg {
            "--" => {
                after_dashes = Some(rest.by_ref().map(|s| (*s).to_owned()).collect::<Vec<_>>());
                break;
            }
            "--json" if !json => json = true,
            "--store" if store.is_none() => {
                let value = rest.next().filter(|v| !v.starts_with('-'))?;
                store = Some((*value).to_owned());
            }
            _ if arg.starts_with("--store=") && store.is_none() => {
                store = Some(arg["--store=".len()..].to_owned());
            }
            _ if arg.starts_with('-') => return None,
            _ => positionals.push(arg),
        }
    }
    let [sub, env_id] = positionals.as_slice() else {
        return None;
    };
    let (mode, command) = match (*sub, after_dashes) {
        ("exec", Some(cmd)) if !cmd.is_empty() => (RunMode::Exec, cmd),
        ("enter", None) => (RunMode::Enter, Vec::new()),
        ("enter", Some(cmd)) if !cmd.is_empty() => (RunMode::Enter, cmd),
        _ => return None,
    };
    Some(RunLine {
        store,
        json,
        mode,
        env_id: (*env_id).to_owned(),
        command,
    })
}

/// Runs a recognised command line; returns the process exit code, exactly as the complete CLI
/// would for the same line.
pub fn run(line: RunLine) -> i32 {
    // The complete CLI's default log level (no -v/--trace/KARAPACE_LOG here), without building
    // an `EnvFilter`.
    let _ = log_format().with_max_level(tracing::Level::WARN).try_init();
    let global = GlobalArgs {
        store: line.store,
        json: line.json,
        verbose: false,
        trace: false,
        // The flag is not recognised here: such command lines go to the complete CLI.
        allow_without_landlock: false,
    };
    let mut store = None;
    let result = context(global).and_then(|ctx| {
        store = Some(ctx.engine.root().to_path_buf());
        match line.mode {
            RunMode::Exec => cmd::exec::run(&ctx, &line.env_id, &line.command),
            RunMode::Enter => cmd::enter::run(&ctx, &line.env_id, &line.command),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            report(&e, store.as_deref());
            e.exit_code()
        }
    }
}

/// Environment variable naming the complete CLI (tests, unusual installs).
pub const CLI_ENV: &str = "KARAPACE_CLI";

/// The complete CLI: `KARAPACE_CLI`, else `karapace-cli` next to this binary (or one directory
/// up, for cargo's `examples/` and `deps/` layouts).
pub fn cli_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(CLI_ENV) {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    [dir.join("karapace-cli"), dir.join("../karapace-cli")]
        .into_iter()
        .find(|p| p.is_file())
}

/// Replaces this process with the complete CLI, same arguments and `argv[0]` (so usage and help
/// name `karapace`). Returns only when that fails, with the exit code to use.
pub fn delegate(args: &[OsString]) -> i32 {
    let Some(cli) = cli_path() else {
        eprintln!(
            "error: karapace-cli, which runs every command but exec and enter, is not installed \
             next to this karapace binary (set {CLI_ENV} to its path)"
        );
        return 1;
    };
    let mut command = std::process::Command::new(&cli);
    command.args(args.iter().skip(1));
    if let Some(arg0) = args.first() {
        command.arg0(arg0);
    }
    let e = command.exec();
    eprintln!("error: cannot run {}: {e}", cli.display());
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(args: &[&str]) -> Option<RunLine> {
        let v: Vec<OsString> = std::iter::once("karapace")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        parse(&v)
    }

    fn exec(store: Option<&str>, json: bool, env: &str, cmd: &[&str]) -> RunLine {
        RunLine {
            store: store.map(str::to_owned),
            json,
            mode: RunMode::Exec,
            env_id: env.to_owned(),
            command: cmd.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn exec_lines_with_global_flags_anywhere_before_the_dashes() {
        assert_eq!(
            line(&["exec", "e", "--", "true"]),
            Some(exec(None, false, "e", &["true"]))
        );
        assert_eq!(
            line(&["--store", "/s", "exec", "e", "--", "ls", "-la", "--json"]),
            Some(exec(Some("/s"), false, "e", &["ls", "-la", "--json"]))
        );
        assert_eq!(
            line(&["exec", "--json", "e", "--store=/s", "--", "sh", "-c", "x"]),
            Some(exec(Some("/s"), true, "e", &["sh", "-c", "x"]))
        );
        assert_eq!(
            line(&["exec", "e", "--store=", "--", "x"]),
            Some(exec(Some(""), false, "e", &["x"]))
        );
    }

    #[test]
    fn enter_with_or_without_a_command() {
        let e = line(&["enter", "dev"]).unwrap();
        assert_eq!((e.mode, e.command.len()), (RunMode::Enter, 0));
        let e = line(&["enter", "dev", "--", "vim", "-R"]).unwrap();
        assert_eq!(
            (e.mode, e.command),
            (RunMode::Enter, vec!["vim".into(), "-R".into()])
        );
    }

    #[test]
    fn everything_else_goes_to_the_complete_cli() {
        for args in [
            &[][..],
            &["build"],
            &["list", "--json"],
            &["exec", "e"],                 // no command: clap's error
            &["exec", "e", "true"],         // command without `--`
            &["exec", "e", "--"],           // empty command
            &["exec", "--", "true"],        // no environment
            &["exec", "e", "f", "--", "x"], // extra positional
            &["enter", "e", "--"],
            &["exec", "e", "-v", "--", "x"],
            &["--verbose", "exec", "e", "--", "x"],
            &["--trace", "exec", "e", "--", "x"],
            &["exec", "--help"],
            &["--version"],
            &["exec", "e", "--json", "--json", "--", "x"],
            &["--store", "a", "--store", "b", "exec", "e", "--", "x"],
            &["--store", "exec", "e", "--", "x"], // `exec` would be the store: let clap decide
            &["--store", "--json", "exec", "e", "--", "x"],
            &["--store"],
            &["exec", "e", "-", "--", "x"],
            &["exe", "e", "--", "x"],
        ] {
            assert_eq!(line(args), None, "{args:?}");
        }
    }

    #[test]
    fn non_utf8_arguments_go_to_the_complete_cli() {
        use std::os::unix::ffi::OsStringExt;
        let v = vec![
            OsString::from("karapace"),
            OsString::from("exec"),
            OsString::from("e"),
            OsString::from("--"),
            OsString::from_vec(vec![0xff, 0xfe]),
        ];
        assert_eq!(parse(&v), None);
    }
}

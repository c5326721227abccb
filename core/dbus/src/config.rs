//! The service's settings: which store, how long to stay up with nothing to do, and how to open a
//! terminal. All come from the process environment (a D-Bus activation file and a systemd unit can
//! set it) and one optional flag; nothing comes from a bus peer.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// The idle period when neither `--idle-timeout` nor `KARAPACE_DBUS_IDLE_TIMEOUT` says otherwise.
/// Short, because D-Bus activation starts the service again on the next call.
pub const DEFAULT_IDLE: Duration = Duration::from_mins(1);

/// The terminal command when `KARAPACE_TERMINAL` is unset: Debian's alternative for the desktop's
/// terminal emulator, whose `-e` every alternative accepts.
pub const DEFAULT_TERMINAL: [&str; 2] = ["x-terminal-emulator", "-e"];

/// What the service was started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The one store this service exposes: `KARAPACE_STORE`, else the CLI's default store.
    pub store_root: PathBuf,
    /// Exit after this long without a call and without a running job; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// The argv prefix that opens a terminal running the rest of the command line.
    pub terminal: Vec<String>,
    /// The `karapace` program the terminal runs (`karapace enter`).
    pub karapace_bin: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Store(#[from] karapace::error::CoreError),
    #[error("cannot resolve the store path: {0}")]
    StorePath(std::io::Error),
    #[error("invalid idle timeout '{0}': expected a whole number of seconds (0: never exit)")]
    IdleTimeout(String),
    #[error("KARAPACE_TERMINAL is set but empty")]
    EmptyTerminal,
    #[error("{0}")]
    Usage(String),
}

/// What the command line asked for besides running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    Serve(Config),
    Help,
    Version,
}

pub const USAGE: &str = "\
usage: karapace-dbus [--idle-timeout SECONDS]

Serves org.karapace.Manager1 on the session bus (normally started by D-Bus activation).

  --idle-timeout SECONDS  exit after this long without a call or a running job
                          (0: never; default 60; also KARAPACE_DBUS_IDLE_TIMEOUT)

Environment: KARAPACE_STORE (the store; default ~/.local/share/karapace),
KARAPACE_TERMINAL (terminal command prefix; default `x-terminal-emulator -e`), KARAPACE_LOG.";

impl Config {
    /// The configuration from the process environment and `args` (without the program name).
    pub fn from_env(args: impl IntoIterator<Item = OsString>) -> Result<Config, ConfigError> {
        match Self::invocation(args, |k| std::env::var_os(k))? {
            Invocation::Serve(c) => Ok(c),
            Invocation::Help | Invocation::Version => Err(ConfigError::Usage(
                "--help and --version do not serve".into(),
            )),
        }
    }

    /// Parses `args` with `var` as the environment. Refuses unknown flags, a timeout that is not
    /// a number of seconds, and an empty terminal command.
    pub fn invocation(
        args: impl IntoIterator<Item = OsString>,
        var: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Invocation, ConfigError> {
        let mut idle = var("KARAPACE_DBUS_IDLE_TIMEOUT").map(|v| v.to_string_lossy().into_owned());
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.to_str() {
                Some("--help" | "-h") => return Ok(Invocation::Help),
                Some("--version" | "-V") => return Ok(Invocation::Version),
                Some("--idle-timeout") => {
                    let value = args
                        .next()
                        .ok_or_else(|| ConfigError::Usage("--idle-timeout needs a value".into()))?;
                    idle = Some(value.to_string_lossy().into_owned());
                }
                Some(other) if other.starts_with("--idle-timeout=") => {
                    idle = Some(other["--idle-timeout=".len()..].to_owned());
                }
                _ => {
                    return Err(ConfigError::Usage(format!(
                        "unexpected argument '{}'\n{USAGE}",
                        arg.to_string_lossy().escape_debug()
                    )));
                }
            }
        }
        let idle_timeout = match idle {
            None => Some(DEFAULT_IDLE),
            Some(text) => match text.trim().parse::<u64>() {
                Ok(0) => None,
                Ok(secs) => Some(Duration::from_secs(secs)),
                Err(_) => return Err(ConfigError::IdleTimeout(text.escape_debug().to_string())),
            },
        };
        let store = var("KARAPACE_STORE").map(|v| v.to_string_lossy().into_owned());
        let store_root = std::path::absolute(karapace::cli::store_root(store.as_deref())?)
            .map_err(ConfigError::StorePath)?;
        let terminal = match var("KARAPACE_TERMINAL") {
            // Words split at whitespace, no quoting: a command prefix, not a shell line.
            Some(v) => {
                let words: Vec<String> = v
                    .to_string_lossy()
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect();
                if words.is_empty() {
                    return Err(ConfigError::EmptyTerminal);
                }
                words
            }
            None => DEFAULT_TERMINAL.iter().map(|s| (*s).to_owned()).collect(),
        };
        Ok(Invocation::Serve(Config {
            store_root,
            idle_timeout,
            terminal,
            karapace_bin: karapace_bin(),
        }))
    }
}

/// `karapace` installed beside this program (the same build), else whatever `PATH` finds.
fn karapace_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("karapace"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("karapace"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Invocation, ConfigError> {
        let env: Vec<(String, OsString)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        Config::invocation(args.iter().map(OsString::from), |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    fn serve(args: &[&str], env: &[(&str, &str)]) -> Config {
        match parse(args, env) {
            Ok(Invocation::Serve(c)) => c,
            other => panic!("not a serve invocation: {other:?}"),
        }
    }

    #[test]
    fn the_store_comes_from_karapace_store_else_the_default() {
        let c = serve(&[], &[("KARAPACE_STORE", "/srv/kp"), ("HOME", "/h")]);
        assert_eq!(c.store_root, PathBuf::from("/srv/kp"));
        assert_eq!(c.idle_timeout, Some(DEFAULT_IDLE));
        assert_eq!(c.terminal, ["x-terminal-emulator", "-e"]);
    }

    #[test]
    fn idle_timeout_flag_beats_the_environment_and_zero_means_never() {
        let env = [
            ("KARAPACE_STORE", "/s"),
            ("KARAPACE_DBUS_IDLE_TIMEOUT", "5"),
        ];
        assert_eq!(serve(&[], &env).idle_timeout, Some(Duration::from_secs(5)));
        assert_eq!(serve(&["--idle-timeout", "0"], &env).idle_timeout, None);
        assert_eq!(
            serve(&["--idle-timeout=7"], &env).idle_timeout,
            Some(Duration::from_secs(7))
        );
        assert!(matches!(
            parse(&["--idle-timeout", "-1"], &env),
            Err(ConfigError::IdleTimeout(_))
        ));
        assert!(matches!(
            parse(&["--idle-timeout"], &env),
            Err(ConfigError::Usage(_))
        ));
        assert!(matches!(
            parse(&["--bogus"], &env),
            Err(ConfigError::Usage(_))
        ));
    }

    #[test]
    fn the_terminal_command_is_split_into_words_and_must_not_be_empty() {
        let env = [
            ("KARAPACE_STORE", "/s"),
            ("KARAPACE_TERMINAL", " foot  --hold -- "),
        ];
        assert_eq!(serve(&[], &env).terminal, ["foot", "--hold", "--"]);
        assert!(matches!(
            parse(
                &[],
                &[("KARAPACE_STORE", "/s"), ("KARAPACE_TERMINAL", "  ")]
            ),
            Err(ConfigError::EmptyTerminal)
        ));
    }
}

//! `exec`, `enter` and `stop`: running commands inside an environment and ending sessions.

use std::io::IsTerminal;
use std::time::Duration;

use karapace_backend_mock as mock;
use karapace_helper_client::{self as hc, StdioMode};
use karapace_schema::Backend;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::Signals;

use super::lifecycle::{self, Op};
use super::{Engine, policy_layer, runtime};
use crate::error::{CoreError, Result};
use crate::prereqs;

/// How a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Non-interactive; stdin, stdout and stderr streamed.
    Exec,
    /// Interactive, with the user's terminal; a login shell when no command is given.
    Enter,
}

/// How long `stop` waits after SIGTERM before it sends SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

impl Engine {
    /// Runs `argv` in the environment and returns the inner command's exit status
    /// (128+N when it died of signal N).
    pub fn run(&self, query: &str, argv: &[String], mode: RunMode) -> Result<i32> {
        let store = self.open_write()?;
        let env = self.find(&store, query)?;
        lifecycle::check(
            if mode == RunMode::Exec {
                Op::Exec
            } else {
                Op::Enter
            },
            env.state,
            query,
        )?;
        let lock = policy_layer::read_lock(&store, &env)?;
        let argv: Vec<String> = if argv.is_empty() {
            // The user's login shell inside: bash when the image has it, else sh.
            [
                "/bin/sh",
                "-c",
                "command -v bash >/dev/null 2>&1 && exec bash -l; exec sh -l",
            ]
            .map(String::from)
            .to_vec()
        } else {
            argv.to_vec()
        };
        match lock.runtime_backend {
            Backend::Mock => {
                let upper = store.env_upper(&env.env_id);
                let extra = [("KARAPACE_ENV_ID".to_owned(), env.env_id.clone())];
                let mut child = mock::spawn(&upper, &argv, &extra)
                    .map_err(|e| CoreError::io(format!("cannot start '{}'", argv[0]), e))?;
                let _session = store.begin_session(&env.env_id, child.id())?;
                let forwarder = forward_signals(child.id())?;
                let status = child
                    .wait()
                    .map_err(|e| CoreError::io("cannot wait for the command", e));
                forwarder.close();
                Ok(mock::exit_code(status?))
            }
            Backend::Namespace => {
                if !prereqs::skipped()
                    && let Some(m) = prereqs::check().into_iter().next()
                {
                    return Err(CoreError::Other(format!("{} (fix: {})", m.what, m.fix)));
                }
                let source_dir = policy_layer::read_source_dir(&store, &env)?;
                let tty = mode == RunMode::Enter && std::io::stdin().is_terminal();
                let spec = runtime::session_spec(&store, &env, &lock, &source_dir, argv, tty)?;
                let session = hc::spawn(&spec, StdioMode::Inherit).map_err(CoreError::helper)?;
                let _guard = store.begin_session(&env.env_id, session.helper_pid())?;
                let outcome = session.wait().map_err(CoreError::helper);
                if tty {
                    hc::terminal::restore_foreground();
                }
                Ok(outcome?.status.code())
            }
            Backend::Oci => Err(CoreError::Unavailable {
                what: "running environments with the 'oci' backend".into(),
            }),
        }
    }

    /// Ends every session of a running environment: SIGTERM, then SIGKILL after a grace period.
    /// Returns how many sessions were stopped.
    pub fn stop(&self, query: &str) -> Result<usize> {
        let Some(store) = self.open_read()? else {
            return Err(CoreError::NoMatch {
                query: query.to_owned(),
                suggestions: Vec::new(),
            });
        };
        let env = self.find(&store, query)?;
        lifecycle::check(Op::Stop, env.state, query)?;
        let sessions = store.sessions(&env.env_id)?;
        // Sessions end in parallel: each gets the full grace period, not a share of it.
        let handles: Vec<_> = sessions
            .iter()
            .map(|s| {
                let (pid, start) = (s.pid, s.start_time);
                std::thread::spawn(move || hc::stop_session(pid, Some(start), STOP_GRACE))
            })
            .collect();
        let mut stopped = 0;
        for h in handles {
            match h.join() {
                Ok(Ok(_)) => stopped += 1,
                // Already gone between listing and signalling: nothing left to stop.
                Ok(Err(hc::StopError::NotRunning(_))) => {}
                Ok(Err(e)) => return Err(CoreError::Other(e.to_string())),
                Err(_) => return Err(CoreError::Other("stopping a session failed".into())),
            }
        }
        Ok(stopped)
    }
}

/// Forwards SIGINT, SIGTERM, SIGHUP and SIGQUIT received by karapace to `pid`, so karapace itself
/// outlives the command and reports its status (mock backend; the helper client does the same
/// for real sessions).
fn forward_signals(pid: u32) -> Result<signal_hook::iterator::Handle> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT])
        .map_err(|e| CoreError::io("cannot install signal handlers", e))?;
    let handle = signals.handle();
    let target = Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if let Ok(sig) = Signal::try_from(sig) {
                let _ = kill(target, sig);
            }
        }
    });
    Ok(handle)
}

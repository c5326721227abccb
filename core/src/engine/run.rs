//! `exec`, `enter` and `stop`: running commands inside an environment and ending sessions.
//! The environment's backend runs the session (`backends`); `stop` needs no backend, only the
//! sessions recorded in the store.

use std::time::Duration;

use karapace_helper_client::{self as hc, StdioMode};

use super::lifecycle::{self, Op};
use super::{Engine, backends, policy_layer};
use crate::error::{CoreError, Result};

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

/// How a session runs, beyond its command: the CLI's `--workdir` and `--root`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionOptions {
    /// The directory of the environment to start in (absolute) instead of the default (the home
    /// directory when the environment shares it, else `/`).
    pub workdir: Option<std::path::PathBuf>,
    /// Root inside the environment, with the id maps of a build and the capabilities a package
    /// manager needs (`apt-get install` in a session); see `runtime::as_root`.
    pub root: bool,
}

impl Engine {
    /// Runs `argv` in the environment and returns the inner command's exit status
    /// (128+N when it died of signal N).
    pub fn run(&self, query: &str, argv: &[String], mode: RunMode) -> Result<i32> {
        self.run_with(query, argv, mode, &SessionOptions::default())
    }

    /// [`Engine::run`] with the session's options.
    pub fn run_with(
        &self,
        query: &str,
        argv: &[String],
        mode: RunMode,
        options: &SessionOptions,
    ) -> Result<i32> {
        if let Some(dir) = &options.workdir
            && (!dir.is_absolute() || dir.as_os_str().len() > 4096)
        {
            return Err(CoreError::Usage(format!(
                "--workdir must be an absolute path inside the environment, not '{}'",
                dir.display()
            )));
        }
        // Start the helper first: its exec and start-up overlap reading the store and building
        // the request. Backends that do not drive the helper drop it (which ends it).
        let pending = hc::prespawn(StdioMode::Inherit).ok();
        let store = self.open_existing_recovered(query)?;
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
        let policy_tree = policy_layer::layer_tree(&store, &env)?;
        let lock = policy_layer::read_lock(&policy_tree)?;
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
        backends::of(lock.runtime_backend).run(backends::Session {
            store: &store,
            env: &env,
            lock: &lock,
            policy_tree: &policy_tree,
            argv,
            mode,
            options,
            prespawned: pending,
            allow_without_landlock: self.allow_without_landlock,
        })
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
                Ok(Err(e)) => return Err(CoreError::Session(e.to_string())),
                Err(_) => return Err(CoreError::Session("stopping a session failed".into())),
            }
        }
        Ok(stopped)
    }
}

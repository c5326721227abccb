//! `exec`, `enter` and `stop`: running commands inside an environment and ending sessions.

use std::time::{Duration, Instant};

use karapace_backend_mock as mock;
use karapace_helper_client::{self as hc, StdioMode};
use karapace_schema::Backend;
use karapace_store::EnvMetadata;
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

/// How a session runs, beyond its command: the CLI's `--workdir` and `--root`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionOptions {
    /// The directory of the environment to start in (absolute) instead of the default (the home
    /// directory when the environment shares it, else `/`).
    pub workdir: Option<std::path::PathBuf>,
    /// Root inside the environment, with the id maps of a build and the capabilities a package
    /// manager needs (`apt-get install` in a session); see [`runtime::as_root`].
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
        // the request. Environments of other backends simply drop it (which kills it).
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
        match lock.runtime_backend {
            Backend::Mock => {
                drop(pending);
                run_mock(&store, &env, &argv)
            }
            Backend::Namespace => {
                let source_dir = policy_layer::read_source_dir(&policy_tree)?;
                // Interactive sessions with a terminal get a pty of the environment's own,
                // relayed to ours by the session (`hc::Session`).
                let tty = if mode == RunMode::Enter {
                    hc::terminal::caller_size()
                } else {
                    None
                };
                let mut spec = runtime::session_spec(
                    &store,
                    &env,
                    &lock,
                    &policy_tree,
                    &source_dir,
                    argv,
                    tty,
                )?;
                if options.root {
                    runtime::as_root(&mut spec);
                }
                if let Some(dir) = &options.workdir {
                    spec.cwd.clone_from(dir);
                }
                spec.allow_without_landlock =
                    runtime::allow_without_landlock(self.allow_without_landlock)?;
                let (session, mut guard) = start_session(&store, &env.env_id, &mut spec, pending)
                    .map_err(explain_setup_failure)
                    .map_err(|e| explain_exec_failure(e, &env))?;
                // Return as soon as the workload is done; the helper finishes unmounting
                // (and syncing) the overlay on its own, its session record live until then.
                let (outcome, helper_gone) = session
                    .wait_workload()
                    .map_err(|e| explain_exec_failure(CoreError::helper(e), &env))?;
                if !helper_gone {
                    guard.keep_record();
                }
                log_timings(&outcome);
                Ok(outcome.status.code())
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

/// A session whose helper could not be started or could not create its namespaces or mount its
/// layers: when the host lacks the matching prerequisite (the helper binary; user namespaces;
/// overlayfs), say that and how to fix it rather than only which step failed. The checks run only after
/// such a failure: they read several `/proc` files, which every successful `exec` would
/// otherwise pay for, and a host they would flag may still work (an `AppArmor` profile can allow
/// the helper its user namespaces). Every other error (a command that cannot be executed, a
/// refused mount, a store error) passes through unchanged, with its own exit code.
fn explain_setup_failure(e: CoreError) -> CoreError {
    use hc::{HelperError, Refusal};
    use prereqs::Kind;
    let kind = match &e {
        CoreError::Helper(HelperError::NotFound(_) | HelperError::Spawn(_)) => Kind::Helper,
        // The backend's names of the steps these prerequisites are needed for.
        CoreError::Helper(HelperError::Refused(Refusal::Setup { step, .. })) => {
            match step.as_str() {
                "clone" | "write id map" | "unshare" => Kind::UserNamespaces,
                "overlay mount" => Kind::Overlay,
                _ => return e,
            }
        }
        _ => return e,
    };
    if prereqs::skipped() {
        return e;
    }
    match prereqs::check().into_iter().find(|m| m.kind == kind) {
        Some(m) => CoreError::Other(format!("{} (fix: {}; the helper said: {e})", m.what, m.fix)),
        None => e,
    }
}

/// A mock-backend session: the command runs on the host, in the writable layer (tests only).
fn run_mock(store: &karapace_store::Store, env: &EnvMetadata, argv: &[String]) -> Result<i32> {
    // The mock is a test double: its commands run on the host, unconfined. A
    // manifest (someone else's file) must not turn `exec` into a host shell.
    if std::env::var_os(MOCK_EXEC_ENV).is_none_or(|v| v != "1") {
        return Err(CoreError::State(format!(
            "environment {} uses the test-only mock backend, whose commands run on \
             the host without any isolation; refused (set {MOCK_EXEC_ENV}=1 to run \
             them anyway, in tests)",
            env.short_id
        )));
    }
    let upper = store.env_upper(&env.env_id);
    let extra = [("KARAPACE_ENV_ID".to_owned(), env.env_id.clone())];
    let mut child = mock::spawn(&upper, argv, &extra).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CoreError::CannotExecute {
                command: argv[0].clone(),
                env: env_label(env),
                reason: "command not found".into(),
                code: 127,
            }
        } else {
            CoreError::io(format!("cannot start '{}'", argv[0]), e)
        }
    })?;
    let _session = store.begin_session(&env.env_id, child.id(), None)?;
    let forwarder = forward_signals(child.id())?;
    let status = child
        .wait()
        .map_err(|e| CoreError::io("cannot wait for the command", e));
    forwarder.close();
    Ok(mock::exit_code(status?))
}

/// Set to `1` to let `exec`/`enter` run commands of mock-backend environments (tests only).
pub const MOCK_EXEC_ENV: &str = "KARAPACE_ALLOW_MOCK_EXEC";

/// How errors name an environment: its name, else its short id.
fn env_label(env: &EnvMetadata) -> String {
    env.name.clone().unwrap_or_else(|| env.short_id.clone())
}

/// A command the helper could not execute: `<cmd>: command not found in <env>` (exit 127) or
/// `<cmd>: cannot execute (<reason>) in <env>` (126), rather than the helper's errno.
fn explain_exec_failure(e: CoreError, env: &EnvMetadata) -> CoreError {
    let CoreError::Helper(hc::HelperError::Refused(hc::Refusal::Exec { argv0, errno })) = &e else {
        return e;
    };
    let errno = nix::errno::Errno::from_raw(*errno);
    let reason = match errno {
        nix::errno::Errno::ENOENT => "command not found".to_owned(),
        other => format!("cannot execute ({})", other.desc()),
    };
    CoreError::CannotExecute {
        command: argv0.clone(),
        env: env_label(env),
        reason,
        code: e.exit_code(),
    }
}

/// Where a session's time went (`-v`, or `KARAPACE_LOG=debug`): milliseconds from spawning the
/// helper, on one monotonic clock shared by the core and the helper.
fn log_timings(o: &hc::RunOutcome) {
    let base = o.client.spawn;
    let ms = |t: u64| {
        if t < base {
            -1.0
        } else {
            // Nanoseconds to milliseconds, for a log line.
            #[allow(clippy::cast_precision_loss)]
            let v = (t - base) as f64 / 1e6;
            v
        }
    };
    let (c, h) = (&o.client, &o.timings);
    tracing::debug!(
        "session timings (ms from spawn): connected {:.2}, handshake {:.2}, request {:.2}, \
         validated {:.2}, namespaces {:.2}, mounts {:.2}, exec {:.2}, exited {:.2}, \
         reported {:.2}, helper reaped {:.2}",
        ms(c.connected),
        ms(c.handshake),
        ms(h.request),
        ms(h.validated),
        ms(h.namespaces),
        ms(h.mounts),
        ms(h.exec),
        ms(h.exited),
        ms(c.exited),
        ms(c.reaped)
    );
}

/// How long a new session waits for sessions that are ending (their overlay is still mounted
/// and can be neither joined nor mounted a second time).
const ENDING_SESSIONS_WAIT: Duration = Duration::from_secs(10);

/// Starts a helper session of a namespace-backend environment. While another session of the
/// environment runs, the new one joins it (one overlay mount per upper directory, ever);
/// otherwise it mounts the environment afresh. Session starts of one environment are serialised,
/// and the new session is recorded (with its init process, for later joiners) before the next
/// one may start.
fn start_session(
    store: &karapace_store::Store,
    env_id: &str,
    spec: &mut hc::RunSpec,
    mut pending: Option<hc::Pending>,
) -> Result<(hc::Session, karapace_store::SessionGuard)> {
    let _setup = store.session_setup(env_id)?;
    let deadline = Instant::now() + ENDING_SESSIONS_WAIT;
    loop {
        let live = store.sessions(env_id)?;
        spec.join = live
            .iter()
            .filter(|s| !s.is_ending())
            .filter_map(|s| {
                Some(hc::JoinTarget {
                    pid: s.init_pid?,
                    start_time: s.init_start_time?,
                })
            })
            .collect();
        let must_wait = !live.is_empty() && spec.join.is_empty();
        if !must_wait {
            let started = match pending.take() {
                Some(p) => p.run(spec),
                None => hc::spawn(spec, StdioMode::Inherit),
            };
            let mut session = started.map_err(CoreError::helper)?;
            // Records of sessions that have ended are removed while the helper sets the
            // environment up, the longest wait of a session start: unlinking the last
            // session's record can wait on the disk (its block, written moments ago, is freed
            // with a synchronous discard on ext4 mounted with `discard`), which delayed the
            // request when done before it, and the workload's exit when done after the start.
            store.prune_dead_sessions(env_id);
            match session.wait_started() {
                Ok(_) => {
                    let guard =
                        store.begin_session(env_id, session.helper_pid(), session.init_pid())?;
                    return Ok((session, guard));
                }
                // Every session to join ended meanwhile; their overlay may still be unmounting.
                Err(hc::HelperError::Refused(hc::Refusal::NoJoinTarget)) => {
                    let _ = session.wait();
                }
                Err(e) => {
                    let _ = session.wait();
                    return Err(CoreError::helper(e));
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(CoreError::Other(format!(
                "environment {env_id} has {} session(s) that can be neither joined nor waited \
                 out (started by an older karapace?); end them with 'karapace stop'",
                live.len()
            )));
        }
        // Ending sessions usually finish unmounting within a millisecond or two: wake the moment
        // they are gone. (Sessions that can be neither joined nor waited on individually, i.e.
        // recorded without an init process, are polled.)
        let mut waited = false;
        for s in live.iter().filter(|s| s.is_ending()) {
            let left = deadline.saturating_duration_since(Instant::now());
            hc::wait_process_exit(s.pid, s.start_time, left);
            waited = true;
        }
        if !waited {
            std::thread::sleep(Duration::from_millis(5));
        }
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

//! The `namespace` backend: builds through the helper-run package manager (`pipeline`), and
//! sessions the helper sets up with Linux namespaces, fresh or joining the running ones.

use std::time::{Duration, Instant};

use karapace_helper_client::{self as hc, StdioMode};
use karapace_store::{EnvMetadata, SessionInfo};

use super::{BuildJob, RuntimeBackend, Session};
use crate::engine::pipeline::{self, Built};
use crate::engine::{RunMode, runtime};
use crate::error::{CoreError, Result};
use crate::prereqs;

pub struct Namespace;

impl RuntimeBackend for Namespace {
    fn build(&self, job: &BuildJob<'_>) -> Result<Built> {
        let landlock_optout = runtime::allow_without_landlock(job.allow_without_landlock)?;
        pipeline::build(
            job.store,
            job.manifest,
            job.request,
            job.locked,
            landlock_optout,
        )
    }

    fn run(&self, s: Session<'_>) -> Result<i32> {
        run_session(s, None)
    }
}

/// Runs a session through the helper: in the helper's own namespaces, or (`oci`) by the OCI
/// runtime the helper starts on a bundle of the same request (`oci.rs`).
pub(super) fn run_session(s: Session<'_>, oci: Option<hc::OciRuntime>) -> Result<i32> {
    let source_dir = crate::engine::policy_layer::read_source_dir(s.policy_tree)?;
    // Interactive sessions with a terminal get a pty of the environment's own, relayed to
    // ours by the session (`hc::Session`).
    let tty = if s.mode == RunMode::Enter {
        hc::terminal::caller_size()
    } else {
        None
    };
    let mut spec = runtime::session_spec(
        s.store,
        s.env,
        s.lock,
        s.policy_tree,
        &source_dir,
        s.argv,
        tty,
    )?;
    if s.options.root {
        runtime::as_root(&mut spec);
    }
    if let Some(dir) = &s.options.workdir {
        spec.cwd.clone_from(dir);
    }
    spec.allow_without_landlock = runtime::allow_without_landlock(s.allow_without_landlock)?;
    spec.oci = oci;
    let (session, mut guard) = start_session(s.store, s.env, &mut spec, s.prespawned)
        .map_err(explain_setup_failure)
        .map_err(|e| explain_exec_failure(e, s.env))?;
    // Return as soon as the workload is done; the helper finishes unmounting (and syncing)
    // the overlay on its own, its session record live until then.
    let (outcome, helper_gone) = session
        .wait_workload()
        .map_err(|e| explain_exec_failure(CoreError::helper(e), s.env))?;
    if !helper_gone {
        guard.keep_record();
    }
    log_timings(&outcome);
    Ok(outcome.status.code())
}

/// A session whose helper could not be started or could not create its namespaces or mount its
/// layers: when the host lacks the matching prerequisite (the helper binary; user namespaces;
/// overlayfs), say that and how to fix it rather than only which step failed. The checks run only after
/// such a failure: they read several `/proc` files, which every successful `exec` would
/// otherwise pay for, and a host they would flag may still work (an `AppArmor` profile can allow
/// the helper its user namespaces). Every other error (a command that cannot be executed, a
/// refused mount, a store error) passes through unchanged, with its own exit code.
fn explain_setup_failure(e: CoreError) -> CoreError {
    use hc::{HelperError, Refusal, SetupStep};
    use prereqs::Kind;
    let kind = match &e {
        CoreError::Helper(HelperError::NotFound(_) | HelperError::Spawn(_)) => Kind::Helper,
        // The steps these prerequisites are needed for.
        CoreError::Helper(HelperError::Refused(Refusal::Setup { step, .. })) => match step {
            SetupStep::Clone | SetupStep::WriteIdMap | SetupStep::Unshare => Kind::UserNamespaces,
            SetupStep::OverlayMount => Kind::Overlay,
            _ => return e,
        },
        _ => return e,
    };
    if prereqs::skipped() {
        return e;
    }
    match prereqs::check().into_iter().find(|m| m.kind == kind) {
        Some(m) => CoreError::Host(format!("{} (fix: {}; the helper said: {e})", m.what, m.fix)),
        None => e,
    }
}

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

/// Starts a helper session of a namespace- or oci-backend environment. While another session of
/// the environment runs, the new one joins it (one overlay mount per upper directory, ever);
/// otherwise it mounts the environment afresh. Session starts of one environment are serialised,
/// and the new session is recorded (with its init process, for later joiners) before the next
/// one may start.
fn start_session(
    store: &karapace_store::Store,
    env: &EnvMetadata,
    spec: &mut hc::RunSpec,
    mut pending: Option<hc::Pending>,
) -> Result<(hc::Session, karapace_store::SessionGuard)> {
    let env_id = env.env_id.as_str();
    let id_maps = runtime::id_maps_name(spec);
    let _setup = store.session_setup(env_id)?;
    let deadline = Instant::now() + ENDING_SESSIONS_WAIT;
    loop {
        let live = store.sessions(env_id)?;
        // Records of older versions do not say: the helper compares the maps itself.
        let same_maps = |s: &&SessionInfo| s.id_maps.as_deref().is_none_or(|m| m == id_maps);
        let others: Vec<&SessionInfo> = live
            .iter()
            .filter(|s| !s.is_ending() && !same_maps(s))
            .collect();
        if let Some(first) = others.first() {
            let theirs = first.id_maps.as_deref().unwrap_or_default();
            return Err(other_maps_running(env, spec.identity, theirs, others.len()));
        }
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
                    let guard = store.begin_session_with_maps(
                        env_id,
                        session.helper_pid(),
                        session.init_pid(),
                        Some(id_maps),
                    )?;
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
            return Err(CoreError::Session(format!(
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

/// A session cannot start beside running sessions whose user namespace maps other ids: it
/// would have to join them (the overlay is mounted once) and would then run as another id
/// inside. `identity` is the new session's; `theirs` is the running sessions'
/// [`runtime::id_maps_name`].
fn other_maps_running(
    env: &EnvMetadata,
    identity: hc::Identity,
    theirs: &str,
    count: usize,
) -> CoreError {
    let label = env_label(env);
    CoreError::State(match identity {
        hc::Identity::Caller => format!(
            "cannot start a session of '{label}' while {count} --root session(s) run in it: \
             sessions of an environment share its namespaces, and --root sessions map your \
             ids differently; run the command with --root as well, wait for them to end, or \
             end them with 'karapace stop {label}'"
        ),
        hc::Identity::Root if theirs == runtime::PLAIN_SESSION_MAPS => format!(
            "cannot start a --root session of '{label}' while {count} session(s) without \
             --root run in it: sessions of an environment share its namespaces, and theirs map \
             your id to itself, not to root; end them first ('karapace stop {label}') or run \
             the command without --root"
        ),
        // Sessions of an `oci` environment without --root, which map only the caller's id to
        // root, or --root sessions started before the caller's subordinate range changed.
        hc::Identity::Root => format!(
            "cannot start a --root session of '{label}' while {count} session(s) with other \
             id maps run in it (started without --root, or before your subordinate id range \
             changed): sessions of an environment share its namespaces; wait for them to end \
             or end them with 'karapace stop {label}'"
        ),
    })
}

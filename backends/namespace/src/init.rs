//! The environment's init process (pid 1 of its pid namespace): finishes the
//! setup, starts the workload, then relays signals and reaps until the
//! workload exits.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};

use karapace_protocol::{
    Identity, Network, Refusal, Reply, Timings, WaitStatus, monotonic_ns, write_frame,
};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{WaitPidFlag, WaitStatus as NixWait, waitpid};
use nix::unistd::{Pid, pipe2};

use crate::{
    IdMap, Mode, Prepared, SetupStep, Step, confine, idmap, oci, privilege, pty, rootfs, sys,
    workload,
};

const SI_KERNEL: i32 = 0x80;

fn report(ev: &mut File, msg: &Reply) -> bool {
    write_frame(ev, msg).is_ok()
}

/// Reports `why` as the session's failure; returns the exit code that goes with it.
pub(crate) fn fail(ev: &mut File, why: impl Into<Refusal>) -> i32 {
    report(ev, &Reply::Failed(why.into()));
    1
}

/// Runs in the cloned child; returns the process exit code. `terminal` is this process's end
/// of the terminal channel (interactive sessions only, see `pty.rs`).
pub fn run(
    p: &Prepared,
    uid: u32,
    gid: u32,
    events: OwnedFd,
    go: OwnedFd,
    terminal: Option<UnixStream>,
) -> i32 {
    let mut ev = File::from(events);
    let mut timings = Timings::default();
    // An `oci` session's runtime allocates the pty (in the environment's devpts instance) and
    // hands its master over a console socket; the channel then carries that one.
    let (terminal, console) = if p.oci.is_some() {
        (None, terminal)
    } else {
        (terminal, None)
    };
    // Of the helper's descriptors keep only what the setup needs: the core's socket and
    // anything else the helper holds never reach this process's later life or the workload.
    let mut keep = vec![0, 1, 2, ev.as_raw_fd(), go.as_raw_fd()];
    keep.extend(p.host_fds());
    keep.extend(terminal.as_ref().map(AsRawFd::as_raw_fd));
    keep.extend(console.as_ref().map(AsRawFd::as_raw_fd));
    // SAFETY: nothing this process uses owns another descriptor (the helper's socket and
    // listener objects stay untouched in its memory; this process ends in `exit_now`).
    let result = unsafe { sys::close_all_except(&keep) }
        .map_err(|e| Step(SetupStep::CloseDescriptors, e))
        .and_then(|()| {
            if p.oci.is_some() {
                setup_oci(p, uid, gid, go, &mut timings)
            } else {
                setup(p, uid, gid, go, &mut timings)
            }
        })
        .and_then(|()| session_pty(p, terminal))
        .and_then(|slave| {
            let mut kept: Vec<RawFd> = slave.as_ref().map(AsRawFd::as_raw_fd).into_iter().collect();
            kept.extend(console.as_ref().map(AsRawFd::as_raw_fd));
            forget_the_host(p, ev.as_raw_fd(), &kept).map(|()| slave)
        });
    match result {
        Ok(slave) => supervise(p, &mut ev, timings, slave, console),
        Err(step) => fail(&mut ev, step),
    }
}

/// Interactive sessions: a pty of the environment's devpts instance, whose master goes to the
/// helper now (and the channel is closed); returns the slave for the workload.
fn session_pty(p: &Prepared, terminal: Option<UnixStream>) -> Result<Option<OwnedFd>, Step> {
    let (Some(size), Some(channel)) = (p.tty, terminal) else {
        return Ok(None);
    };
    let (master, slave) = pty::open(size)?;
    pty::send_master(channel, master)?;
    Ok(Some(slave))
}

/// Once the root is assembled (and an interactive session's pty allocated, its master sent):
/// closes every descriptor but stdio, the report pipe and the pty's slave (the validated paths
/// were opened in the host's mount namespace: through `/proc/1/fd/N/..` they would lead back
/// to the host's file system), then decides whether this process may be inspected by
/// processes of its own user ([`joinable`]).
fn forget_the_host(p: &Prepared, events: RawFd, kept: &[RawFd]) -> Result<(), Step> {
    let mut keep = vec![0, 1, 2, events];
    keep.extend(kept);
    // SAFETY: the `Opened` descriptors of `p` are closed here and never used again: `p` is only
    // read for its argv, environment and paths from now on, and never dropped (this process
    // ends in `exit_now`). The slave's `OwnedFd` is kept open.
    unsafe { sys::close_all_except(&keep) }.map_err(|e| Step(SetupStep::CloseRange, e))?;
    drop_privilege(p)?;
    joinable(p)
}

/// The privileged mode: every capability goes once the environment is assembled (this process
/// only starts the workload, relays and reaps from now on).
fn drop_privilege(p: &Prepared) -> Result<(), Step> {
    if p.mode == Mode::Privileged {
        privilege::drop_all().map_err(|e| Step(SetupStep::DropCapabilities, e))?;
    }
    Ok(())
}

/// Whether processes of the caller's user may inspect this process (`PR_SET_DUMPABLE`): its
/// `/proc/<pid>/fd`, `root`, `cwd`, `environ` (the helper's whole environment) and memory, and
/// `setns` through its pidfd, which is how a later session joins this one (join.rs). With
/// Landlock the workload is kept out by its Landlock domain (a sandboxed process can ptrace or
/// inspect only processes in its own domain or below), so this process stays joinable. Without
/// Landlock it is made non-dumpable: then only a process with `CAP_SYS_PTRACE` in the host's
/// user namespace may inspect it — not the workload, but not an unprivileged joiner either.
/// The workload's own dumpable flag is reset by its `execve`.
///
/// An `oci` session's workload runs without Landlock, and this process's root is the host's
/// file system as it sees it; it stays dumpable all the same, so that later sessions can join:
/// it keeps a capability the workload never has ([`oci::INIT_GUARD`], permitted only), and the
/// kernel lets a process inspect one whose permitted capabilities are not all among its own
/// only with `CAP_SYS_PTRACE` over its user namespace, which the workload lacks and the helper
/// of a later session (that user namespace's owner) has.
fn joinable(p: &Prepared) -> Result<(), Step> {
    let dumpable = p.landlock || p.oci.is_some();
    nix::sys::prctl::set_dumpable(dumpable).map_err(|e| Step(SetupStep::Dumpable, e))
}

/// Waits until the helper releases this process, then ties this process's
/// life to the helper's: `PR_SET_PDEATHSIG`, and a check that the helper did
/// not die before it took effect (the release pipe's write end is then
/// closed).
fn wait_release(go: OwnedFd) -> Result<(), Step> {
    let mut go = File::from(go);
    let mut byte = [0u8; 1];
    let got = go
        .read(&mut byte)
        .map_err(|_| Step(SetupStep::WaitForRelease, Errno::EIO))?;
    if got != 1 {
        return Err(Step(SetupStep::HelperWentAway, Errno::EPIPE));
    }
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| Step(SetupStep::DeathSignal, e))?;
    let mut fds = [PollFd::new(go.as_fd(), PollFlags::POLLIN)];
    let _ = poll(&mut fds, PollTimeout::ZERO);
    if fds[0]
        .revents()
        .is_some_and(|r| r.contains(PollFlags::POLLHUP))
    {
        return Err(Step(SetupStep::HelperWentAway, Errno::EPIPE));
    }
    Ok(())
}

fn setup(p: &Prepared, uid: u32, gid: u32, go: OwnedFd, t: &mut Timings) -> Result<(), Step> {
    // Step 1 (continued): id maps. The parent releases us once it has
    // written subordinate maps; a single map we write ourselves.
    wait_release(go)?;
    if p.mode == Mode::Privileged {
        // No user namespace: the helper's own capabilities do the setup.
        privilege::raise().map_err(|e| Step(SetupStep::RaiseCapabilities, e))?;
    }
    // The helper is not dumpable, and neither is this copy of it: its /proc files would
    // belong to the host's root, so it could not write its own id map, and fuse-overlayfs
    // could not open the layers through its /proc/<pid>/fd. No workload exists yet;
    // `joinable` decides once the root is assembled. (A privileged helper's copy holds
    // capabilities its user's other processes lack: the kernel keeps them from inspecting
    // it all the same.)
    nix::sys::prctl::set_dumpable(true).map_err(|e| Step(SetupStep::Dumpable, e))?;
    write_single_map(p, uid, gid)?;

    // Step 2: the remaining namespaces, in this process only.
    session_namespaces(p)?;
    t.namespaces = monotonic_ns();

    // Steps 3 and 4: mounts, then pivot_root.
    let root = rootfs::assemble(p)?;
    rootfs::pivot(&root)?;
    drop(root);
    t.mounts = monotonic_ns();
    Ok(())
}

/// A single id map, which this process writes itself (the helper writes the others before
/// releasing it): the caller's own id, mapped to [`Prepared::mapped_identity`]. The privileged
/// mode has no user namespace.
fn write_single_map(p: &Prepared, uid: u32, gid: u32) -> Result<(), Step> {
    if p.id_map != IdMap::Single || p.mode != Mode::Rootless {
        return Ok(());
    }
    let (iu, ig) = match p.mapped_identity() {
        Identity::Root => (0, 0),
        Identity::Caller => (uid, gid),
    };
    idmap::write_single(iu, uid, ig, gid)
}

/// The namespaces a session's processes share beside the user and pid namespaces: mount, UTS
/// (with the hostname), IPC and, for network isolation, network (with `lo` up). Sessions that
/// join this one enter them all (join.rs).
fn session_namespaces(p: &Prepared) -> Result<(), Step> {
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if p.network == Network::Isolated {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(|e| Step(SetupStep::Unshare, e))?;
    nix::unistd::sethostname(&p.hostname).map_err(|e| Step(SetupStep::SetHostname, e))?;
    if p.network == Network::Isolated {
        sys::loopback_up().map_err(|e| Step(SetupStep::LoopbackUp, e))?;
    }
    Ok(())
}

/// The setup of an `oci`-backend session (see `oci.rs`): the id maps, the session's namespaces
/// with the stage assembled in its mount namespace, and the bundle. The runtime creates the
/// container's own mount namespace and the environment's mounts from the bundle; the session's
/// user namespace maps its root to the caller (a single map has no other id), so the runtime
/// runs as root there, with the capabilities it needs over the session's namespaces only.
fn setup_oci(p: &Prepared, uid: u32, gid: u32, go: OwnedFd, t: &mut Timings) -> Result<(), Step> {
    wait_release(go)?;
    nix::sys::prctl::set_dumpable(true).map_err(|e| Step(SetupStep::Dumpable, e))?;
    write_single_map(p, uid, gid)?;
    session_namespaces(p)?;
    t.namespaces = monotonic_ns();
    rootfs::assemble_oci(p)?;
    let spec = oci::config(p).map_err(|_| Step(SetupStep::OciConfig, Errno::EINVAL))?;
    oci::write_bundle(&spec)?;
    nix::unistd::chdir("/").map_err(|e| Step(SetupStep::ChdirRoot, e))?;
    t.mounts = monotonic_ns();
    Ok(())
}

/// The init process of a session that joined a running environment (see
/// `join.rs`): it already sits in the environment's namespaces and in a
/// private copy of its mount tree; it only needs a `/proc` for its own pid
/// namespace and, when interactive, a devpts instance of its own (so that it
/// sees no other session's ptys).
///
/// An `oci` session's init instead covers the joined session's bundle with its own and has its
/// runtime start a container on the same root (`oci.rs`); its terminal channel carries the
/// runtime's console, as in [`run`].
pub fn run_joined(p: &Prepared, events: File, go: OwnedFd, terminal: Option<UnixStream>) -> i32 {
    let mut ev = events;
    let mut timings = Timings::default();
    let (terminal, console) = if p.oci.is_some() {
        (None, terminal)
    } else {
        (terminal, None)
    };
    // Nothing of the helper's is needed here (no mounts but /proc and devpts): keep stdio,
    // the report and release pipes and the terminal channel only.
    let mut keep = vec![0, 1, 2, ev.as_raw_fd(), go.as_raw_fd()];
    keep.extend(terminal.as_ref().map(AsRawFd::as_raw_fd));
    keep.extend(console.as_ref().map(AsRawFd::as_raw_fd));
    // SAFETY: the objects owning the other descriptors (the helper's socket, the request's
    // validated paths, the target's pidfd) are never used again; this process ends in
    // `exit_now`.
    let closed =
        unsafe { sys::close_all_except(&keep) }.map_err(|e| Step(SetupStep::CloseDescriptors, e));
    let result = closed
        .and_then(|()| joinable(p))
        .and_then(|()| wait_release(go))
        .and_then(|()| {
            timings.namespaces = monotonic_ns();
            if p.oci.is_some() {
                let theirs = rootfs::joined_oci_stage()?;
                let spec = oci::joined_config(p, &theirs)
                    .map_err(|_| Step(SetupStep::OciConfig, Errno::EINVAL))?;
                rootfs::refuse_joined_kernel_targets(&spec)?;
                oci::write_bundle(&spec)?;
                timings.mounts = monotonic_ns();
                return Ok(None);
            }
            rootfs::remount_proc()?;
            if p.tty.is_some() {
                rootfs::remount_devpts()?;
            }
            drop_privilege(p)?;
            timings.mounts = monotonic_ns();
            session_pty(p, terminal)
        });
    match result {
        Ok(slave) => supervise(p, &mut ev, timings, slave, console),
        Err(step) => fail(&mut ev, step),
    }
}

/// Starts the workload (on `slave`, the session's pty, when interactive), confines this
/// process and reaps until the workload has exited.
fn supervise(
    p: &Prepared,
    ev: &mut File,
    mut timings: Timings,
    slave: Option<OwnedFd>,
    console: Option<UnixStream>,
) -> i32 {
    let (sfd, exec_r, exec_w) = match signals_and_exec_pipe() {
        Ok(made) => made,
        Err(step) => return fail(ev, step),
    };
    let (listener, runtime) = match oci_start(p, console.is_some()) {
        Ok(started) => started,
        Err(r) => return fail(ev, r),
    };
    let tty = slave.as_ref().map(AsFd::as_fd);
    // SAFETY: this process is single-threaded. The workload's process reads `p`, allocates
    // what it needs without freeing anything of ours, writes at most one short frame to its
    // own copy of `exec_w`, resets every signal disposition before it unblocks signals, (in an
    // interactive session) makes the pty slave its terminal and standard descriptors (its own
    // session and descriptor table, nothing of ours), and ends in execve or returns. Should it
    // die half-way (a panic aborts it; SIGKILL can hit it inside an allocation), this process
    // may find the allocator locked or inconsistent and hang or misreport; `stop` still ends
    // the session (SIGKILL to the helper, whose death kills this process through PDEATHSIG).
    let spawned = unsafe {
        sys::spawn_vfork(&mut || match &runtime {
            Some(r) => workload::exec_runtime(r, exec_w.as_fd(), tty),
            None => workload::exec(p, exec_w.as_fd(), tty),
        })
    };
    drop(exec_w);
    // The workload holds the slave now: without this copy, the master reads end of file once
    // the workload and whatever it started have closed theirs.
    drop(slave);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return fail(ev, Step(SetupStep::SpawnWorkload, e)),
    };

    // The write end closes on a successful execve; a failed one sends the
    // reason first.
    let mut buf = Vec::new();
    let _ = File::from(exec_r).read_to_end(&mut buf);
    if buf.is_empty() {
        match oci_workload(p, listener, console, child) {
            Ok(workload) => child = workload,
            Err(step) => {
                crate::kill_and_reap(child);
                return fail(ev, step);
            }
        }
        timings.exec = monotonic_ns();
        if !report(ev, &Reply::Started { pid: 1, timings }) {
            let _ = kill(child, Signal::SIGKILL);
        }
    } else {
        let refusal: Refusal = karapace_protocol::decode(&buf).unwrap_or_else(|_| Refusal::Setup {
            step: SetupStep::Workload,
            detail: String::new(),
            errno: 0,
        });
        let _ = waitpid(child, None);
        return fail(ev, refusal);
    }

    // From here on the workload is signalled through a pidfd only (the confined process may
    // not `kill`).
    let child_fd = match sys::pidfd_open(child.as_raw()) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = kill(child, Signal::SIGKILL);
            return fail(ev, Step(SetupStep::Pidfd, e));
        }
    };
    // From here on this process only waits, reads signals and writes one
    // frame: confine it before it handles anything from the workload.
    let guard = p.oci.as_ref().map(|_| oci::INIT_GUARD);
    if let Err(e) = confine::confine_control(p.landlock, guard) {
        let _ = kill(child, Signal::SIGKILL);
        return fail(
            ev,
            Refusal::Setup {
                step: SetupStep::Confine,
                detail: format!("init: {e}"),
                errno: 0,
            },
        );
    }
    relay(ev, (child, &child_fd), &sfd, timings)
}

/// The confined init's work until the workload ends: relays signals to it through its pidfd,
/// reaps, and reports the exit (or why it could not wait any longer).
fn relay(
    ev: &mut File,
    (child, child_fd): (Pid, &OwnedFd),
    sfd: &SignalFd,
    mut timings: Timings,
) -> i32 {
    loop {
        let info = match sfd.read_signal() {
            Ok(Some(i)) => i,
            Ok(None) | Err(Errno::EINTR) => continue,
            Err(e) => return abandon(ev, child_fd, Step(SetupStep::Signalfd, e)),
        };
        let Ok(sig) = Signal::try_from(i32::try_from(info.ssi_signo).unwrap_or(0)) else {
            continue;
        };
        if sig == Signal::SIGCHLD {
            let reaped = match reap(child) {
                Ok(reaped) => reaped,
                Err(e) => return abandon(ev, child_fd, Step(SetupStep::WaitWorkload, e)),
            };
            if let Some(status) = reaped {
                timings.exited = monotonic_ns();
                // Renamed before reporting, so that whoever learns of the end
                // from the report already sees this session as ending.
                let _ = nix::sys::prctl::set_name(crate::ENDING_PROCESS_NAME);
                report(ev, &Reply::Exited { status, timings });
                return 0;
            }
        } else if info.ssi_code != SI_KERNEL {
            // Terminal-generated signals already reached the workload's
            // process group; only relay the ones sent to us explicitly.
            let _ = sys::signal(child_fd.as_fd(), sig);
        }
    }
}

/// The signalfd of the relayed signals, and the pipe that tells a successful `execve` of the
/// workload (its write end closes) from a failed one (the reason arrives).
fn signals_and_exec_pipe() -> Result<(SignalFd, OwnedFd, OwnedFd), Step> {
    let sfd = SignalFd::with_flags(
        &crate::blocked_set(),
        nix::sys::signalfd::SfdFlags::SFD_CLOEXEC,
    )
    .map_err(|e| Step(SetupStep::Signalfd, e))?;
    let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| Step(SetupStep::Pipe, e))?;
    Ok((sfd, r, w))
}

/// What an `oci` session needs before its runtime starts: the command checked in the root,
/// the console socket of an interactive session (`console`: the terminal channel is there),
/// the runtime's command line. Nothing for other sessions.
fn oci_start(
    p: &Prepared,
    console: bool,
) -> Result<(Option<UnixListener>, Option<oci::Invocation>), Refusal> {
    let Some(o) = &p.oci else {
        return Ok((None, None));
    };
    oci::check_command(p)?;
    let listener = if console && p.tty.is_some() {
        Some(oci::console_listener()?)
    } else {
        None
    };
    let runtime = oci::invocation(o, listener.is_some()).map_err(Refusal::Invalid)?;
    Ok((listener, Some(runtime)))
}

/// An `oci` session, once its runtime runs: an interactive session's pty master, which the
/// runtime sends, passed on to the helper; returns the process to wait for from now on (the
/// workload itself when the runtime detached, left to this process, pid 1 of the session).
fn oci_workload(
    p: &Prepared,
    listener: Option<UnixListener>,
    console: Option<UnixStream>,
    runtime: Pid,
) -> Result<Pid, Step> {
    let Some(o) = &p.oci else {
        return Ok(runtime);
    };
    let tty = match (listener, console, p.tty) {
        (Some(listener), Some(channel), Some(size)) => {
            let master = oci::receive_console(&listener, runtime, size)?;
            pty::send_master(channel, master)?;
            true
        }
        _ => false,
    };
    if oci::detaches(o.flavour, tty) {
        oci::detached_workload(runtime)
    } else {
        Ok(runtime)
    }
}

/// Reaps every exited child; returns the workload's status once it is gone. An error other than
/// "no children left" (a refused `wait4`, were the confinement ever to miss it) is returned, so
/// the session ends with a report instead of waiting forever.
fn reap(workload: Pid) -> Result<Option<WaitStatus>, Errno> {
    let mut result = None;
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(NixWait::Exited(pid, code)) if pid == workload => {
                result = Some(WaitStatus::Exited(code));
            }
            Ok(NixWait::Signaled(pid, sig, _)) if pid == workload => {
                result = Some(WaitStatus::Signaled(sig as i32));
            }
            Ok(NixWait::StillAlive) | Err(Errno::ECHILD) => return Ok(result),
            Err(Errno::EINTR) | Ok(_) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Ends the session after a failure of the confined init process: the workload is killed and the
/// core told which step failed (rather than a bare exit status).
fn abandon(ev: &mut File, workload: &OwnedFd, step: Step) -> i32 {
    let _ = sys::signal(workload.as_fd(), Signal::SIGKILL);
    fail(ev, step)
}

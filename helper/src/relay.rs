//! The control process after the launch: waits (unconfined, reading only the init process's
//! pipe) for the workload's start, confines itself, then relays signals from the core (and
//! from `stop`) to the environment and the environment's reports back to the core.

use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitCode;

use interprocess::os::unix::uds_local_socket::Stream;
use karapace_backend_namespace::{self as backend, Launched, blocked_set, receive_pty_master};
use karapace_protocol::{
    FrameError, Refusal, Reply, Request, SetupStep, WaitStatus, read_frame, write_frame,
    write_frame_with_fd,
};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitStatus as NixWait, waitpid};
use nix::unistd::Pid;

const SI_KERNEL: i32 = 0x80;

/// Signals the core may ask us to deliver: the relayed ones, and SIGKILL.
fn relayable(sig: i32) -> Option<Signal> {
    let s = Signal::try_from(sig).ok()?;
    (s == Signal::SIGKILL || karapace_protocol::RELAYED_SIGNALS.contains(&sig)).then_some(s)
}

fn init_status(init: Pid) -> WaitStatus {
    match waitpid(init, None) {
        Ok(NixWait::Exited(_, c)) => WaitStatus::Exited(c),
        Ok(NixWait::Signaled(_, s, _)) => WaitStatus::Signaled(s as i32),
        _ => WaitStatus::Exited(1),
    }
}

/// What the control process does next after one report from the init process.
enum Next {
    Continue,
    Exit(ExitCode),
}

/// Forwards one report of the init process (as read from its pipe) to the core; `pty` (the
/// master of an interactive session's pty) goes with `Started`.
fn forward_report(
    stream: &mut Stream,
    report: Result<Reply, FrameError>,
    pty: Option<OwnedFd>,
    init: Pid,
    t_request: u64,
    t_validated: u64,
) -> Next {
    match report {
        Ok(Reply::Started { mut timings, .. }) => {
            timings.request = t_request;
            timings.validated = t_validated;
            let pid = init.as_raw().cast_unsigned();
            let started = Reply::Started { pid, timings };
            let _ = match pty {
                Some(master) => write_frame_with_fd(stream, &started, master.as_fd()),
                None => write_frame(stream, &started),
            };
            Next::Continue
        }
        Ok(Reply::Exited {
            status,
            mut timings,
        }) => {
            timings.request = t_request;
            timings.validated = t_validated;
            // Report first: the init process's exit tears the mount
            // namespace down, and unmounting a persistent overlay
            // syncs the whole upper file system, which can take long
            // on a busy disk. The caller learns the status now; its
            // session record stays live until this process exits.
            let _ = write_frame(stream, &Reply::Exited { status, timings });
            let _ = init_status(init);
            Next::Exit(ExitCode::SUCCESS)
        }
        Ok(reply @ Reply::Failed(_)) => {
            let _ = init_status(init);
            let _ = write_frame(stream, &reply);
            Next::Exit(ExitCode::from(1))
        }
        // The init process died without reporting (SIGKILL), or sent what it never sends.
        Ok(Reply::Hello(_) | Reply::TreeDone(_)) | Err(_) => {
            let status = init_status(init);
            let timings = karapace_protocol::Timings {
                request: t_request,
                validated: t_validated,
                ..Default::default()
            };
            let _ = write_frame(stream, &Reply::Exited { status, timings });
            Next::Exit(ExitCode::SUCCESS)
        }
    }
}

/// Waits for the init process's first report (the workload started, or the setup failed).
/// Until then nothing but the init process's own pipe is read: requests from the core and
/// signals stay queued. Only a hang-up of the core's socket is noticed (no data is read from
/// it): the environment is then killed, as it is later in [`run`]. On `Started`, `confine`
/// runs before the report is forwarded, so the core never hears of a start by an unconfined
/// helper; if it fails, the environment is killed and the core gets `Failed`. In an
/// interactive session the pty master, which the init process sent before it reported the
/// start, is taken from the terminal channel first and passed on with `Started` (then closed
/// here; this process never reads or writes the terminal). Returns the exit code when the
/// session is already over.
pub fn await_start(
    stream: &mut Stream,
    launched: &mut Launched,
    t_request: u64,
    t_validated: u64,
    confine: impl FnOnce() -> Result<(), String>,
) -> Option<ExitCode> {
    let init = launched.init;
    loop {
        let mut fds = [
            PollFd::new(launched.events.as_fd(), PollFlags::POLLIN),
            // No events asked for: poll still reports POLLHUP and POLLERR.
            PollFd::new(stream.as_fd(), PollFlags::empty()),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return Some(ExitCode::from(1)),
        }
        let ready = |f: &PollFd| f.revents().is_some_and(|e| !e.is_empty());
        if ready(&fds[0]) {
            break;
        }
        if ready(&fds[1]) {
            // The core is gone: nobody will collect the status.
            backend::signal_init(launched.init_fd.as_ref(), Signal::SIGKILL);
            let _ = init_status(init);
            return Some(ExitCode::from(1));
        }
    }
    let report = read_frame::<Reply>(&mut launched.events);
    let started = matches!(report, Ok(Reply::Started { .. }));
    // The channel is closed here whatever the report.
    let pty = match launched.terminal.take() {
        Some(mut channel) if started => match receive_pty_master(&mut channel) {
            Ok(master) => Some(master),
            Err(e) => {
                return Some(abort(
                    stream,
                    (init, launched.init_fd.as_ref()),
                    SetupStep::ReceivePtyMaster,
                    e,
                ));
            }
        },
        _ => None,
    };
    if started && let Err(e) = confine() {
        return Some(abort(
            stream,
            (init, launched.init_fd.as_ref()),
            SetupStep::Confine,
            format!("helper: {e}"),
        ));
    }
    match forward_report(stream, report, pty, init, t_request, t_validated) {
        Next::Continue => None,
        Next::Exit(code) => Some(code),
    }
}

/// Kills the environment after its start and tells the core why.
fn abort(
    stream: &mut Stream,
    (init, init_fd): (Pid, Option<&OwnedFd>),
    step: SetupStep,
    detail: String,
) -> ExitCode {
    backend::signal_init(init_fd, Signal::SIGKILL);
    let _ = init_status(init);
    let _ = write_frame(
        stream,
        &Reply::Failed(Refusal::Setup {
            step,
            detail,
            errno: 0,
        }),
    );
    ExitCode::from(1)
}

pub fn run(mut stream: Stream, launched: Launched, t_request: u64, t_validated: u64) -> ExitCode {
    let Launched {
        init,
        init_fd,
        mut events,
        keepalive: _keepalive,
        terminal: _,
    } = launched;
    let sfd = match SignalFd::with_flags(&blocked_set(), SfdFlags::SFD_CLOEXEC) {
        Ok(sfd) => sfd,
        Err(e) => {
            return abort(
                &mut stream,
                (init, init_fd.as_ref()),
                SetupStep::Signalfd,
                e.desc().to_owned(),
            );
        }
    };
    let mut client_open = true;
    loop {
        let (sock_ev, ev_ev, sig_ev) = {
            let mut fds = vec![
                PollFd::new(events.as_fd(), PollFlags::POLLIN),
                PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            ];
            if client_open {
                fds.push(PollFd::new(stream.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    drop(fds);
                    return abort(
                        &mut stream,
                        (init, init_fd.as_ref()),
                        SetupStep::WaitEvents,
                        e.desc().to_owned(),
                    );
                }
            }
            let r = |i: usize| {
                fds.get(i)
                    .and_then(PollFd::revents)
                    .is_some_and(|e| !e.is_empty())
            };
            (r(2), r(0), r(1))
        };
        if ev_ev
            && let Next::Exit(code) = forward_report(
                &mut stream,
                read_frame::<Reply>(&mut events),
                None,
                init,
                t_request,
                t_validated,
            )
        {
            return code;
        }
        if sig_ev && let Ok(Some(info)) = sfd.read_signal() {
            let sig = Signal::try_from(i32::try_from(info.ssi_signo).unwrap_or(0));
            // Terminal-generated signals reach the workload directly.
            if let Ok(sig) = sig
                && sig != Signal::SIGCHLD
                && info.ssi_code != SI_KERNEL
            {
                backend::signal_init(init_fd.as_ref(), sig);
            }
        }
        if sock_ev {
            match read_frame::<Request>(&mut stream) {
                Ok(Request::Signal(n)) => {
                    if let Some(sig) = relayable(n) {
                        backend::signal_init(init_fd.as_ref(), sig);
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    // The core is gone: nobody will collect the status, and
                    // an orphaned environment must not keep running.
                    client_open = false;
                    backend::signal_init(init_fd.as_ref(), Signal::SIGKILL);
                }
            }
        }
    }
}

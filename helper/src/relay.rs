//! The confined control loop: relays signals from the core (and from `stop`)
//! to the environment, and the environment's reports back to the core.

use std::os::fd::AsFd;
use std::process::ExitCode;

use interprocess::os::unix::uds_local_socket::Stream;
use karapace_backend_namespace::{Launched, blocked_set};
use karapace_protocol::{Reply, Request, WaitStatus, read_frame, write_frame};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitStatus as NixWait, waitpid};
use nix::unistd::Pid;

const SI_KERNEL: i32 = 0x80;

/// Signals the core may ask us to deliver.
fn relayable(sig: i32) -> Option<Signal> {
    let s = Signal::try_from(sig).ok()?;
    matches!(
        s,
        Signal::SIGINT
            | Signal::SIGTERM
            | Signal::SIGHUP
            | Signal::SIGQUIT
            | Signal::SIGUSR1
            | Signal::SIGUSR2
            | Signal::SIGKILL
    )
    .then_some(s)
}

fn init_status(init: Pid) -> WaitStatus {
    match waitpid(init, None) {
        Ok(NixWait::Exited(_, c)) => WaitStatus::Exited(c),
        Ok(NixWait::Signaled(_, s, _)) => WaitStatus::Signaled(s as i32),
        _ => WaitStatus::Exited(1),
    }
}

pub fn run(mut stream: Stream, launched: Launched, t_request: u64, t_validated: u64) -> ExitCode {
    let Launched {
        init,
        mut events,
        keepalive: _keepalive,
    } = launched;
    let Ok(sfd) = SignalFd::with_flags(&blocked_set(), SfdFlags::SFD_CLOEXEC) else {
        let _ = kill(init, Signal::SIGKILL);
        return ExitCode::from(1);
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
                Err(_) => return ExitCode::from(1),
            }
            let r = |i: usize| {
                fds.get(i)
                    .and_then(PollFd::revents)
                    .is_some_and(|e| !e.is_empty())
            };
            (r(2), r(0), r(1))
        };
        if ev_ev {
            match read_frame::<Reply>(&mut events) {
                Ok(Reply::Started { mut timings, .. }) => {
                    timings.request = t_request;
                    timings.validated = t_validated;
                    let pid = init.as_raw().cast_unsigned();
                    let _ = write_frame(&mut stream, &Reply::Started { pid, timings });
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
                    let _ = write_frame(&mut stream, &Reply::Exited { status, timings });
                    let _ = init_status(init);
                    return ExitCode::SUCCESS;
                }
                Ok(reply @ Reply::Failed(_)) => {
                    let _ = init_status(init);
                    let _ = write_frame(&mut stream, &reply);
                    return ExitCode::from(1);
                }
                Ok(Reply::Hello(_)) | Err(_) => {
                    // The init process died without reporting (SIGKILL).
                    let status = init_status(init);
                    let timings = karapace_protocol::Timings {
                        request: t_request,
                        validated: t_validated,
                        ..Default::default()
                    };
                    let _ = write_frame(&mut stream, &Reply::Exited { status, timings });
                    return ExitCode::SUCCESS;
                }
            }
        }
        if sig_ev && let Ok(Some(info)) = sfd.read_signal() {
            {
                let sig = Signal::try_from(i32::try_from(info.ssi_signo).unwrap_or(0));
                // Terminal-generated signals reach the workload directly.
                if let Ok(sig) = sig
                    && sig != Signal::SIGCHLD
                    && info.ssi_code != SI_KERNEL
                {
                    let _ = kill(init, sig);
                }
            }
        }
        if sock_ev {
            match read_frame::<Request>(&mut stream) {
                Ok(Request::Signal(n)) => {
                    if let Some(sig) = relayable(n) {
                        let _ = kill(init, sig);
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    // The core is gone: nobody will collect the status, and
                    // an orphaned environment must not keep running.
                    client_open = false;
                    let _ = kill(init, Signal::SIGKILL);
                }
            }
        }
    }
}

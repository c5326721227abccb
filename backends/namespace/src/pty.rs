//! The pseudo-terminal of an interactive session (`Prepared::tty`).
//!
//! The workload never gets the caller's terminal nor the host's devpts: the init process
//! allocates a pty from the environment's own devpts instance (`newinstance`, mounted by
//! [`crate::rootfs`]), sized like the caller's terminal, and the workload gets its slave as
//! stdin, stdout, stderr and controlling terminal, in a session of its own. The master goes to
//! the helper's control process over a socket pair made for this one descriptor (the
//! *terminal channel*), and from there to the core, which relays it to the caller's terminal.
//!
//! Descriptors involved (all close-on-exec; none reaches the workload but the slave, as its
//! stdin, stdout and stderr):
//! * the channel: one end stays in the helper ([`crate::Launched::terminal`]), the other is
//!   handed to the init process, which closes it once it has sent the master, before it
//!   starts the workload;
//! * the master: held by the init process only between [`open`] and [`send_master`];
//! * the slave: held by the init process from [`open`] until the workload has started.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use karapace_protocol::TerminalSize;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use rustix::pty::OpenptFlags;

use crate::{SetupStep, Step};

/// The multiplexer of the environment's own devpts instance (`/dev/ptmx` inside is a
/// symbolic link to it; named directly so that nothing else can stand in for it).
const PTMX: &str = "/dev/pts/ptmx";

fn errno(e: rustix::io::Errno) -> Errno {
    Errno::from_raw(e.raw_os_error())
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// The terminal channel: (the helper's end, the init process's end).
pub fn channel() -> Result<(UnixStream, UnixStream), Step> {
    UnixStream::pair().map_err(|e| Step(SetupStep::TerminalChannel, io_errno(&e)))
}

/// A new pty of the devpts instance mounted at `/dev/pts` (in the environment, after
/// `pivot_root`), unlocked and sized `size`: (master, slave).
pub fn open(size: TerminalSize) -> Result<(OwnedFd, OwnedFd), Step> {
    let master = nix::fcntl::open(
        PTMX,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Step(SetupStep::OpenPty, e))?;
    rustix::pty::unlockpt(&master).map_err(|e| Step(SetupStep::UnlockPty, errno(e)))?;
    set_size(master.as_fd(), size)?;
    // The slave through the master (TIOCGPTPEER), not by a path name.
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC,
    )
    .map_err(|e| Step(SetupStep::OpenPtySlave, errno(e)))?;
    Ok((master, slave))
}

/// Sets the window size of the pty whose master is `master`.
pub fn set_size(master: BorrowedFd<'_>, size: TerminalSize) -> Result<(), Step> {
    let winsize = rustix::termios::Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: size.xpixel,
        ws_ypixel: size.ypixel,
    };
    rustix::termios::tcsetwinsize(master, winsize)
        .map_err(|e| Step(SetupStep::PtyWindowSize, errno(e)))
}

/// Sends `master` to the helper over the init process's end of the terminal channel, then
/// closes both here.
pub fn send_master(mut channel: UnixStream, master: OwnedFd) -> Result<(), Step> {
    let sent = karapace_protocol::write_frame_with_fd(&mut channel, &(), master.as_fd());
    drop((master, channel));
    sent.map_err(|e| {
        let errno = match &e {
            karapace_protocol::FrameError::Io(io) => io_errno(io),
            _ => Errno::EPROTO,
        };
        Step(SetupStep::SendPtyMaster, errno)
    })
}

/// The master the init process sent over the helper's end of the terminal channel. The
/// helper calls it once the init process has reported the workload's start, which it does
/// only after sending the master: it never blocks.
pub fn receive_master(channel: &mut UnixStream) -> Result<OwnedFd, String> {
    match karapace_protocol::read_frame_with_fd::<()>(channel) {
        Ok(((), Some(fd))) => Ok(fd),
        Ok(((), None)) => Err("the init process sent no pty master".into()),
        Err(e) => Err(format!("pty master: {e}")),
    }
}

/// In the workload's process: a new session whose controlling terminal is `slave`, which
/// becomes stdin, stdout and stderr. The inner shell is then a session leader with job
/// control on its own terminal; the caller's terminal is not among its descriptors.
pub fn take_terminal(slave: BorrowedFd<'_>) -> Result<(), Step> {
    nix::unistd::setsid().map_err(|e| Step(SetupStep::Setsid, e))?;
    rustix::process::ioctl_tiocsctty(slave)
        .map_err(|e| Step(SetupStep::ControllingTerminal, errno(e)))?;
    let step = |e| Step(SetupStep::PtyAsStdio, e);
    nix::unistd::dup2_stdin(slave).map_err(step)?;
    nix::unistd::dup2_stdout(slave).map_err(step)?;
    nix::unistd::dup2_stderr(slave).map_err(step)
}

//! The core's side of an interactive session (`RunSpec::tty`): the workload runs on a pty of
//! the environment's own devpts instance, whose master the helper passes to us with
//! `Started`; this relays it to the caller's terminal, as `sudo` (`use_pty`) and container
//! runtimes do.
//!
//! While the relay lives, the caller's terminal is in raw mode, so every key (Ctrl-C and
//! Ctrl-Z included) goes to the session's pty, whose line discipline turns it into signals for
//! the inner foreground job; dropping the relay restores the terminal's settings, whatever
//! ended the session. A resize of the caller's terminal (SIGWINCH) is copied to the pty. When
//! the caller's terminal hangs up, the master is closed, which hangs up the session's pty
//! (SIGHUP to the inner shell). When the workload has exited, [`Relay::drain`] copies what
//! it wrote last.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use karapace_protocol::TerminalSize;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use rustix::termios::{OptionalActions, Termios, Winsize, tcgetattr, tcsetattr};

/// Bytes read at once from either side.
const CHUNK: usize = 16 * 1024;
/// Keystrokes held while the pty does not take them (its input queue is full).
const INPUT_MAX: usize = 64 * 1024;

/// The size of the caller's terminal when both stdin and stdout are terminals (what makes a
/// session interactive, `RunSpec::tty`); `None` otherwise: with stdout redirected, the workload
/// writes to the file or pipe itself, as with `exec`, rather than through a pty.
pub fn caller_size() -> Option<TerminalSize> {
    let stdin = rustix::stdio::stdin();
    if !rustix::termios::isatty(stdin) || !rustix::termios::isatty(rustix::stdio::stdout()) {
        return None;
    }
    let w = rustix::termios::tcgetwinsize(stdin).unwrap_or(Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    });
    Some(TerminalSize {
        rows: w.ws_row,
        cols: w.ws_col,
        xpixel: w.ws_xpixel,
        ypixel: w.ws_ypixel,
    })
}

/// The relay between the caller's terminal (stdin and stdout) and a session's pty master.
pub struct Relay {
    /// `None` once closed: every slave was closed (the workload is gone), or the caller's
    /// terminal hung up.
    master: Option<OwnedFd>,
    /// Whether the caller's terminal is still read.
    reading: bool,
    /// Keystrokes read from the caller's terminal, not yet taken by the pty.
    input: Vec<u8>,
    /// The caller's terminal settings, restored on drop.
    saved: Option<Termios>,
}

/// What [`Relay::interest`] asks `poll` for.
pub struct Interest<'a> {
    pub stdin: Option<BorrowedFd<'a>>,
    pub master: Option<(BorrowedFd<'a>, PollFlags)>,
}

impl Relay {
    /// Puts the caller's terminal in raw mode and sizes the pty like it (it may have changed
    /// since the request was sent).
    pub fn start(master: OwnedFd) -> Relay {
        // Our own descriptor (the workload's side is the slave): non-blocking, so that a pty
        // whose input queue is full never stalls the loop that also reads its output.
        if let Ok(flags) = fcntl(&master, FcntlArg::F_GETFL) {
            let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
            let _ = fcntl(&master, FcntlArg::F_SETFL(flags));
        }
        let stdin = rustix::stdio::stdin();
        let saved = tcgetattr(stdin).ok();
        if let Some(saved) = &saved {
            let mut raw = saved.clone();
            raw.make_raw();
            // `Now`, not `Flush`: keys typed ahead during the start are kept for the session.
            let _ = tcsetattr(stdin, OptionalActions::Now, &raw);
        }
        let relay = Relay {
            master: Some(master),
            reading: true,
            input: Vec::new(),
            saved,
        };
        relay.resize();
        relay
    }

    /// Copies the caller's terminal size to the pty (the kernel then sends SIGWINCH to the
    /// pty's foreground process group).
    pub fn resize(&self) {
        let Some(master) = &self.master else { return };
        if let Ok(size) = rustix::termios::tcgetwinsize(rustix::stdio::stdin()) {
            let _ = rustix::termios::tcsetwinsize(master, size);
        }
    }

    /// The descriptors to poll and for what.
    pub fn interest(&self) -> Interest<'_> {
        let stdin = (self.reading && self.master.is_some() && self.input.len() < INPUT_MAX)
            .then(rustix::stdio::stdin);
        let master = self.master.as_ref().map(|m| {
            let mut flags = PollFlags::POLLIN;
            if !self.input.is_empty() {
                flags |= PollFlags::POLLOUT;
            }
            (m.as_fd(), flags)
        });
        Interest { stdin, master }
    }

    /// Handles what `poll` reported for the descriptors of [`Relay::interest`].
    pub fn handle(&mut self, stdin: Option<PollFlags>, master: Option<PollFlags>) {
        if let Some(ev) = master {
            if ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                self.copy_output();
            }
            if ev.contains(PollFlags::POLLOUT) {
                self.flush_input();
            }
        }
        if stdin.is_some_and(|ev| !ev.is_empty()) {
            self.read_input();
        }
    }

    /// The caller's keys, into [`Relay::input`] and on to the pty.
    fn read_input(&mut self) {
        let mut buf = [0u8; CHUNK];
        let room = INPUT_MAX.saturating_sub(self.input.len()).min(CHUNK);
        match nix::unistd::read(rustix::stdio::stdin(), &mut buf[..room]) {
            Ok(0) | Err(Errno::EIO) => self.hang_up(),
            Ok(n) => {
                self.input.extend_from_slice(&buf[..n]);
                self.flush_input();
            }
            Err(_) => {}
        }
    }

    fn flush_input(&mut self) {
        let Some(master) = &self.master else { return };
        match nix::unistd::write(master, &self.input) {
            Ok(n) => {
                self.input.drain(..n);
            }
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(_) => self.input.clear(),
        }
    }

    /// The workload's output, to the caller's stdout, until the pty has nothing more.
    fn copy_output(&mut self) {
        let mut buf = [0u8; CHUNK];
        while let Some(master) = &self.master {
            match nix::unistd::read(master, &mut buf) {
                Ok(n) if n > 0 => {
                    let mut out = std::io::stdout().lock();
                    if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                        // The caller's terminal is gone.
                        drop(out);
                        self.hang_up();
                    }
                }
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => {}
                // EIO (or end of file): no slave is open any more.
                Ok(_) | Err(_) => self.master = None,
            }
        }
    }

    /// The caller's terminal hung up: closing the master hangs the session's pty up, which
    /// sends SIGHUP to the inner session, as a hang-up of a terminal does.
    pub fn hang_up(&mut self) {
        self.reading = false;
        self.master = None;
        self.input.clear();
    }

    /// After the workload's exit: copies what is left of its output until the pty reports
    /// that no slave is open any more (the environment's processes are gone), waiting at most
    /// `limit` (a slave smuggled out of the environment must not keep the caller waiting).
    pub fn drain(&mut self, limit: Duration) {
        self.reading = false;
        self.input.clear();
        let deadline = Instant::now() + limit;
        while let Some(master) = &self.master {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => return,
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return,
            }
            self.copy_output();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            // `Drain`: what was relayed last is written under the raw settings it was meant
            // for. Fails harmlessly (EIO) on a terminal that hung up.
            let _ = tcsetattr(rustix::stdio::stdin(), OptionalActions::Drain, saved);
        }
    }
}

//! A progress line on the user's terminal while the installer runs (`[2/2] installing: setting
//! up curl (17 of 17)`), and the failing package's name for the error when it fails.
//!
//! The installer's output is a package's text: it is parsed line by line ([`lines`], [`apt`]),
//! and what is shown is escaped and cut to the terminal's width ([`status`]). The whole output
//! still goes to the build log, byte for byte.

mod apt;
mod failure;
mod lines;
mod status;

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

pub use failure::diagnose;
pub use status::Step;

use lines::LineBuffer;
use status::Tracker;

/// The shortest time between two redraws: more often is flicker nobody can read.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

/// Whether to show a progress line: only on a terminal (stderr; stdout is for results), and
/// not on a `dumb` one, which cannot erase a line.
pub fn wanted() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// Copies the step's output from `from` to `log` until its end, keeping a progress line for
/// it on stderr, redrawn at most every [`REDRAW_EVERY`] and erased at the end (so what is
/// printed next starts on a clean line).
pub fn relay(mut from: std::io::PipeReader, log: &mut std::fs::File, step: Step) {
    let mut tracker = Tracker::new(step);
    let mut lines = LineBuffer::default();
    let mut screen = Screen::default();
    screen.draw(&tracker.render(width()), Instant::now());
    let mut buf = [0u8; 8192];
    loop {
        // With a change not yet shown, wait for more output only until it is due.
        let wait = screen.pending_for(&tracker.render(width()), Instant::now());
        if !readable(&from, wait) {
            screen.draw(&tracker.render(width()), Instant::now());
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // The log is the record: everything goes there, whatever is shown.
                let _ = log.write_all(&buf[..n]);
                lines.feed(&buf[..n], |l| tracker.line(l));
                screen.draw(&tracker.render(width()), Instant::now());
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    screen.clear();
}

/// Whether `from` has something to read (or its end) within `wait` (`None`: block). An error
/// of `poll` counts as readable, so the read reports it.
fn readable(from: &impl AsFd, wait: Option<Duration>) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let timeout = match wait {
        None => PollTimeout::NONE,
        Some(d) => {
            // At most REDRAW_EVERY (100 ms), so it fits; +1 so that it is not due 0 ms early.
            PollTimeout::from(u16::try_from(d.as_millis() + 1).unwrap_or(u16::MAX))
        }
    };
    let mut fds = [PollFd::new(from.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, timeout) {
        Ok(0) => false,
        Ok(_) | Err(_) => true,
    }
}

/// The terminal's width in columns (80 when stderr does not say).
fn width() -> usize {
    match rustix::termios::tcgetwinsize(rustix::stdio::stderr()) {
        Ok(w) if w.ws_col > 0 => usize::from(w.ws_col),
        _ => 80,
    }
}

/// The progress line as the terminal shows it: redraws are rate-limited, and the line is
/// redrawn in place (`\r`, the text, erase to the end of the line).
#[derive(Debug, Default)]
struct Screen {
    shown: Option<String>,
    last: Option<Instant>,
}

impl Screen {
    /// How long until `text`, not shown yet, may be drawn (`None`: nothing to draw).
    fn pending_for(&self, text: &str, now: Instant) -> Option<Duration> {
        if self.shown.as_deref() == Some(text) {
            return None;
        }
        Some(self.last.map_or(Duration::ZERO, |at| {
            (at + REDRAW_EVERY).saturating_duration_since(now)
        }))
    }

    /// Draws `text` (escaped and fitted already) unless it is shown or a redraw is not due.
    fn draw(&mut self, text: &str, now: Instant) {
        if self.pending_for(text, now) != Some(Duration::ZERO) {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{text}\x1b[K");
        let _ = err.flush();
        self.shown = Some(text.to_owned());
        self.last = Some(now);
    }

    fn clear(&mut self) {
        if self.shown.take().is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{REDRAW_EVERY, Screen};

    #[test]
    fn redraws_are_rate_limited() {
        let t0 = Instant::now();
        let mut s = Screen::default();
        assert_eq!(s.pending_for("a", t0), Some(Duration::ZERO));
        // Drawing is simulated: record what `draw` would record.
        s.shown = Some("a".into());
        s.last = Some(t0);
        assert_eq!(s.pending_for("a", t0), None, "unchanged: nothing to draw");
        let soon = t0 + Duration::from_millis(30);
        assert_eq!(
            s.pending_for("b", soon),
            REDRAW_EVERY.checked_sub(Duration::from_millis(30))
        );
        assert_eq!(s.pending_for("b", t0 + REDRAW_EVERY), Some(Duration::ZERO));
    }
}

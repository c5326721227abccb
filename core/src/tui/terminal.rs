//! The terminal while the UI runs: raw mode, the alternate screen, a hidden cursor — and putting
//! all of it back on every way out. [`Screen`]'s drop restores the terminal; a panic hook does
//! the same before the panic message is printed (on any thread); the event loop turns SIGTERM,
//! SIGINT and SIGHUP into an orderly return, so the drop runs for them too. Restoring is
//! idempotent: whichever comes first does it.
//!
//! While the UI is up, the process's stderr (where the engine's warnings and the children it
//! spawns write) is a pipe read into the status line, when it was the same terminal: a warning
//! printed over the alternate screen would garble it.

use std::io::{self, BufRead, Stdout, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

use ratatui::crossterm::terminal::{
    BeginSynchronizedUpdate, EndSynchronizedUpdate, EnterAlternateScreen, LeaveAlternateScreen,
    disable_raw_mode, enable_raw_mode,
};
use ratatui::crossterm::{cursor, execute, queue};
use ratatui::layout::Rect;
use ratatui::prelude::CrosstermBackend;
use ratatui::{Frame, Terminal};

use crate::error::{CoreError, Result};

/// Whether the terminal is in the UI's modes now (and so needs restoring).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The terminal stderr was before it became the capture pipe, while it is.
static SAVED_STDERR: Mutex<Option<OwnedFd>> = Mutex::new(None);
static PANIC_HOOK: Once = Once::new();

/// The UI's terminal. Dropping it restores the user's.
pub struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    /// The write end of the stderr capture pipe, put on fd 2 again at each resume.
    capture: Option<OwnedFd>,
}

impl Screen {
    /// Switches the terminal to the UI's modes. `on_stderr_line` receives each line written to
    /// stderr while the UI is up (only when stderr is the terminal; otherwise stderr is left
    /// where the user sent it).
    pub fn new(on_stderr_line: impl Fn(String) + Send + 'static) -> Result<Screen> {
        install_panic_hook();
        let capture = capture_stderr(on_stderr_line)?;
        let mut screen = Screen {
            terminal: Terminal::new(CrosstermBackend::new(io::stdout()))
                .map_err(|e| CoreError::io("cannot use the terminal", e))?,
            capture,
        };
        screen.resume()?;
        Ok(screen)
    }

    /// Draws one frame. It is framed by the synchronized-output sequences, so a terminal that
    /// knows them shows it whole, never half drawn (others ignore them).
    pub fn draw(&mut self, render: impl FnOnce(&mut Frame<'_>)) -> Result<()> {
        let failed = |e| CoreError::io("cannot draw on the terminal", e);
        queue!(self.terminal.backend_mut(), BeginSynchronizedUpdate).map_err(failed)?;
        self.terminal.draw(render).map_err(failed)?;
        execute!(self.terminal.backend_mut(), EndSynchronizedUpdate).map_err(failed)?;
        Ok(())
    }

    /// Gives the terminal back to the user for a while (`e` runs a shell on it): normal
    /// screen, cooked mode, cursor shown, stderr the terminal again.
    pub fn suspend(&mut self) {
        restore();
    }

    /// Takes the terminal again after [`Screen::suspend`] and repaints all of it.
    pub fn resume(&mut self) -> Result<()> {
        let failed = |e| CoreError::io("cannot set up the terminal", e);
        enable_raw_mode().map_err(failed)?;
        ACTIVE.store(true, Ordering::SeqCst);
        execute!(io::stdout(), EnterAlternateScreen, cursor::Hide).map_err(failed)?;
        if let Some(pipe) = &self.capture {
            redirect_stderr(pipe);
        }
        // What is on the alternate screen now is not what ratatui last drew: clear it and
        // forget the last frame, so the next draw paints everything. (`Terminal::clear` would
        // do the same but asks the terminal where its cursor is, and the answer arrives on the
        // input the event thread reads.)
        let size = self.terminal.size().map_err(failed)?;
        self.terminal
            .resize(Rect::new(0, 0, size.width, size.height))
            .map_err(failed)?;
        Ok(())
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
        // With the write end closed, the capture thread sees the end of the pipe and stops
        // (once children that inherited it are gone too).
        self.capture = None;
        if let Ok(mut saved) = SAVED_STDERR.lock() {
            saved.take();
        }
    }
}

/// Puts the user's terminal back: cooked mode, normal screen, cursor shown, stderr the
/// terminal. Does nothing when the UI's modes are not on. Safe to call from a panic hook.
pub fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    // Stderr first: a panic message printed next must reach the user.
    if let Ok(saved) = SAVED_STDERR.try_lock()
        && let Some(fd) = saved.as_ref()
    {
        let _ = nix::unistd::dup2_stderr(fd);
    }
    let _ = disable_raw_mode();
    let mut out = io::stdout();
    let _ = execute!(out, LeaveAlternateScreen, cursor::Show);
    let _ = out.flush();
}

fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// When stderr is the terminal the UI draws on, makes it a pipe whose lines go to `on_line`
/// (from a thread of its own) and keeps the terminal to put back. Returns the pipe's write end.
fn capture_stderr(on_line: impl Fn(String) + Send + 'static) -> Result<Option<OwnedFd>> {
    use std::io::IsTerminal;
    if !(io::stderr().is_terminal() && io::stdout().is_terminal()) {
        return Ok(None);
    }
    let saved = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| CoreError::io("cannot duplicate stderr", e))?;
    let (reader, writer) = io::pipe().map_err(|e| CoreError::io("cannot create a pipe", e))?;
    if let Ok(mut slot) = SAVED_STDERR.lock() {
        *slot = Some(saved);
    }
    std::thread::Builder::new()
        .name("tui-stderr".into())
        .spawn(move || {
            // Bytes, not UTF-8 lines: a child's non-UTF-8 output must not stop the reading
            // (a pipe nobody reads fills up and blocks every writer).
            let mut reader = io::BufReader::new(reader);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => on_line(String::from_utf8_lossy(&line).trim_end().to_owned()),
                }
            }
        })
        .map_err(|e| CoreError::io("cannot start a thread", e))?;
    Ok(Some(OwnedFd::from(writer)))
}

fn redirect_stderr(pipe: &OwnedFd) {
    // Failing leaves stderr on the terminal: warnings may then smear the screen until the next
    // repaint, which is no reason to refuse to run.
    let _ = nix::unistd::dup2_stderr(pipe);
}

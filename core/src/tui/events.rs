//! Everything the UI waits for, on one channel: keys and resizes from the terminal, changes of
//! the store, lines written to stderr, and termination signals. Each source has a thread that
//! blocks on it; the event loop blocks on the channel. Nothing polls: an idle UI sleeps.
//!
//! The terminal is read only when the event loop asks for the next event: the input thread
//! hands over one event and waits for the next request before it reads again. So while the loop
//! runs a shell in an environment (`e`), nothing here competes with the shell for the keyboard.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};

use ratatui::crossterm::event::{self, Event as TermEvent, KeyEvent};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use crate::engine::watch::StoreWatcher;
use crate::error::{CoreError, Result};

/// One thing that happened.
#[derive(Debug)]
pub enum Event {
    Key(KeyEvent),
    Resize,
    /// The store changed (another process, or this one).
    StoreChanged,
    /// Live refresh stopped working; the message says why.
    WatchFailed(String),
    /// A line written to stderr while the UI is up (an engine warning, a child's message).
    Stderr(String),
    /// SIGTERM, SIGINT, SIGHUP or SIGQUIT: time to restore the terminal and leave.
    Signal(i32),
    /// The terminal cannot be read any more.
    InputFailed(String),
    /// A change of the store started by a key has ended (`actions::Worker`).
    ActionDone(super::actions::Outcome),
}

/// The event sources and the channel they feed.
pub struct Events {
    tx: Sender<Event>,
    rx: Receiver<Event>,
    /// Lets the input thread read the next terminal event.
    more_input: Sender<()>,
    /// Whether the input thread is waiting for `more_input`.
    input_delivered: bool,
    /// Events received while draining a burst of store changes.
    backlog: VecDeque<Event>,
    /// Set while a shell runs in an environment: Ctrl-C and Ctrl-\ typed there are the shell's.
    entering: Arc<AtomicBool>,
    signals: Handle,
}

impl Events {
    /// Starts reading the terminal and listening for signals.
    pub fn start() -> Result<Events> {
        let (tx, rx) = channel();
        let (more_input, input_requests) = channel();
        let input_tx = tx.clone();
        spawn("tui-input", move || {
            read_terminal(&input_tx, &input_requests);
        })?;

        let entering = Arc::new(AtomicBool::new(false));
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGQUIT])
            .map_err(|e| CoreError::io("cannot install signal handlers", e))?;
        let handle = signals.handle();
        let (signal_tx, in_shell) = (tx.clone(), Arc::clone(&entering));
        spawn("tui-signals", move || {
            for sig in signals.forever() {
                // While a shell runs, the terminal's interrupt keys reach this process too (the
                // shell shares its process group on the mock backend): they are the shell's, and
                // the run path forwards them to it.
                if in_shell.load(Ordering::SeqCst) && matches!(sig, SIGINT | SIGQUIT) {
                    continue;
                }
                if signal_tx.send(Event::Signal(sig)).is_err() {
                    break;
                }
            }
        })?;

        Ok(Events {
            tx,
            rx,
            more_input,
            input_delivered: false,
            backlog: VecDeque::new(),
            entering,
            signals: handle,
        })
    }

    /// A sender for other sources (the stderr capture).
    pub fn sender(&self) -> Sender<Event> {
        self.tx.clone()
    }

    /// Follows the store at `root`: an [`Event::StoreChanged`] after each change.
    pub fn watch_store(&self, root: &Path) -> Result<()> {
        let mut watcher = StoreWatcher::new(root)?;
        let tx = self.tx.clone();
        spawn("tui-watch", move || {
            loop {
                let event = match watcher.wait(None) {
                    Ok(true) => Event::StoreChanged,
                    Ok(false) => continue,
                    Err(e) => Event::WatchFailed(e.to_string()),
                };
                let failed = matches!(event, Event::WatchFailed(_));
                if tx.send(event).is_err() || failed {
                    break;
                }
            }
        })
    }

    /// Marks the time a shell runs in an environment (see [`Events::start`]).
    pub fn set_entering(&self, entering: bool) {
        self.entering.store(entering, Ordering::SeqCst);
    }

    /// Blocks until the next event. The terminal is read again only now, once the previous key
    /// has been dealt with completely. A burst of store changes comes as one.
    pub fn wait(&mut self) -> Option<Event> {
        if std::mem::take(&mut self.input_delivered) {
            // The input thread is gone only if the terminal failed, which it reported.
            let _ = self.more_input.send(());
        }
        let event = match self.backlog.pop_front() {
            Some(e) => e,
            None => self.rx.recv().ok()?,
        };
        if matches!(event, Event::StoreChanged) {
            while let Ok(next) = self.rx.try_recv() {
                if !matches!(next, Event::StoreChanged) {
                    self.backlog.push_back(next);
                }
            }
        }
        self.input_delivered = matches!(event, Event::Key(_) | Event::Resize);
        Some(event)
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.signals.close();
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map(drop)
        .map_err(|e| CoreError::io("cannot start a thread", e))
}

/// Reads terminal events one at a time, each after the event loop asked for it.
fn read_terminal(tx: &Sender<Event>, requests: &Receiver<()>) {
    loop {
        let event = match event::read() {
            Ok(TermEvent::Key(key)) => Event::Key(key),
            Ok(TermEvent::Resize(..)) => Event::Resize,
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.send(Event::InputFailed(e.to_string()));
                return;
            }
        };
        if tx.send(event).is_err() || requests.recv().is_err() {
            return;
        }
    }
}

//! `karapace tui`: the environments of one store in a terminal UI (ratatui on crossterm).
//!
//! A thin front-end over [`crate::engine::Engine`], as the CLI is: it lists, inspects and
//! changes environments only through the engine, so it takes the same locks and can run beside
//! the CLI and other front-ends on one store. The parts:
//! - [`app`]: the state and what each key does to it (pure, tested without a terminal);
//! - [`view`]: drawing the state (tested with ratatui's `TestBackend`);
//! - [`actions`]: carrying out a key's action through the engine;
//! - [`events`]: keys, store changes, stderr lines and signals on one channel;
//! - [`terminal`]: the terminal's modes, and restoring them on every way out.
//!
//! It never leaves the user's terminal in raw mode or on the alternate screen: not on `q`, an
//! error, a panic, SIGTERM, SIGINT or SIGHUP.

pub mod actions;
pub mod app;
pub mod events;
pub mod terminal;
pub mod view;

use std::io::IsTerminal;

pub use app::App;
pub use view::Theme;

use crate::engine::Engine;
use crate::engine::lifecycle::{self, Op};
use crate::error::{CoreError, Result};
use app::{Action, Status, Target};
use events::{Event, Events};
use terminal::Screen;

/// Runs the UI on the terminal until the user quits; returns the exit code (0, or 128+N after
/// signal N). `enter` runs an interactive shell in the environment with the given id, the way
/// `karapace enter` does.
pub fn run(engine: &Engine, enter: &dyn Fn(&str) -> Result<i32>) -> Result<i32> {
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        return Err(CoreError::Usage(
            "the terminal UI needs a terminal on stdin and stdout".into(),
        ));
    }
    // Read before the screen is taken, so a store that cannot be read is reported as by any
    // other command.
    let (envs, unreadable) = engine.list_readable()?;
    let mut app = App::new(engine.root().display().to_string(), envs);
    if let Some(status) = actions::unreadable_status(unreadable.len()) {
        app.set_status(status);
    }
    let mut events = Events::start()?;
    if let Err(e) = events.watch_store(engine.root()) {
        app.set_status(Status::error(format!(
            "error: live refresh is off: {e} (r refreshes)"
        )));
    }
    let stderr_lines = events.sender();
    let mut screen = Screen::new(move |line| {
        let _ = stderr_lines.send(Event::Stderr(line));
    })?;
    let code = event_loop(engine, enter, &mut app, &mut events, &mut screen);
    drop(screen);
    code
}

fn event_loop(
    engine: &Engine,
    enter: &dyn Fn(&str) -> Result<i32>,
    app: &mut App,
    events: &mut Events,
    screen: &mut Screen,
) -> Result<i32> {
    let theme = Theme::from_env();
    let mut worker = actions::Worker::new(events.sender());
    screen.draw(|frame| view::draw(frame, app, theme))?;
    while let Some(event) = events.wait() {
        match event {
            Event::Key(key) => match app.handle_key(key) {
                Some(Action::Quit) => {
                    if let Some(busy) = worker.busy() {
                        app.set_status(Status::info(format!("{busy}\u{2026} then quitting")));
                        screen.draw(|frame| view::draw(frame, app, theme))?;
                    }
                    worker.wait();
                    return Ok(0);
                }
                Some(Action::Enter(_)) if worker.busy().is_some() => {
                    let busy = worker.busy().unwrap_or_default();
                    app.set_status(Status::error(format!(
                        "busy: {busy} (wait for it to finish)"
                    )));
                }
                Some(Action::Enter(target)) => {
                    enter_env(engine, enter, app, events, screen, &target)?;
                }
                Some(action) => actions::perform(engine, app, action, &mut worker),
                None => {}
            },
            Event::ActionDone(outcome) => {
                worker.done();
                actions::finish(engine, app, outcome);
            }
            // ratatui fits the next frame to the new size.
            Event::Resize => {}
            Event::StoreChanged => {
                if actions::reload(engine, app) {
                    actions::refresh_detail(engine, app);
                }
            }
            Event::WatchFailed(e) => {
                app.set_status(Status::error(format!(
                    "error: live refresh stopped: {e} (r refreshes)"
                )));
            }
            Event::Stderr(line) if line.trim().is_empty() => {}
            Event::Stderr(line) => app.set_status(if line.starts_with("error") {
                Status::error(line)
            } else {
                Status::info(line)
            }),
            Event::Signal(sig) => return Ok(128 + sig),
            Event::InputFailed(e) => {
                return Err(CoreError::Host(format!("cannot read the terminal: {e}")));
            }
        }
        screen.draw(|frame| view::draw(frame, app, theme))?;
    }
    Ok(0)
}

/// `e`: gives the terminal to a shell in the environment and takes it back when it ends.
fn enter_env(
    engine: &Engine,
    enter: &dyn Fn(&str) -> Result<i32>,
    app: &mut App,
    events: &Events,
    screen: &mut Screen,
    target: &Target,
) -> Result<()> {
    // Refused states are said here, without leaving the screen for nothing (the engine checks
    // again, against the store as it is then).
    let state = app.env(&target.env_id).map(|e| e.state);
    if let Some(state) = state
        && let Err(e) = lifecycle::check(Op::Enter, state, &target.label)
    {
        app.set_status(actions::failure(&e, target));
        return Ok(());
    }
    screen.suspend();
    events.set_entering(true);
    let result = enter(&target.env_id);
    events.set_entering(false);
    screen.resume()?;
    app.set_status(match result {
        Ok(code) => Status::info(format!(
            "left environment {} (exit status {code})",
            target.label
        )),
        Err(e) => actions::failure(&e, target),
    });
    if actions::reload(engine, app) {
        actions::refresh_detail(engine, app);
    }
    Ok(())
}

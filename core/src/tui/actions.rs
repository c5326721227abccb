//! Carrying out what a key asked for through the engine, and reporting the result in the
//! status line: every action says what it did, or the engine's error. (`e`, which needs the
//! terminal, is the event loop's.)

use karapace_store::EnvMetadata;

use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

use super::app::{Action, App, Detail, Status, StatusKind, Target};
use super::events::Event;
use crate::engine::Engine;
use crate::error::CoreError;

/// Carries out `action` and shows its result: reads at once; changes of the store on `worker`'s
/// thread, so the UI answers every key at once (a change can wait on the disk for a while:
/// freezing syncs metadata, committing packs the writable layer). `Quit` and `Enter` are not for
/// here.
pub fn perform(engine: &Engine, app: &mut App, action: Action, worker: &mut Worker) {
    match action {
        Action::Quit | Action::Enter(_) => {}
        Action::Refresh => {
            if reload(engine, app) {
                refresh_detail(engine, app);
                let n = app.total();
                app.set_status(Status::info(format!("refreshed: {n} environments")));
            }
        }
        Action::OpenDetail(target) => match detail(engine, &target.env_id) {
            Ok(d) => app.show_detail(d),
            Err(e) => app.set_status(failure(&e, &target)),
        },
        change => {
            if let Some(busy) = worker.busy() {
                app.set_status(Status::error(format!(
                    "busy: {busy} (wait for it to finish)"
                )));
                return;
            }
            let doing = doing(&change);
            app.set_status(Status::info(format!("{doing}\u{2026}")));
            worker.start(engine.clone(), doing, change);
        }
    }
}

/// What a change is doing, for the status line while it runs.
fn doing(action: &Action) -> String {
    match action {
        Action::Destroy(t) => format!("destroying environment {}", t.label),
        Action::Freeze(t) => format!("freezing environment {}", t.label),
        Action::Archive(t) => format!("archiving environment {}", t.label),
        Action::Commit(t) => format!("committing environment {}", t.label),
        Action::Rename(t, name) => format!("renaming {} to '{name}'", t.label),
        Action::Quit | Action::Refresh | Action::OpenDetail(_) | Action::Enter(_) => String::new(),
    }
}

/// What a change reports when it is done.
#[derive(Debug)]
pub struct Outcome {
    pub status: Status,
    /// The environment is gone (the detail view closes).
    pub destroyed: bool,
}

/// Shows a change's outcome and reads the store again.
pub fn finish(engine: &Engine, app: &mut App, outcome: Outcome) {
    if outcome.destroyed {
        app.show_list();
    }
    app.set_status(outcome.status);
    if reload(engine, app) {
        refresh_detail(engine, app);
    }
}

/// The thread that carries out one change of the store at a time; its outcome arrives as an
/// [`Event::ActionDone`].
pub struct Worker {
    events: Sender<Event>,
    running: Option<(String, JoinHandle<()>)>,
}

impl Worker {
    pub fn new(events: Sender<Event>) -> Worker {
        Worker {
            events,
            running: None,
        }
    }

    /// What the running change is doing, if one runs.
    pub fn busy(&self) -> Option<&str> {
        self.running.as_ref().map(|(doing, _)| doing.as_str())
    }

    fn start(&mut self, engine: Engine, doing: String, action: Action) {
        let events = self.events.clone();
        let handle = std::thread::spawn(move || {
            let outcome = change(&engine, action);
            let _ = events.send(Event::ActionDone(outcome));
        });
        self.running = Some((doing, handle));
    }

    /// The change whose [`Event::ActionDone`] arrived has ended.
    pub fn done(&mut self) {
        if let Some((_, handle)) = self.running.take() {
            let _ = handle.join();
        }
    }

    /// Waits for the running change, if any (before leaving: a change is not abandoned half-way
    /// when the user quits).
    pub fn wait(&mut self) {
        self.done();
    }
}

/// Carries out a change of the store (on the worker's thread).
fn change(engine: &Engine, action: Action) -> Outcome {
    let mut destroyed = false;
    let status = match action {
        Action::Destroy(t) => {
            let status = done(&t, engine.destroy(&t.env_id), |_| {
                format!("destroyed environment {}", t.label)
            });
            destroyed = status.kind == StatusKind::Info;
            status
        }
        Action::Freeze(t) => done(&t, engine.freeze(&t.env_id), |_| {
            format!("frozen environment {}", t.label)
        }),
        Action::Archive(t) => done(&t, engine.archive(&t.env_id), |_| {
            format!("archived environment {}", t.label)
        }),
        Action::Commit(t) => done(&t, engine.commit(&t.env_id), |(_, hash)| {
            format!("committed snapshot {hash} for {}", t.label)
        }),
        Action::Rename(t, name) => done(&t, engine.rename(&t.env_id, &name), |env| {
            format!("renamed {} \u{2192} '{name}'", env.short_id)
        }),
        Action::Quit | Action::Refresh | Action::OpenDetail(_) | Action::Enter(_) => {
            Status::info("")
        }
    };
    Outcome { status, destroyed }
}

fn done<T>(
    target: &Target,
    result: crate::error::Result<T>,
    message: impl FnOnce(T) -> String,
) -> Status {
    match result {
        Ok(value) => Status::info(message(value)),
        Err(e) => failure(&e, target),
    }
}

/// `error: <message>`, the environment called as the user knows it: the engine was asked by
/// full id, which its messages repeat and which would push the rest off an 80-column line.
pub fn failure(e: &CoreError, target: &Target) -> Status {
    Status::error(format!(
        "error: {}",
        e.to_string().replace(&target.env_id, &target.label)
    ))
}

/// The status line when metadata files could not be read (their environments are not shown).
pub fn unreadable_status(count: usize) -> Option<Status> {
    (count > 0).then(|| {
        Status::error(format!(
            "warning: {count} environment(s) with unreadable metadata not shown (`karapace list` names them)"
        ))
    })
}

/// Reads the environments again; `false` (and the error in the status line) when that failed.
pub fn reload(engine: &Engine, app: &mut App) -> bool {
    match engine.list_readable() {
        Ok((envs, unreadable)) => {
            app.set_envs(envs);
            // Only into an empty status line: never over an action's outcome.
            if app.status().is_none()
                && let Some(status) = unreadable_status(unreadable.len())
            {
                app.set_status(status);
            }
            true
        }
        Err(e) => {
            app.set_status(Status::error(format!("error: {e}")));
            false
        }
    }
}

/// Reads the environment of the open detail view again (its state, snapshots or drift may
/// have changed).
pub fn refresh_detail(engine: &Engine, app: &mut App) {
    let Some(target) = app.detail_target() else {
        return;
    };
    match detail(engine, &target.env_id) {
        Ok(d) => app.show_detail(d),
        // Gone meanwhile: the list (reloaded first) has closed the view already.
        Err(CoreError::NoMatch { .. }) => {}
        Err(e) => app.set_status(failure(&e, &target)),
    }
}

/// Everything the detail view shows of one environment.
fn detail(engine: &Engine, env_id: &str) -> crate::error::Result<Detail> {
    let env: EnvMetadata = engine.inspect(env_id)?;
    let entries: Vec<String> = engine
        .desktop_entries(&env)
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    // Sizes are a nicety here: a store that cannot measure them still shows the rest.
    let usage = engine.env_usage(&env).ok().flatten();
    let extra = crate::cli::env_view::usage_and_desktop_fields(usage.as_ref(), &entries);
    let snapshots = engine
        .snapshots(env_id)
        .map(|(_, s)| s)
        .map_err(|e| e.to_string());
    let diff = engine
        .diff(env_id)
        .map(|(_, d)| d)
        .map_err(|e| e.to_string());
    Ok(Detail {
        env,
        extra,
        snapshots,
        diff,
        scroll: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    /// A change runs on the worker: the key gets its answer at once, a second change waits its
    /// turn with a "busy" line, and the outcome arrives as an event (here an error: the store
    /// has no such environment).
    #[test]
    fn changes_run_on_the_worker_one_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::new(dir.path().join("store"));
        let mut app = App::new("store", Vec::new());
        let (tx, rx) = channel();
        let mut worker = Worker::new(tx);
        let target = Target {
            env_id: "0".repeat(64),
            label: "db".into(),
        };
        perform(
            &engine,
            &mut app,
            Action::Freeze(target.clone()),
            &mut worker,
        );
        assert_eq!(
            app.status().map(|s| s.text.as_str()),
            Some("freezing environment db\u{2026}")
        );
        assert_eq!(worker.busy(), Some("freezing environment db"));
        perform(&engine, &mut app, Action::Archive(target), &mut worker);
        let busy = app.status().expect("status");
        assert_eq!(busy.kind, StatusKind::Error);
        assert!(
            busy.text.starts_with("busy: freezing environment db"),
            "{busy:?}"
        );
        let Ok(Event::ActionDone(outcome)) = rx.recv_timeout(Duration::from_secs(30)) else {
            panic!("no outcome");
        };
        worker.done();
        assert_eq!(worker.busy(), None);
        assert!(!outcome.destroyed);
        finish(&engine, &mut app, outcome);
        let done = app.status().expect("status");
        assert_eq!(done.kind, StatusKind::Error, "{done:?}");
        assert!(done.text.starts_with("error: "), "{done:?}");
    }
}

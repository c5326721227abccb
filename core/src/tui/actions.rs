//! Carrying out what a key asked for through the engine, and reporting the result in the
//! status line: every action says what it did, or the engine's error. (`e`, which needs the
//! terminal, is the event loop's.)

use karapace_store::EnvMetadata;

use super::app::{Action, App, Detail, Status, StatusKind, Target};
use crate::engine::Engine;
use crate::error::CoreError;

/// Carries out `action` and shows its result. `Quit` and `Enter` are not for here.
pub fn perform(engine: &Engine, app: &mut App, action: Action) {
    let status = match action {
        Action::Quit | Action::Enter(_) => return,
        Action::Refresh => {
            if reload(engine, app) {
                refresh_detail(engine, app);
                let n = app.total();
                app.set_status(Status::info(format!("refreshed: {n} environments")));
            }
            return;
        }
        Action::OpenDetail(target) => {
            match detail(engine, &target.env_id) {
                Ok(d) => app.show_detail(d),
                Err(e) => app.set_status(failure(&e, &target)),
            }
            return;
        }
        Action::Destroy(t) => {
            let status = done(&t, engine.destroy(&t.env_id), |_| {
                format!("destroyed environment {}", t.label)
            });
            if status.kind == StatusKind::Info {
                app.show_list();
            }
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
    };
    app.set_status(status);
    if reload(engine, app) {
        refresh_detail(engine, app);
    }
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

/// Reads the environments again; `false` (and the error in the status line) when that failed.
pub fn reload(engine: &Engine, app: &mut App) -> bool {
    match engine.list() {
        Ok(envs) => {
            app.set_envs(envs);
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

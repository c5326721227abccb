//! Putting the service together: the store watch and the first snapshot, the bus name, then
//! waiting for the idle period to pass.

use std::sync::Arc;
use std::time::Duration;

use karapace::engine::Engine;
use karapace::engine::watch::StoreWatcher;

use crate::changes::Snapshots;
use crate::config::Config;
use crate::idle::Activity;
use crate::jobs::Jobs;
use crate::manager::{Context, Manager};
use crate::{BUS_NAME, OBJECT_PATH};

/// After giving up the bus name, how long calls already on their way get to finish before the
/// process ends (new calls start a new instance through D-Bus activation).
const GRACE: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot serve {BUS_NAME} on the session bus: {0}")]
    Bus(#[from] zbus::Error),
    #[error("cannot start the store watcher: {0}")]
    Thread(#[from] std::io::Error),
}

/// Serves `org.karapace.Manager1` until the service has been idle for the configured period.
pub fn serve(config: &Config) -> Result<(), ServiceError> {
    let engine = Engine::new(config.store_root.clone());
    // The watch starts before the first snapshot, so nothing changes unseen in between. Without
    // one (no inotify instance left), the methods still work; only others' changes go unsignalled.
    let watcher = StoreWatcher::new(engine.root())
        .inspect_err(|e| {
            tracing::error!("changes made by other programs will not be signalled: {e}");
        })
        .ok();
    let snapshots = Arc::new(Snapshots::default());
    if let Err(e) = snapshots.prime(&engine) {
        tracing::warn!("cannot list the store yet: {e}");
    }
    let ctx = Arc::new(Context {
        config: config.clone(),
        engine: engine.clone(),
        own_uid: rustix::process::getuid().as_raw(),
        activity: Arc::new(Activity::default()),
        jobs: Arc::new(Jobs::default()),
        snapshots: Arc::clone(&snapshots),
    });
    let conn = zbus::blocking::connection::Builder::session()?
        .serve_at(OBJECT_PATH, Manager::new(Arc::clone(&ctx)))?
        .name(BUS_NAME)?
        .build()?;
    tracing::info!(
        "serving {BUS_NAME} for store {}",
        config.store_root.display()
    );
    if let Some(watcher) = watcher {
        crate::watch::spawn(watcher, engine, snapshots, conn.inner().clone())?;
    }
    stop_when_the_bus_goes(&conn, Arc::clone(&ctx.activity))?;
    ctx.activity.wait_idle(config.idle_timeout);
    // The name goes first: a call from now on starts a new instance through activation, and
    // calls already on their way get a moment to finish. (Without a bus there is nothing to do.)
    match conn.release_name(BUS_NAME) {
        Ok(_) => ctx.activity.wait_idle(Some(GRACE)),
        Err(e) => tracing::debug!("cannot release {BUS_NAME}: {e}"),
    }
    Ok(())
}

/// Ends the service when its bus connection closes (the session ended): with nobody to answer,
/// staying up until the idle period ends would only hold the store. The thread sleeps in the
/// connection's queue for this match rule, which yields an error or ends when the socket closes.
/// (The `NameLost` it matches arrives when the service gives its name up itself at idle exit;
/// that is no reason to cut the grace period short.)
fn stop_when_the_bus_goes(
    conn: &zbus::blocking::Connection,
    activity: Arc<Activity>,
) -> Result<(), ServiceError> {
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender("org.freedesktop.DBus")?
        .interface("org.freedesktop.DBus")?
        .member("NameLost")?
        .add_arg(BUS_NAME)?
        .build();
    let lost = zbus::blocking::MessageIterator::for_match_rule(rule, conn, Some(4))?;
    std::thread::Builder::new()
        .name("bus-watch".into())
        .spawn(move || {
            for message in lost {
                if let Err(e) = message {
                    tracing::debug!("bus connection: {e}");
                    break;
                }
            }
            tracing::info!("the bus connection closed: exiting");
            activity.stop();
        })?;
    Ok(())
}

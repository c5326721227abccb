//! Follows changes other processes make to the store (the CLI, the TUI) with the engine's
//! [`StoreWatcher`], which blocks in the kernel (inotify, pidfds) until something changes: an idle
//! service spends no CPU here. Each wake-up takes a snapshot through [`Snapshots::refresh`], which
//! signals what changed.

use std::sync::Arc;
use std::time::Duration;

use karapace::engine::Engine;
use karapace::engine::watch::StoreWatcher;

use crate::changes::Snapshots;

/// How many failed waits in a row make the thread give up (a watcher that keeps failing would
/// otherwise spin); the methods keep working, only changes made elsewhere go unsignalled.
const MAX_FAILURES: u32 = 5;

/// Starts the thread that signals changes made outside the service. `watcher` was set up before
/// the first snapshot, so no change falls between the two.
pub fn spawn(
    mut watcher: StoreWatcher,
    engine: Engine,
    snapshots: Arc<Snapshots>,
    conn: zbus::Connection,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("store-watch".into())
        .spawn(move || {
            let mut failures = 0;
            loop {
                match watcher.wait(None) {
                    Ok(true) => {
                        failures = 0;
                        snapshots.refresh(&engine, &conn);
                    }
                    Ok(false) => {}
                    Err(e) => {
                        failures += 1;
                        tracing::warn!("watching the store failed: {e}");
                        if failures >= MAX_FAILURES {
                            tracing::error!(
                                "no longer watching the store: changes made by other programs \
                                 will not be signalled"
                            );
                            return;
                        }
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        })?;
    Ok(())
}

//! What changed between two `Engine::list()` snapshots, and the one place that turns it into the
//! `Environment*` signals.
//!
//! Every change is found by comparing snapshots, whoever made it (a call to this service, the CLI,
//! the TUI), so each is signalled exactly once: the service's own calls take a snapshot before they
//! reply (clients see the signal first), and the store watcher takes one when the store changes;
//! whichever comes second finds nothing new.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use karapace::engine::Engine;
use karapace_store::{EnvMetadata, EnvState};

/// One difference between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Created(String),
    Removed(String),
    StateChanged(String, EnvState),
}

/// The changes from `old` to `new`, by `env_id`: removals first (a rebuild that replaces an
/// environment reads as "old removed, new created"), then creations and state changes in the
/// order of `new`. An environment is created `built`; one first seen in another state (frozen
/// by the CLI right after its build, before the snapshot) also gets its state change, so a
/// client that assumes `built` on creation stays right.
pub fn diff(old: &[EnvMetadata], new: &[EnvMetadata]) -> Vec<Change> {
    let before: HashMap<&str, EnvState> =
        old.iter().map(|e| (e.env_id.as_str(), e.state)).collect();
    let after: HashMap<&str, EnvState> = new.iter().map(|e| (e.env_id.as_str(), e.state)).collect();
    let mut changes: Vec<Change> = old
        .iter()
        .filter(|e| !after.contains_key(e.env_id.as_str()))
        .map(|e| Change::Removed(e.env_id.to_string()))
        .collect();
    for e in new {
        match before.get(e.env_id.as_str()) {
            None => {
                changes.push(Change::Created(e.env_id.to_string()));
                if e.state != EnvState::Built {
                    changes.push(Change::StateChanged(e.env_id.to_string(), e.state));
                }
            }
            Some(state) if *state != e.state => {
                changes.push(Change::StateChanged(e.env_id.to_string(), e.state));
            }
            Some(_) => {}
        }
    }
    changes
}

/// The last snapshot signalled.
#[derive(Debug, Default)]
pub struct Snapshots {
    last: Mutex<Vec<EnvMetadata>>,
}

impl Snapshots {
    /// Takes the first snapshot, which nothing is signalled for.
    pub fn prime(&self, engine: &Engine) -> karapace::error::Result<()> {
        let (now, _) = engine.list_readable()?;
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = now;
        Ok(())
    }

    /// Takes a snapshot and signals what changed since the last one. Holds the snapshot's lock
    /// while it signals, so two refreshes never signal the same change or signal out of order.
    /// A store that cannot be listed right now is logged and tried again on the next change.
    pub fn refresh(&self, engine: &Engine, conn: &zbus::Connection) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let now = match engine.list_readable() {
            Ok((now, unreadable)) => {
                // An environment whose file became unreadable still exists: no removal signal.
                let kept = last
                    .iter()
                    .filter(|old| unreadable.iter().any(|b| b.env_id() == Some(&*old.env_id)));
                let kept: Vec<EnvMetadata> = kept.cloned().collect();
                now.into_iter().chain(kept).collect::<Vec<_>>()
            }
            Err(e) => {
                tracing::warn!("cannot list the store to signal changes: {e}");
                return;
            }
        };
        for change in diff(&last, &now) {
            if let Err(e) = futures_lite::future::block_on(crate::manager::signal(conn, &change)) {
                tracing::warn!("cannot send a signal for {change:?}: {e}");
            }
        }
        *last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid `env_id` spelt from a short name (its bytes in hex, zero-padded).
    fn full(id: &str) -> String {
        let hex: Vec<String> = id.bytes().map(|b| format!("{b:02x}")).collect();
        format!("{:0>64}", hex.concat())
    }

    fn env(id: &str, state: EnvState) -> EnvMetadata {
        EnvMetadata {
            env_id: full(id).parse().unwrap(),
            short_id: full(id)[..12].into(),
            name: None,
            state,
            manifest_hash: String::new(),
            base_layer: "0".repeat(64).parse().unwrap(),
            dependency_layers: Vec::new(),
            policy_layer: None,
            created_at: String::new(),
            updated_at: String::new(),
            checksum: String::new(),
        }
    }

    #[test]
    fn creations_removals_and_state_changes_are_found_by_env_id() {
        let old = [env("a", EnvState::Built), env("b", EnvState::Built)];
        let new = [
            env("b", EnvState::Frozen),
            env("c", EnvState::Built),
            env("a2", EnvState::Running),
        ];
        assert_eq!(
            diff(&old, &new),
            [
                Change::Removed(full("a")),
                Change::StateChanged(full("b"), EnvState::Frozen),
                Change::Created(full("c")),
                Change::Created(full("a2")),
                Change::StateChanged(full("a2"), EnvState::Running),
            ]
        );
        assert_eq!(diff(&new, &new), []);
    }

    #[test]
    fn a_rename_alone_is_no_change() {
        let old = [env("a", EnvState::Built)];
        let mut renamed = env("a", EnvState::Built);
        renamed.name = Some("web".into());
        assert_eq!(diff(&old, &[renamed]), []);
    }
}

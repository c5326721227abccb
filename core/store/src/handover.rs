//! Rebuild's hand-over, as one journaled step: the new environment takes the old one's name, and
//! the old one is destroyed — or, when it holds something of the user's (changes in its writable
//! layer, snapshots), kept without its name. Journaled together with the new environment's
//! creation when the rebuild made one (`WalOp::CreateEnv`), alone otherwise (`WalOp::Handover`),
//! and always rolled forward once committed: after a crash the store never holds both
//! environments with the name on the old one and the new one unnamed.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::fsutil::{exists_nofollow, write_atomic};
use crate::meta::{self, validate_name};
use crate::store::Store;
use crate::wal::WalOp;

/// What the environment being recorded takes over from another one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    /// The environment replaced (it may be gone already).
    pub from: String,
    /// The name the new environment gets (the old one loses it).
    pub name: Option<String>,
    /// Keep `from` (unnamed) instead of destroying it.
    pub keep_from: bool,
}

impl Store {
    /// What the user made in `env_id` that destroying it would lose: changed paths in its
    /// writable layer and snapshots, described for people; `None` when there is nothing.
    pub fn user_work(&self, env_id: &str) -> Result<Option<String>> {
        if !exists_nofollow(&self.layout.meta_file(env_id)) {
            return Ok(None);
        }
        let diff = self.diff(env_id)?;
        let changed = diff.added.len() + diff.modified.len() + diff.removed.len();
        let snapshots = self.snapshots(env_id)?.len();
        let mut what = Vec::new();
        if changed > 0 {
            what.push(format!("{changed} changed path(s) in its writable layer"));
        }
        if snapshots > 0 {
            what.push(format!("{snapshots} snapshot(s)"));
        }
        Ok((!what.is_empty()).then(|| what.join(" and ")))
    }

    /// Checks a hand-over to `to` before it is journaled: ids, the name (valid, not held by a
    /// third environment), and `from` idle when it is to be destroyed. The caller holds the
    /// store lock.
    pub(crate) fn check_handover(&self, to: &str, h: &Handover) -> Result<()> {
        Self::check_env_id(&h.from).map_err(|_| StoreError::UnknownEnv(h.from.clone()))?;
        if let Some(name) = &h.name {
            validate_name(name)?;
            let (ok, bad) = self.scan_metadata()?;
            if !bad.is_empty() {
                return Err(StoreError::CorruptMetadata(bad));
            }
            if ok.iter().any(|m| {
                m.env_id != to && m.env_id != h.from && m.name.as_deref() == Some(name.as_str())
            }) {
                return Err(StoreError::DuplicateName(name.clone()));
            }
        }
        if !h.keep_from && exists_nofollow(&self.layout.env_dir(&h.from)) {
            self.ensure_idle(&h.from)?;
        }
        Ok(())
    }

    /// Hands `from` over to the existing environment `to` (journaled; see the module comment).
    pub fn hand_over(&self, to: &str, h: &Handover) -> Result<()> {
        Self::check_env_id(to).map_err(|_| StoreError::UnknownEnv(to.to_string()))?;
        let _starts = if h.keep_from {
            None
        } else {
            self.hold_session_starts(&h.from)?
        };
        let _l = self.lock_exclusive()?;
        self.read_meta_raw(to)?;
        self.check_handover(to, h)?;
        let op = WalOp::Handover {
            env_id: to.to_string(),
            handover: h.clone(),
        };
        let op2 = op.clone();
        self.run_op(op, || self.settle(&op2))
    }

    /// Rolls a committed hand-over forward; every step is idempotent.
    pub(crate) fn settle_handover(&self, to: &str, h: &Handover) -> Result<()> {
        if h.from != to {
            if h.keep_from {
                if let Ok(mut m) = self.read_meta_raw(&h.from)
                    && m.name.is_some()
                {
                    m.name = None;
                    self.write_meta_now(&m)?;
                }
            } else if exists_nofollow(&self.layout.meta_file(&h.from))
                || exists_nofollow(&self.layout.env_dir(&h.from))
            {
                self.destroy_steps(&h.from)?;
            }
        }
        crate::crash::crash_point("handover.after_old");
        if let Some(name) = &h.name
            && let Ok(mut m) = self.read_meta_raw(to)
            && m.name.as_deref() != Some(name.as_str())
        {
            m.name = Some(name.clone());
            self.write_meta_now(&m)?;
        }
        Ok(())
    }

    /// Replaces a metadata file inside an operation that is already journaled.
    fn write_meta_now(&self, m: &crate::EnvMetadata) -> Result<()> {
        let mut m = m.clone();
        m.updated_at = meta::now_rfc3339();
        let (_, content) = meta::encode(&m)?;
        write_atomic(
            &self.layout.tmp,
            &self.layout.meta_file(&m.env_id),
            content.as_bytes(),
        )
    }
}

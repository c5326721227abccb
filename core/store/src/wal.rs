//! Write-ahead log: every multi-step mutation is journaled before its first step.
//!
//! A journal entry (`store/wal/<unique>.json`) is written atomically (temp → fsync →
//! rename → fsync dir) and names the operation and its target. Each operation has one
//! `settle` procedure that looks at what is on disk and rolls the operation back (before its
//! commit point) or forward (after it). Every settle step is idempotent and every
//! intermediate state it creates is itself a state it recognises, so a crash during
//! recovery is recovered by simply running recovery again. The journal entry is removed only
//! after settling succeeded; the store's `tmp/` directory is emptied afterwards, and so is the
//! trash (`trash.rs`) when an operation was interrupted.

use crate::crash::crash_point;
use crate::error::{Result, StoreError, io_at};
use crate::fsutil::{
    CONTENT_ROOT_MODE, create_dir_all_private, create_dir_mode, exists_nofollow, fsync_dir,
    remove_file_if_exists, unique_name, write_atomic,
};
use crate::objects::object_path;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::PathBuf;

/// One journaled operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum WalOp {
    /// Commit point: the metadata file exists. A rebuild's hand-over (`handover.rs`) rides
    /// along and is rolled forward with it.
    CreateEnv {
        env_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        handover: Option<crate::handover::Handover>,
    },
    /// A hand-over to an environment that already existed; always rolled forward.
    Handover {
        env_id: String,
        handover: crate::handover::Handover,
    },
    /// Always rolled forward.
    Destroy {
        env_id: String,
    },
    /// Single atomic file replacement; rolled forward with the recorded content.
    SetMetadata {
        env_id: String,
        content: String,
    },
    /// Objects and layer manifests are published atomically and content-addressed; the
    /// journal only guarantees temp/staging cleanup (leftover objects are gc's business).
    Import,
    Commit {
        env_id: String,
    },
    /// Commit point: staging renamed onto `upper`.
    Restore {
        env_id: String,
    },
    /// Always rolled forward over the recorded plan.
    Gc {
        envs: Vec<String>,
        layers: Vec<String>,
        objects: Vec<String>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    wal_version: u32,
    #[serde(flatten)]
    op: WalOp,
}

pub(crate) struct Journal {
    path: PathBuf,
    op: WalOp,
}

impl Store {
    pub(crate) fn restore_staging(&self, env_id: &str) -> PathBuf {
        self.layout.env_dir(env_id).join("upper.restore")
    }
    pub(crate) fn restore_old(&self, env_id: &str) -> PathBuf {
        self.layout.env_dir(env_id).join("upper.old")
    }

    pub(crate) fn wal_begin(&self, op: WalOp) -> Result<Journal> {
        let path = self.layout.wal.join(format!("{}.json", unique_name("op")));
        let body = serde_json::to_vec(&Entry {
            wal_version: 1,
            op: op.clone(),
        })
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
        write_atomic(&self.layout.tmp, &path, &body)?;
        crash_point("wal.after_journal");
        Ok(Journal { path, op })
    }

    /// Run `f` as a journaled operation: on error the operation is settled (rolled back or
    /// forward) at once; the journal stays if settling fails, for the next recovery.
    pub(crate) fn run_op<T>(&self, op: WalOp, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let j = self.wal_begin(op)?;
        match f() {
            Ok(v) => {
                crash_point("wal.before_clear");
                self.wal_clear(&j)?;
                Ok(v)
            }
            Err(e) => {
                // A failed metadata write left the old file intact (atomic replace): the
                // change is abandoned, not rolled forward behind the caller's back.
                let settled = match &j.op {
                    WalOp::SetMetadata { .. } => Ok(()),
                    op => self.settle(op),
                };
                if settled.is_ok() {
                    let _ = self.wal_clear(&j);
                }
                Err(e)
            }
        }
    }

    fn wal_clear(&self, j: &Journal) -> Result<()> {
        remove_file_if_exists(&j.path)?;
        fsync_dir(&self.layout.wal)
    }

    /// Number of journal entries waiting for recovery.
    pub fn wal_pending(&self) -> Result<usize> {
        Ok(self.journal_files()?.len())
    }

    fn journal_files(&self) -> Result<Vec<PathBuf>> {
        let mut v = Vec::new();
        let rd = match fs::read_dir(&self.layout.wal) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(v),
            Err(e) => return Err(io_at("read", &self.layout.wal)(e)),
        };
        for e in rd {
            let e = e.map_err(io_at("read", &self.layout.wal))?;
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                v.push(p);
            }
        }
        v.sort();
        Ok(v)
    }

    /// Settle every journaled operation, then empty `tmp/`. Called with the exclusive
    /// lock freshly taken (never while this process is inside an operation).
    pub(crate) fn recover(&self) -> Result<()> {
        let journals = self.journal_files()?;
        let interrupted = !journals.is_empty();
        for path in journals {
            let text = fs::read(&path).map_err(io_at("read journal", &path))?;
            let entry: Entry =
                serde_json::from_slice(&text).map_err(|e| StoreError::Integrity {
                    key: path.display().to_string(),
                    reason: format!("unreadable journal entry: {e}"),
                })?;
            self.settle(&entry.op)?;
            crash_point("recovery.mid");
            remove_file_if_exists(&path)?;
            fsync_dir(&self.layout.wal)?;
        }
        self.clean_tmp()?;
        self.clean_dead_staging()?;
        if interrupted {
            // An interrupted operation may have left discarded trees, and its emptier never ran.
            // Only then: emptying on every recovery would put it on the next command's critical
            // path. Best effort: the trash is garbage whatever happens, and gc empties it too
            // (reporting what fails).
            let _ = self.empty_trash();
        }
        Ok(())
    }

    /// Remove staging dirs whose owner process (`<pid>-<start time>-…`) is gone.
    fn clean_dead_staging(&self) -> Result<()> {
        let Ok(rd) = fs::read_dir(&self.layout.staging) else {
            return Ok(());
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let mut parts = name.splitn(3, '-');
            let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
            let start = parts.next().and_then(|p| p.parse::<u64>().ok());
            let alive = match (pid, start) {
                (Some(pid), Some(start)) => crate::sessions::process_start_time(pid) == Some(start),
                _ => false,
            };
            if !alive {
                self.remove_tree(&e.path())?;
            }
        }
        Ok(())
    }

    fn clean_tmp(&self) -> Result<()> {
        let rd = match fs::read_dir(&self.layout.tmp) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_at("read", &self.layout.tmp)(e)),
        };
        for e in rd {
            let e = e.map_err(io_at("read", &self.layout.tmp))?;
            self.remove_tree(&e.path())?;
        }
        Ok(())
    }

    /// Bring the store to a consistent state for `op` (idempotent).
    pub(crate) fn settle(&self, op: &WalOp) -> Result<()> {
        // Journal entries name paths to remove: never trust one that could point elsewhere.
        let names: Vec<&String> = match op {
            WalOp::CreateEnv {
                env_id,
                handover: None,
            }
            | WalOp::Destroy { env_id }
            | WalOp::SetMetadata { env_id, .. }
            | WalOp::Commit { env_id }
            | WalOp::Restore { env_id } => vec![env_id],
            WalOp::CreateEnv {
                env_id,
                handover: Some(h),
            }
            | WalOp::Handover {
                env_id,
                handover: h,
            } => vec![env_id, &h.from],
            WalOp::Import => vec![],
            WalOp::Gc {
                envs,
                layers,
                objects,
            } => envs.iter().chain(layers).chain(objects).collect(),
        };
        if let Some(bad) = names
            .iter()
            .find(|n| n.is_empty() || n.contains('/') || n.starts_with('.'))
        {
            return Err(StoreError::Integrity {
                key: "wal".into(),
                reason: format!("journal entry names an invalid path component '{bad}'"),
            });
        }
        match op {
            WalOp::CreateEnv { env_id, handover } => {
                if exists_nofollow(&self.layout.meta_file(env_id)) {
                    let env_dir = self.layout.env_dir(env_id);
                    create_dir_all_private(&env_dir).map_err(io_at("create", &env_dir))?;
                    for (sub, mode) in crate::envs::env_subdirs() {
                        let d = env_dir.join(sub);
                        match create_dir_mode(&d, mode) {
                            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                            r => r.map_err(io_at("create", &d))?,
                        }
                    }
                    if let Some(h) = handover {
                        self.settle_handover(env_id, h)?;
                    }
                } else {
                    self.remove_tree(&self.layout.env_dir(env_id))?;
                    fsync_dir(&self.layout.envs)?;
                }
                Ok(())
            }
            WalOp::Handover { env_id, handover } => self.settle_handover(env_id, handover),
            WalOp::Destroy { env_id } => self.destroy_steps(env_id),
            WalOp::SetMetadata { env_id, content } => {
                write_atomic(
                    &self.layout.tmp,
                    &self.layout.meta_file(env_id),
                    content.as_bytes(),
                )?;
                crash_point("set_metadata.after_write");
                Ok(())
            }
            WalOp::Import | WalOp::Commit { .. } => Ok(()),
            WalOp::Restore { env_id } => self.settle_restore(env_id),
            WalOp::Gc {
                envs,
                layers,
                objects,
            } => self.gc_steps(envs, layers, objects),
        }
    }

    pub(crate) fn destroy_steps(&self, env_id: &str) -> Result<()> {
        remove_file_if_exists(&self.layout.meta_file(env_id))?;
        fsync_dir(&self.layout.metadata)?;
        crash_point("destroy.after_metadata");
        self.remove_tree(&self.layout.upper(env_id))?;
        crash_point("destroy.mid_remove");
        self.remove_tree(&self.layout.env_dir(env_id))?;
        fsync_dir(&self.layout.envs)
    }

    /// Restore protocol states (U = upper, S = staging, O = old upper):
    /// U,S → before the swap: drop S.  S,O (no U) → between the two renames: put O back,
    /// drop S.  U,O (no S) → after the commit point: move O to the trash.  U only → nothing
    /// to do.
    fn settle_restore(&self, env_id: &str) -> Result<()> {
        let upper = self.layout.upper(env_id);
        let staging = self.restore_staging(env_id);
        let old = self.restore_old(env_id);
        let (has_u, has_s, has_o) = (
            exists_nofollow(&upper),
            exists_nofollow(&staging),
            exists_nofollow(&old),
        );
        if !has_u && has_o {
            fs::rename(&old, &upper).map_err(io_at("roll back restore", &upper))?;
            fsync_dir(&self.layout.env_dir(env_id))?;
        }
        if has_s {
            self.remove_tree(&staging)?;
        } else if has_u && has_o {
            self.discard_tree(&old)?;
        }
        if !exists_nofollow(&upper) && exists_nofollow(&self.layout.env_dir(env_id)) {
            create_dir_mode(&upper, CONTENT_ROOT_MODE).map_err(io_at("create", &upper))?;
        }
        fsync_dir(&self.layout.env_dir(env_id)).or_else(|e| {
            if exists_nofollow(&self.layout.env_dir(env_id)) {
                Err(e)
            } else {
                Ok(())
            }
        })
    }

    pub(crate) fn gc_steps(
        &self,
        envs: &[String],
        layers: &[String],
        objects: &[String],
    ) -> Result<()> {
        let mut first = true;
        let mut tick = || {
            if first {
                first = false;
                crash_point("gc.mid_delete");
            }
        };
        for id in envs {
            remove_file_if_exists(&self.layout.meta_file(id))?;
            self.remove_tree(&self.layout.env_dir(id))?;
            tick();
        }
        for h in layers {
            remove_file_if_exists(&self.layout.layer_file(h))?;
            self.remove_tree(&self.layout.trees.join(h))?;
            tick();
        }
        for h in objects {
            if crate::objects::is_valid_key(h) {
                remove_file_if_exists(&object_path(&self.layout.objects, h))?;
            }
            tick();
        }
        for d in [
            &self.layout.metadata,
            &self.layout.envs,
            &self.layout.layers,
            &self.layout.trees,
        ] {
            fsync_dir(d)?;
        }
        crash_point("gc.after_delete");
        Ok(())
    }
}

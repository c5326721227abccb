//! Environment records: create, read, list, state changes, rename, destroy.

use crate::crash::crash_point;
use crate::error::{CorruptEntry, Result, StoreError, io_at};
use crate::fsutil::{
    CONTENT_ROOT_MODE, PRIVATE_DIR_MODE, create_dir_mode, exists_nofollow, fsync_dir, unique_name,
    write_atomic,
};
use crate::handover::Handover;
use crate::meta::{self, EnvMetadata, EnvState, validate_name};
use crate::objects::is_valid_key;
use crate::store::Store;
use crate::wal::WalOp;
use karapace_ids::LayerHash;
use std::fs;
use std::io;

/// The directories of `env/<id>/` and their modes: everything private but the upper's root,
/// which is the environment's `/` (see [`CONTENT_ROOT_MODE`]).
pub(crate) fn env_subdirs() -> [(&'static str, u32); 3] {
    [
        ("upper", CONTENT_ROOT_MODE),
        ("work", PRIVATE_DIR_MODE),
        ("sessions", PRIVATE_DIR_MODE),
    ]
}

impl Store {
    pub(crate) fn check_env_id(env_id: &str) -> Result<()> {
        if is_valid_key(env_id) {
            Ok(())
        } else {
            Err(StoreError::Invalid(format!(
                "'{env_id}' is not a 64-hex env_id"
            )))
        }
    }

    /// Read one metadata file as stored (no Running derivation).
    pub(crate) fn read_meta_raw(&self, env_id: &str) -> Result<EnvMetadata> {
        Self::check_env_id(env_id).map_err(|_| StoreError::UnknownEnv(env_id.to_string()))?;
        let path = self.layout.meta_file(env_id);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::UnknownEnv(env_id.to_string()));
            }
            Err(e) => return Err(io_at("read", &path)(e)),
        };
        meta::decode(&text, env_id)
            .map_err(|reason| StoreError::CorruptMetadata(vec![CorruptEntry { path, reason }]))
    }

    /// Stored state overlaid with live sessions: Running exactly while a session's workload
    /// runs. A session whose workload is over but whose helper is still unmounting does not
    /// count: commands that need the environment idle wait for it (`ensure_idle`).
    pub fn with_live_state(&self, mut m: EnvMetadata) -> Result<EnvMetadata> {
        if matches!(m.state, EnvState::Built | EnvState::Running) {
            let running = self
                .sessions(&m.env_id)?
                .iter()
                .filter(|s| !s.is_ending())
                .count();
            m.state = if running > 0 {
                EnvState::Running
            } else {
                EnvState::Built
            };
        }
        Ok(m)
    }

    /// Metadata of one environment.
    pub fn env(&self, env_id: &str) -> Result<EnvMetadata> {
        let _l = self.lock_shared()?;
        let m = self.read_meta_raw(env_id)?;
        self.with_live_state(m)
    }

    /// Ids of every metadata file (sorted), whatever their content.
    pub(crate) fn metadata_ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for e in
            fs::read_dir(&self.layout.metadata).map_err(io_at("read", &self.layout.metadata))?
        {
            let e = e.map_err(io_at("read", &self.layout.metadata))?;
            ids.push(e.file_name().to_string_lossy().into_owned());
        }
        ids.sort();
        Ok(ids)
    }

    /// All metadata, plus every file that failed to read (never skipped silently).
    pub(crate) fn scan_metadata(&self) -> Result<(Vec<EnvMetadata>, Vec<CorruptEntry>)> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for id in self.metadata_ids()? {
            match self.read_meta_raw(&id) {
                Ok(m) => ok.push(m),
                Err(StoreError::CorruptMetadata(mut v)) => bad.append(&mut v),
                Err(StoreError::UnknownEnv(_)) => bad.push(CorruptEntry {
                    path: self.layout.meta_file(&id),
                    reason: if is_valid_key(&id) {
                        "vanished while listed, or a dangling symbolic link".into()
                    } else {
                        "file name is not a 64-hex env_id".into()
                    },
                }),
                // A file of an environment that cannot be read at all (EIO, EACCES, a
                // directory): as unreadable as a corrupt one, and as removable by its env_id.
                Err(e) if is_valid_key(&id) => bad.push(CorruptEntry {
                    path: self.layout.meta_file(&id),
                    reason: e.to_string(),
                }),
                Err(e) => return Err(e),
            }
        }
        Ok((ok, bad))
    }

    /// Every environment (sorted by `env_id`). Any corrupt metadata file makes this fail with
    /// [`StoreError::CorruptMetadata`] naming each bad file.
    pub fn list_envs(&self) -> Result<Vec<EnvMetadata>> {
        let _l = self.lock_shared()?;
        self.list_envs_recorded()?
            .into_iter()
            .map(|m| self.with_live_state(m))
            .collect()
    }

    /// Like [`Store::list_envs`], but each state as recorded: Running is not derived from live
    /// sessions, so no session directory is read. For finding one environment among many;
    /// [`Store::with_live_state`] then gives the one found its effective state.
    pub fn list_envs_recorded(&self) -> Result<Vec<EnvMetadata>> {
        let _l = self.lock_shared()?;
        let (ok, bad) = self.scan_metadata()?;
        if !bad.is_empty() {
            return Err(StoreError::CorruptMetadata(bad));
        }
        Ok(ok)
    }

    /// Every readable environment (states as recorded), and every metadata file that could not be
    /// read: for commands that go on with the rest and say which files are bad.
    pub fn scan_envs(&self) -> Result<(Vec<EnvMetadata>, Vec<CorruptEntry>)> {
        let _l = self.lock_shared()?;
        self.scan_metadata()
    }

    fn check_name_free(&self, name: &str, except: &str) -> Result<()> {
        let (ok, bad) = self.scan_metadata()?;
        if !bad.is_empty() {
            return Err(StoreError::CorruptMetadata(bad));
        }
        if ok
            .iter()
            .any(|m| m.env_id != except && m.name.as_deref() == Some(name))
        {
            return Err(StoreError::DuplicateName(name.to_string()));
        }
        Ok(())
    }

    /// Record a new environment with empty `upper`/`work` dirs, atomically.
    pub fn create_env(&self, meta: EnvMetadata) -> Result<()> {
        self.create_env_with(meta, None)
    }

    /// [`Store::create_env`] that also takes over from another environment (a rebuild), in the
    /// same journaled step (`handover.rs`).
    pub fn create_env_with(&self, meta: EnvMetadata, handover: Option<&Handover>) -> Result<()> {
        Self::check_env_id(&meta.env_id)?;
        let _starts = match handover.as_ref().filter(|h| !h.keep_from) {
            Some(h) => self.hold_session_starts(&h.from)?,
            None => None,
        };
        let _l = self.lock_exclusive()?;
        if let Some(h) = handover {
            self.check_handover(&meta.env_id, h)?;
        }
        let id = meta.env_id.clone();
        if exists_nofollow(&self.layout.meta_file(&id))
            || exists_nofollow(&self.layout.env_dir(&id))
        {
            return Err(StoreError::EnvExists(id.to_string()));
        }
        if let Some(n) = &meta.name {
            validate_name(n)?;
            self.check_name_free(n, &id)?;
        }
        let mut m = meta;
        if m.short_id.is_empty() {
            m.short_id = id.short_id().to_string();
        }
        let now = meta::now_rfc3339();
        if m.created_at.is_empty() {
            m.created_at.clone_from(&now);
        }
        m.updated_at = now;
        let (_, text) = meta::encode(&m)?;
        let op = WalOp::CreateEnv {
            env_id: id.to_string(),
            handover: handover.cloned(),
        };
        self.run_op(op, || {
            let stage = self.layout.tmp.join(unique_name("env"));
            create_dir_mode(&stage, PRIVATE_DIR_MODE).map_err(io_at("create", &stage))?;
            for (sub, mode) in env_subdirs() {
                let d = stage.join(sub);
                create_dir_mode(&d, mode).map_err(io_at("create", &d))?;
            }
            fsync_dir(&stage)?;
            let dest = self.layout.env_dir(&id);
            fs::rename(&stage, &dest).map_err(io_at("create", &dest))?;
            fsync_dir(&self.layout.envs)?;
            crash_point("create_env.after_env_dir");
            write_atomic(
                &self.layout.tmp,
                &self.layout.meta_file(&id),
                text.as_bytes(),
            )?;
            crash_point("create_env.after_metadata");
            if let Some(h) = handover {
                self.settle_handover(&id, h)?;
            }
            Ok(())
        })
    }

    /// Replace an environment's metadata (journaled).
    fn write_meta(&self, m: &EnvMetadata) -> Result<()> {
        let mut m = m.clone();
        m.updated_at = meta::now_rfc3339();
        let (_, content) = meta::encode(&m)?;
        let op = WalOp::SetMetadata {
            env_id: m.env_id.to_string(),
            content,
        };
        let op2 = op.clone();
        self.run_op(op, || self.settle(&op2))
    }

    /// Change the stored state. `Running` is normally derived from live sessions; storing
    /// it is allowed but a dead session never keeps it (readers report Built).
    pub fn set_state(&self, env_id: &str, state: EnvState) -> Result<()> {
        let _l = self.lock_exclusive()?;
        let mut m = self.read_meta_raw(env_id)?;
        m.state = state;
        self.write_meta(&m)
    }

    /// Rename (names are validated and unique).
    pub fn rename_env(&self, env_id: &str, new_name: &str) -> Result<()> {
        validate_name(new_name)?;
        let _l = self.lock_exclusive()?;
        let mut m = self.read_meta_raw(env_id)?;
        self.check_name_free(new_name, env_id)?;
        m.name = Some(new_name.to_string());
        self.write_meta(&m)
    }

    /// Replace the layer references of an environment (after a build) and set its state.
    pub fn update_env_layers(
        &self,
        env_id: &str,
        base_layer: &LayerHash,
        dependency_layers: Vec<LayerHash>,
        policy_layer: Option<LayerHash>,
        state: EnvState,
    ) -> Result<()> {
        let _l = self.lock_exclusive()?;
        let mut m = self.read_meta_raw(env_id)?;
        for l in std::iter::once(base_layer)
            .chain(&dependency_layers)
            .chain(&policy_layer)
        {
            if !self.layout.layer_file(l).exists() {
                return Err(StoreError::UnknownLayer(l.to_string()));
            }
        }
        m.base_layer = base_layer.clone();
        m.dependency_layers = dependency_layers;
        m.policy_layer = policy_layer;
        m.state = state;
        self.write_meta(&m)
    }

    /// Remove an environment: metadata, upper, work. Refused while a session is live.
    pub fn destroy_env(&self, env_id: &str) -> Result<()> {
        // Validate before building any path from it: the id becomes part of paths removed below.
        Self::check_env_id(env_id).map_err(|_| StoreError::UnknownEnv(env_id.to_string()))?;
        let _starts = self.hold_session_starts(env_id)?;
        let _l = self.lock_exclusive()?;
        if !exists_nofollow(&self.layout.meta_file(env_id))
            && !exists_nofollow(&self.layout.env_dir(env_id))
        {
            return Err(StoreError::UnknownEnv(env_id.to_string()));
        }
        self.ensure_idle(env_id)?;
        self.run_op(
            WalOp::Destroy {
                env_id: env_id.to_string(),
            },
            || self.destroy_steps(env_id),
        )
    }
}

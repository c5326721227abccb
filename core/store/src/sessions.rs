//! Sessions: which processes are using an environment right now.
//!
//! `begin_session` writes `env/<id>/sessions/<pid>.json` (pid + the process start time from
//! `/proc/<pid>/stat`) and holds a shared `flock` on `env/<id>/session.lock` for the guard's
//! lifetime. A record is live while its pid runs with the same start time (pid reuse is
//! detected), so a session killed by SIGKILL never leaves its environment stuck Running.

use crate::error::{Result, StoreError, io_at};
use crate::fsutil::write_atomic;
use crate::meta::now_rfc3339;
use crate::store::Store;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::PathBuf;

/// One live session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub pid: u32,
    /// Process start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
    pub start_time: u64,
    pub started_at: String,
}

/// Held while a session runs; removes its record and releases the lock on drop.
#[derive(Debug)]
pub struct SessionGuard {
    record: PathBuf,
    _lock: Flock<File>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.record);
    }
}

/// Start time of a process, or `None` if it does not exist.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and ')' — fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3 (state); start time is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl Store {
    fn session_lock_path(&self, env_id: &str) -> PathBuf {
        self.layout.env_dir(env_id).join("session.lock")
    }

    /// Register a session of `pid` in `env_id`.
    pub fn begin_session(&self, env_id: &str, pid: u32) -> Result<SessionGuard> {
        let _l = self.lock_exclusive()?;
        self.read_meta_raw(env_id)?;
        let start_time = process_start_time(pid)
            .ok_or_else(|| StoreError::Invalid(format!("process {pid} does not exist")))?;
        let dir = self.layout.sessions(env_id);
        fs::create_dir_all(&dir).map_err(io_at("create", &dir))?;
        let lock_path = self.session_lock_path(env_id);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_at("open", &lock_path))?;
        let lock = Flock::lock(f, FlockArg::LockSharedNonblock).map_err(|(_, e)| {
            StoreError::Lock(format!("session lock {}: {e}", lock_path.display()))
        })?;
        let info = SessionInfo {
            pid,
            start_time,
            started_at: now_rfc3339(),
        };
        let record = dir.join(format!(
            "{}.json",
            crate::fsutil::unique_name(&pid.to_string())
        ));
        let body = serde_json::to_vec(&info).map_err(|e| StoreError::Invalid(e.to_string()))?;
        write_atomic(&self.layout.tmp, &record, &body)?;
        Ok(SessionGuard {
            record,
            _lock: lock,
        })
    }

    /// Live sessions of an environment (dead records are ignored).
    pub fn sessions(&self, env_id: &str) -> Result<Vec<SessionInfo>> {
        if !crate::objects::is_valid_key(env_id) {
            return Err(StoreError::UnknownEnv(env_id.to_string()));
        }
        let dir = self.layout.sessions(env_id);
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_at("read", &dir)(e)),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(io_at("read", &dir))?;
            let Ok(text) = fs::read(e.path()) else {
                continue;
            };
            let Ok(info) = serde_json::from_slice::<SessionInfo>(&text) else {
                continue;
            };
            if process_start_time(info.pid) == Some(info.start_time) {
                out.push(info);
            }
        }
        out.sort_by_key(|s| s.pid);
        Ok(out)
    }

    pub(crate) fn live_session_count(&self, env_id: &str) -> Result<usize> {
        Ok(self.sessions(env_id)?.len())
    }

    /// True while some process holds the env's session lock (a session guard is alive).
    fn session_lock_held(&self, env_id: &str) -> Result<bool> {
        let p = self.session_lock_path(env_id);
        let f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_at("open", &p)(e)),
        };
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(_) => Ok(false),
            Err((_, Errno::EWOULDBLOCK)) => Ok(true),
            Err((_, e)) => Err(StoreError::Lock(format!(
                "session lock {}: {e}",
                p.display()
            ))),
        }
    }

    /// Refuse when the environment is in use.
    pub(crate) fn ensure_idle(&self, env_id: &str) -> Result<()> {
        let live = self.live_session_count(env_id)?;
        if live > 0 || self.session_lock_held(env_id)? {
            return Err(StoreError::EnvBusy {
                env_id: env_id.to_string(),
                sessions: live.max(1),
            });
        }
        Ok(())
    }

    /// Remove records of dead sessions (called by gc).
    pub(crate) fn prune_dead_sessions(&self, env_id: &str) {
        let dir = self.layout.sessions(env_id);
        let Ok(rd) = fs::read_dir(&dir) else { return };
        for e in rd.flatten() {
            let live = fs::read(e.path())
                .ok()
                .and_then(|t| serde_json::from_slice::<SessionInfo>(&t).ok())
                .is_some_and(|i| process_start_time(i.pid) == Some(i.start_time));
            if !live {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

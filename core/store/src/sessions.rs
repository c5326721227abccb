//! Sessions: which processes are using an environment right now.
//!
//! `begin_session` writes `env/<id>/sessions/<pid>.json` (pid + the process start time from
//! `/proc/<pid>/stat`) and holds a shared `flock` on `env/<id>/session.lock` for the guard's
//! lifetime. A record is live while its pid runs with the same start time (pid reuse is
//! detected), so a session killed by SIGKILL never leaves its environment stuck Running.
//!
//! A record also names the session's init process (`init_pid`, `init_start_time`), which a
//! later session of the same environment joins instead of mounting the overlay a second time.
//! Starting sessions are serialised by `env/<id>/session.setup.lock` ([`Store::session_setup`])
//! so that "no live session, mount fresh" and "join that one" are decided one at a time.
//! Records are runtime state, not data: they are written without fsync (a crash ends every
//! session anyway, and an unreadable record counts as dead).

use crate::error::{Result, StoreError, io_at};
use crate::fsutil::write_volatile;
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
    /// Host pid of the session's init process, when the session has one (helper sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_pid: Option<u32>,
    /// Start time of `init_pid`, as for `start_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_start_time: Option<u64>,
    /// The session's workload had already exited when the session was recorded (a command
    /// that ends at once): its helper is only tearing the environment down.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub workload_ended: bool,
    /// Which id maps the session's user namespace has, as the engine names them: a session
    /// joins only a session whose maps are the ones it would have written itself (a `--root`
    /// session's differ from a plain one's for a caller that is not root). `None` in records
    /// of older versions; the helper checks the maps of what it joins in any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_maps: Option<String>,
}

/// Held while a session is being started (see the module documentation).
#[derive(Debug)]
pub struct SetupGuard {
    _lock: Flock<File>,
}

/// Held while a session runs; removes its record and releases the lock on drop.
#[derive(Debug)]
pub struct SessionGuard {
    /// `None` when the process had already exited at registration (nothing to record).
    record: Option<PathBuf>,
    keep_record: bool,
    _lock: Flock<File>,
}

impl SessionGuard {
    /// The session's process is still ending (tearing its environment down) after the caller
    /// is done with it: leave the record, which stays live until that process exits.
    pub fn keep_record(&mut self) {
        self.keep_record = true;
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if let (false, Some(record)) = (self.keep_record, &self.record) {
            let _ = fs::remove_file(record);
        }
    }
}

/// How long operations that need an idle environment wait for sessions that are ending.
const ENDING_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl SessionInfo {
    /// The session's workload and init have exited, or its init is exiting; its helper is
    /// still tearing the environment down. Such a session can no longer be joined.
    pub fn is_ending(&self) -> bool {
        if self.workload_ended {
            return true;
        }
        match (self.init_pid, self.init_start_time) {
            (Some(pid), Some(start)) => {
                !matches!(process_state(pid), Some(s) if s.start_time == start && !s.ending)
            }
            _ => false,
        }
    }
}

/// The name an environment's init process takes once its workload has exited, just before it
/// reports the exit (`karapace_backend_namespace::ENDING_PROCESS_NAME`; a test ties the two).
pub const ENDING_PROCESS_NAME: &str = "karapace-ending";

/// What `/proc/<pid>/stat` says about a process that has not exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcState {
    /// Parent pid (field 4).
    ppid: u32,
    /// Clock ticks since boot (field 22).
    start_time: u64,
    /// The process is an init whose workload has exited ([`ENDING_PROCESS_NAME`]), or it has
    /// begun to exit (`PF_EXITING`): an environment's init keeps that flag for the whole
    /// teardown of its namespaces (unmounting the overlay syncs the upper file system,
    /// milliseconds on a busy disk), during which it still looks like a running process.
    ending: bool,
}

/// `None` for a process that does not exist or has exited (an ended session whose parent
/// exited first is a zombie, and counts as gone).
fn process_state(pid: u32) -> Option<ProcState> {
    karapace_procstat::live(pid).map(|s| state_of(&s))
}

fn state_of(s: &karapace_procstat::Stat) -> ProcState {
    ProcState {
        ppid: s.ppid,
        start_time: s.start_time,
        ending: s.is_exiting() || s.comm == ENDING_PROCESS_NAME.as_bytes(),
    }
}

/// Opens (creating it if needed) and `flock`s one of an environment's lock files.
fn flock_file(path: &std::path::Path, arg: FlockArg) -> Result<Flock<File>> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_at("open", path))?;
    Flock::lock(f, arg).map_err(|(_, e)| StoreError::Lock(format!("{}: {e}", path.display())))
}

/// Start time of a running process, or `None` if it does not exist or has exited (a zombie
/// waiting to be reaped counts as gone; a process still tearing down its namespaces does not).
pub fn process_start_time(pid: u32) -> Option<u64> {
    process_state(pid).map(|s| s.start_time)
}

impl Store {
    fn session_lock_path(&self, env_id: &str) -> PathBuf {
        self.layout.env_dir(env_id).join("session.lock")
    }

    /// Serialises session starts of `env_id` (blocks while another session is starting).
    pub fn session_setup(&self, env_id: &str) -> Result<SetupGuard> {
        if !crate::objects::is_valid_key(env_id) {
            return Err(StoreError::UnknownEnv(env_id.to_string()));
        }
        let dir = self.layout.env_dir(env_id);
        crate::fsutil::create_dir_all_private(&dir).map_err(io_at("create", &dir))?;
        self.lock_session_starts(env_id)
    }

    /// Keeps sessions of `env_id` from starting while held: `commit`, `restore` and `destroy`
    /// take it before the store lock (the order a starting session uses: this lock, then the
    /// store lock to record itself), so none can be half-way started (its overlay mounted, its
    /// record not yet written) while they check that the environment is idle and change it.
    /// `None` when the environment has no directory: then no session can be starting.
    pub(crate) fn hold_session_starts(&self, env_id: &str) -> Result<Option<SetupGuard>> {
        if !crate::objects::is_valid_key(env_id) || !self.layout.env_dir(env_id).is_dir() {
            return Ok(None);
        }
        self.lock_session_starts(env_id).map(Some)
    }

    fn lock_session_starts(&self, env_id: &str) -> Result<SetupGuard> {
        let path = self.layout.env_dir(env_id).join("session.setup.lock");
        Ok(SetupGuard {
            _lock: flock_file(&path, FlockArg::LockExclusive)?,
        })
    }

    /// Register a session of `pid` in `env_id`; `init` is the session's init process, if any.
    pub fn begin_session(&self, env_id: &str, pid: u32, init: Option<u32>) -> Result<SessionGuard> {
        self.begin_session_with_maps(env_id, pid, init, None)
    }

    /// [`Store::begin_session`] for a session whose user namespace has the id maps `id_maps`
    /// (see [`SessionInfo::id_maps`]).
    pub fn begin_session_with_maps(
        &self,
        env_id: &str,
        pid: u32,
        init: Option<u32>,
        id_maps: Option<&str>,
    ) -> Result<SessionGuard> {
        let _l = self.lock_exclusive()?;
        self.read_meta_raw(env_id)?;
        let start_time = process_start_time(pid);
        let dir = self.layout.sessions(env_id);
        crate::fsutil::create_dir_all_private(&dir).map_err(io_at("create", &dir))?;
        let lock = flock_file(
            &self.session_lock_path(env_id),
            FlockArg::LockSharedNonblock,
        )?;
        let Some(start_time) = start_time else {
            // Already over (a command that exits at once): a guard without a record.
            return Ok(SessionGuard {
                record: None,
                keep_record: false,
                _lock: lock,
            });
        };
        // An init that is already gone or ending means the workload is over: the record must
        // still say so, or the session would count as running (and joinable) until its helper
        // finishes unmounting. The init is the helper's child until the helper reaps it, so a
        // process under that pid with another parent means the pid has already been reused.
        let (init_pid, init_start_time, workload_ended) = match init {
            None => (None, None, false),
            Some(ipid) => match process_state(ipid) {
                Some(s) if s.ppid == pid => (Some(ipid), Some(s.start_time), s.ending),
                _ => (None, None, true),
            },
        };
        let info = SessionInfo {
            pid,
            start_time,
            started_at: now_rfc3339(),
            init_pid,
            init_start_time,
            workload_ended,
            id_maps: id_maps.map(str::to_owned),
        };
        let record = dir.join(format!(
            "{}.json",
            crate::fsutil::unique_name(&pid.to_string())
        ));
        let body = serde_json::to_vec(&info).map_err(|e| StoreError::Invalid(e.to_string()))?;
        write_volatile(&self.layout.tmp, &record, &body)?;
        Ok(SessionGuard {
            record: Some(record),
            keep_record: false,
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

    /// Refuse when the environment is in use. Sessions whose workload has ended but whose
    /// helper is still unmounting the environment are waited for (briefly), so that
    /// `karapace exec … && karapace commit …` never fails for a session that already ended.
    /// Callers hold [`Store::hold_session_starts`] (taken before the store lock), so no session
    /// can be starting meanwhile.
    pub(crate) fn ensure_idle(&self, env_id: &str) -> Result<()> {
        let deadline = std::time::Instant::now() + ENDING_WAIT;
        while std::time::Instant::now() < deadline {
            let sessions = self.sessions(env_id)?;
            let ending = !sessions.is_empty() && sessions.iter().all(SessionInfo::is_ending);
            if !ending {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let live = self.live_session_count(env_id)?;
        if live > 0 || self.session_lock_held(env_id)? {
            return Err(StoreError::EnvBusy {
                env_id: env_id.to_string(),
                sessions: live.max(1),
            });
        }
        Ok(())
    }

    /// Remove records of dead sessions (called by gc, and by every new session while its helper
    /// sets the environment up).
    pub fn prune_dead_sessions(&self, env_id: &str) {
        let dir = self.layout.sessions(env_id);
        let Ok(rd) = fs::read_dir(&dir) else { return };
        for e in rd.flatten() {
            // Records are written whole (renamed into place), so one that does not parse is
            // garbage; one that cannot be read at all (EMFILE, EIO) may be live: keep it.
            let dead = match fs::read(e.path()) {
                Ok(text) => serde_json::from_slice::<SessionInfo>(&text)
                    .map_or(true, |i| process_start_time(i.pid) != Some(i.start_time)),
                Err(_) => false,
            };
            if dead {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process as the parser (`karapace_procstat`, which tests real lines) reports it.
    fn stat(comm: &str, flags: u64) -> karapace_procstat::Stat {
        karapace_procstat::Stat {
            comm: comm.as_bytes().to_vec(),
            state: b'S',
            ppid: 10_246,
            flags,
            start_time: 1_895_675,
        }
    }

    #[test]
    fn an_init_is_ending_when_exiting_or_renamed() {
        let running = stat("karapace-helper", 0x40_0100);
        assert_eq!(
            state_of(&running),
            ProcState {
                ppid: 10_246,
                start_time: 1_895_675,
                ending: false
            }
        );
        // Begun to exit (flags 0x40004c hold PF_EXITING).
        assert!(state_of(&stat("karapace-helper", 0x40_004c)).ending);
        // An init that has reported its workload's exit.
        assert!(state_of(&stat(ENDING_PROCESS_NAME, 0x40_0100)).ending);
    }

    #[test]
    fn a_session_is_ending_once_its_init_is_gone_recycled_or_exiting() {
        let me = std::process::id();
        let start = process_start_time(me).expect("own start time");
        let session = |init_pid, init_start_time| SessionInfo {
            pid: me,
            start_time: start,
            started_at: String::new(),
            init_pid,
            init_start_time,
            workload_ended: false,
            id_maps: None,
        };
        assert!(!session(Some(me), Some(start)).is_ending());
        assert!(session(Some(me), Some(start + 1)).is_ending());
        assert!(session(Some(u32::MAX), Some(start)).is_ending());
        // Sessions recorded without an init cannot be judged: never "ending"...
        assert!(!session(None, None).is_ending());
        // ...unless the workload was over before the record was written.
        let ended = SessionInfo {
            workload_ended: true,
            ..session(None, None)
        };
        assert!(ended.is_ending());
        // Older records (no such field) read as not ended.
        let old: SessionInfo =
            serde_json::from_str(r#"{"pid":1,"start_time":2,"started_at":"x"}"#).expect("parse");
        assert!(!old.workload_ended);
        assert_eq!(old.id_maps, None);
        assert!(
            !serde_json::to_string(&old)
                .expect("json")
                .contains("workload_ended")
        );
    }
}

//! Waiting for a store to change, without polling: what the D-Bus service and the terminal UI use
//! to follow changes that other processes (the CLI, another front-end) make.
//!
//! A change is anything `Engine::list` would show differently: an environment created, removed,
//! renamed or changing state, a session starting or ending. Records live in `store/metadata/`
//! (written by atomic rename), sessions in `env/<id>/sessions/`; both are watched with inotify,
//! one directory each, never the environments' trees. A session killed by SIGKILL leaves its
//! record behind (readers see it as dead), so no file event says it ended: each live session's
//! process is held through a pidfd, which becomes readable the moment the process exits.
//!
//! The watcher only says *that* something changed; callers compare two `Engine::list` results to
//! learn what. Spurious wake-ups are therefore harmless, missed ones are not: after every wake-up
//! the watch set is rebuilt from the directories as they are then.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use rustix::io::Errno;

use crate::error::{CoreError, Result};

/// After the first event of a burst, how long the store must stay quiet before [`StoreWatcher::wait`]
/// returns, and the longest it waits for that quiet (a build writes metadata several times).
const QUIET: Duration = Duration::from_millis(50);
const MAX_BURST: Duration = Duration::from_millis(250);

/// Watches one store root (which need not exist yet).
pub struct StoreWatcher {
    root: PathBuf,
    inotify: OwnedFd,
    /// The directories watched since the last wake-up, with their watch descriptors.
    watched: HashMap<PathBuf, i32>,
    /// Live sessions' processes by (pid, start time).
    sessions: HashMap<(u32, u64), OwnedFd>,
}

impl std::fmt::Debug for StoreWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWatcher")
            .field("root", &self.root)
            .field("watched", &self.watched.len())
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

fn errno(context: &str, e: Errno) -> CoreError {
    CoreError::io(context.to_owned(), std::io::Error::from(e))
}

impl StoreWatcher {
    pub fn new(root: &Path) -> Result<StoreWatcher> {
        let inotify = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)
            .map_err(|e| errno("cannot watch the store (inotify)", e))?;
        let mut watcher = StoreWatcher {
            root: root.to_path_buf(),
            inotify,
            watched: HashMap::new(),
            sessions: HashMap::new(),
        };
        watcher.rearm();
        Ok(watcher)
    }

    /// Blocks until the store changed or `timeout` passed (`None`: no limit); `Ok(true)` on a
    /// change. A burst of changes (a build) is reported once, when it has been quiet for a moment.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let changed = loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(false);
            }
            if self.poll_once(left)? {
                break true;
            }
        };
        // Let the burst finish, so one build is one wake-up rather than a dozen.
        let burst_end = Instant::now() + MAX_BURST;
        loop {
            let left = burst_end.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.poll_once(Some(left.min(QUIET)))? {
                break;
            }
        }
        self.rearm();
        Ok(changed)
    }

    /// One poll of the inotify descriptor and the sessions' pidfds; `true` if any fired.
    fn poll_once(&mut self, timeout: Option<Duration>) -> Result<bool> {
        let keys: Vec<(u32, u64)> = self.sessions.keys().copied().collect();
        let mut fds = Vec::with_capacity(keys.len() + 1);
        fds.push(PollFd::new(&self.inotify, PollFlags::IN));
        for key in &keys {
            if let Some(fd) = self.sessions.get(key) {
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
        }
        let spec = timeout.map(|t| Timespec {
            tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        match rustix::event::poll(&mut fds, spec.as_ref()) {
            Ok(0) | Err(Errno::INTR) => return Ok(false),
            Ok(_) => {}
            Err(e) => return Err(errno("cannot wait for store changes", e)),
        }
        let inotify_fired = !fds[0].revents().is_empty();
        let exited: Vec<(u32, u64)> = fds[1..]
            .iter()
            .zip(&keys)
            .filter(|(fd, _)| !fd.revents().is_empty())
            .map(|(_, key)| *key)
            .collect();
        drop(fds);
        for key in &exited {
            self.sessions.remove(key);
        }
        if inotify_fired {
            self.drain();
        }
        Ok(inotify_fired || !exited.is_empty())
    }

    /// Reads and discards pending inotify events (which directory changed does not matter:
    /// callers re-read the store).
    fn drain(&mut self) {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(&self.inotify, &mut buf);
        while reader.next().is_ok() {}
    }

    /// Watches every directory whose entries make up what `list` shows, as they are now, and
    /// holds a pidfd on every live session. Directories that do not exist yet are covered by
    /// their parent's watch (creating them is an event).
    fn rearm(&mut self) {
        let store = self.root.join("store");
        let envs = self.root.join("env");
        let mut dirs = vec![
            self.root.clone(),
            store.clone(),
            store.join("metadata"),
            envs.clone(),
        ];
        // Until the store exists, its nearest existing ancestor tells when it (or a directory on
        // the way) is created. Other entries made there wake the watcher for nothing, which
        // costs a caller one `list`.
        if !self.root.is_dir() {
            let mut ancestor = self.root.as_path();
            while let Some(parent) = ancestor.parent() {
                ancestor = parent;
                if ancestor.is_dir() {
                    dirs.push(ancestor.to_path_buf());
                    break;
                }
            }
        }
        let mut env_ids = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&envs) {
            for entry in rd.flatten() {
                if let Some(id) = entry.file_name().to_str()
                    && karapace_store::is_valid_key(id)
                {
                    dirs.push(entry.path());
                    dirs.push(entry.path().join("sessions"));
                    env_ids.push(id.to_owned());
                }
            }
        }
        let flags = WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::CLOSE_WRITE
            | WatchFlags::DELETE_SELF
            | WatchFlags::ONLYDIR
            | WatchFlags::DONT_FOLLOW;
        // Added again every time: a directory removed and made anew is another inode, which the
        // old watch (dropped by the kernel with the old inode) does not cover. Adding a watch on
        // an inode already watched only returns its descriptor.
        self.watched.clear();
        for dir in dirs {
            if let Ok(wd) = inotify::add_watch(&self.inotify, &dir, flags) {
                self.watched.insert(dir, wd);
            }
        }
        self.hold_sessions(&env_ids);
    }

    /// A pidfd for every live session of `env_ids`, opened before its identity is checked, so
    /// a pid reused after the check cannot stand in for the session's process.
    fn hold_sessions(&mut self, env_ids: &[String]) {
        let Ok(store) = karapace_store::Store::open(&self.root) else {
            self.sessions.clear();
            return;
        };
        let mut live = HashMap::new();
        for id in env_ids {
            for s in store.sessions(id).unwrap_or_default() {
                let key = (s.pid, s.start_time);
                if let Some(fd) = self.sessions.remove(&key) {
                    live.insert(key, fd);
                    continue;
                }
                let Some(pid) = i32::try_from(s.pid)
                    .ok()
                    .and_then(rustix::process::Pid::from_raw)
                else {
                    continue;
                };
                let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
                else {
                    continue;
                };
                if karapace_store::process_start_time(s.pid) == Some(s.start_time) {
                    live.insert(key, fd);
                }
            }
        }
        self.sessions = live;
    }

    /// How many directories and session processes are watched (for tests and `Debug`).
    pub fn watch_counts(&self) -> (usize, usize) {
        (self.watched.len(), self.sessions.len())
    }
}

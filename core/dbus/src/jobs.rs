//! Long jobs (build, gc, verify) and who is running which. The interface's methods are async and
//! run every engine call through [`on_worker`], on `blocking`'s thread pool, so the bus connection's
//! executor only ever waits: a build that takes minutes does not delay a `ListEnvironments`.
//!
//! The same job twice at once gets `Busy` instead of a second worker (the second would only wait
//! on the store lock, or race the first), and so does a job beyond [`MAX_JOBS`]: a client in a
//! loop cannot make the service start threads without bound.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::ManagerError;

/// At most this many long jobs at once.
pub const MAX_JOBS: usize = 8;

/// What a job works on: two jobs with the same key do not run at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobKey {
    /// A build of this manifest (as the client named it; the engine resolves it once more).
    Build(PathBuf),
    GarbageCollect,
    Verify,
}

impl JobKey {
    fn describe(&self) -> String {
        match self {
            JobKey::Build(p) => format!(
                "a build of {} is already running",
                crate::input::quoted(&p.to_string_lossy())
            ),
            JobKey::GarbageCollect => "garbage collection is already running".into(),
            JobKey::Verify => "a store verification is already running".into(),
        }
    }
}

/// The jobs running now.
#[derive(Debug, Default)]
pub struct Jobs {
    running: Mutex<HashSet<JobKey>>,
}

/// A registered job; dropping it (when the job ends, also by a panic) frees its key.
#[must_use = "the job is unregistered when this is dropped"]
#[derive(Debug)]
pub struct JobSlot {
    jobs: Arc<Jobs>,
    key: JobKey,
}

impl Jobs {
    /// Registers `key`, or says `Busy` when it already runs or [`MAX_JOBS`] run.
    pub fn start(self: &Arc<Self>, key: JobKey) -> Result<JobSlot, ManagerError> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running.contains(&key) {
            return Err(ManagerError::Busy(key.describe()));
        }
        if running.len() >= MAX_JOBS {
            return Err(ManagerError::Busy(format!(
                "{MAX_JOBS} jobs are already running; try again when one has finished"
            )));
        }
        running.insert(key.clone());
        Ok(JobSlot {
            jobs: Arc::clone(self),
            key,
        })
    }
}

impl Drop for JobSlot {
    fn drop(&mut self) {
        self.jobs
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

/// Runs `work` on a worker thread and waits for it without blocking the bus executor. A panic
/// in `work` becomes a `Failed` error for this call instead of taking the service down.
pub async fn on_worker<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ManagerError> + Send + 'static,
) -> Result<T, ManagerError> {
    blocking::unblock(move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|_| {
            Err(ManagerError::Failed(
                "internal error: the operation panicked (see the service's log)".into(),
            ))
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_job_twice_is_busy_until_the_first_ends() {
        let jobs = Arc::new(Jobs::default());
        let first = jobs.start(JobKey::GarbageCollect).unwrap();
        assert!(matches!(
            jobs.start(JobKey::GarbageCollect),
            Err(ManagerError::Busy(_))
        ));
        let other = jobs.start(JobKey::Verify).unwrap();
        drop(first);
        let again = jobs.start(JobKey::GarbageCollect).unwrap();
        drop((other, again));
    }

    #[test]
    fn no_more_than_max_jobs_run() {
        let jobs = Arc::new(Jobs::default());
        let slots: Vec<_> = (0..MAX_JOBS)
            .map(|i| {
                jobs.start(JobKey::Build(PathBuf::from(format!("/m{i}"))))
                    .unwrap()
            })
            .collect();
        assert!(matches!(
            jobs.start(JobKey::Build(PathBuf::from("/other"))),
            Err(ManagerError::Busy(_))
        ));
        drop(slots);
    }

    #[test]
    fn a_panicking_job_is_an_error_not_a_crash() {
        let r: Result<(), _> = futures_lite::future::block_on(on_worker(|| panic!("boom")));
        assert!(matches!(r, Err(ManagerError::Failed(_))));
    }
}

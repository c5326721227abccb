//! When the service may exit: after an idle period with no call and no running job, counted from
//! the end of the last one (the standard tool exits 30 s after start, even mid-build).
//!
//! The main thread sleeps on a condition variable until the earliest moment the service could be
//! idle; a call moves that moment without waking it (it re-checks when it wakes), so an idle
//! service wakes at most once per idle period and a busy one not at all.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Calls and jobs in progress, and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    state: Mutex<State>,
    ended: Condvar,
}

#[derive(Debug)]
struct State {
    running: usize,
    last: Instant,
    /// Set when the service must end now (the bus went away).
    stopped: bool,
}

/// Held while a call or a job runs (it moves with the job to its worker thread); its drop ends
/// the activity.
#[must_use = "the activity ends when this is dropped"]
#[derive(Debug)]
pub struct Busy {
    activity: Arc<Activity>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            state: Mutex::new(State {
                running: 0,
                last: Instant::now(),
                stopped: false,
            }),
            ended: Condvar::new(),
        }
    }
}

impl Activity {
    /// A call or job starts.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.lock().running += 1;
        Busy {
            activity: Arc::clone(self),
        }
    }

    /// Ends [`Activity::wait_idle`] now, whatever runs: there is no one left to answer.
    pub fn stop(&self) {
        self.lock().stopped = true;
        self.ended.notify_all();
    }

    /// Blocks until nothing has run for `period` (`None`: forever), or [`Activity::stop`].
    pub fn wait_idle(&self, period: Option<Duration>) {
        let mut state = self.lock();
        loop {
            if state.stopped {
                return;
            }
            let wait = match period {
                None => None,
                Some(_) if state.running > 0 => None,
                Some(p) => match p.checked_sub(state.last.elapsed()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return,
                },
            };
            state = match wait {
                None => self
                    .ended
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    self.ended
                        .wait_timeout(state, d)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is two counters: a panic elsewhere cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.activity.lock();
        state.running = state.running.saturating_sub(1);
        state.last = Instant::now();
        drop(state);
        self.activity.ended.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_is_counted_from_the_end_of_the_last_activity() {
        let activity = Arc::new(Activity::default());
        let period = Duration::from_millis(300);
        let start = Instant::now();
        let worker = {
            let activity = Arc::clone(&activity);
            std::thread::spawn(move || {
                let busy = activity.begin();
                // A job longer than the idle period.
                std::thread::sleep(Duration::from_millis(600));
                drop(busy);
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        activity.wait_idle(Some(period));
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(900),
            "exited {waited:?} after start, during or right after the job"
        );
        worker.join().unwrap();
    }
}

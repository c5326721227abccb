//! Ending a session from another invocation (`karapace stop`).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("process {0} is not a live session (gone, or its pid was reused)")]
    NotRunning(u32),
    #[error("cannot signal process {pid}: {source}")]
    Signal { pid: u32, source: std::io::Error },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// Exited after SIGTERM.
    Terminated,
    /// Needed SIGKILL after the grace period.
    Killed,
}

/// Start time of `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`), or `None`
/// when it does not run (a zombie has exited); store it with the pid to recognise the process
/// later.
pub fn process_start_time(pid: u32) -> Option<u64> {
    karapace_procstat::live(pid).map(|s| s.start_time)
}

fn wait_exit(fd: &std::os::fd::OwnedFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) if n > 0 => return true,
            Ok(_) if left.is_zero() => return false,
            Ok(_) | Err(_) => {
                if left.is_zero() {
                    return false;
                }
            }
        }
    }
}

/// Waits (at most `timeout`) until process `pid`, started at `start_time`,
/// has exited; true when it has (or was already gone). Woken by the kernel
/// the moment it exits, through a pidfd, rather than by polling.
pub fn wait_process_exit(pid: u32, start_time: u64, timeout: Duration) -> bool {
    pin(pid, Some(start_time)).is_none_or(|fd| wait_exit(&fd, timeout))
}

/// A pidfd on process `pid`, or `None` when no such process runs. With
/// `start_time`, a pid that now names another process counts as gone: the
/// start time is compared after pinning, so the pid cannot be recycled
/// between the check and the use of the pidfd.
fn pin(pid: u32, start_time: Option<u64>) -> Option<std::os::fd::OwnedFd> {
    let raw = i32::try_from(pid).ok().and_then(Pid::from_raw)?;
    let fd = pidfd_open(raw, PidfdFlags::empty()).ok()?;
    match start_time {
        Some(expected) if process_start_time(pid) != Some(expected) => None,
        _ => Some(fd),
    }
}

/// Stops the session whose helper runs as `pid`: SIGTERM (relayed by the
/// helper to the workload), then SIGKILL after `grace` (the helper's death
/// kills the whole environment). The process is pinned with a pidfd, and
/// `start_time` (from [`process_start_time`] at session start) guards
/// against a reused pid.
pub fn stop_session(
    pid: u32,
    start_time: Option<u64>,
    grace: Duration,
) -> Result<StopOutcome, StopError> {
    let fd = pin(pid, start_time).ok_or(StopError::NotRunning(pid))?;
    let send = |sig| {
        pidfd_send_signal(&fd, sig).map_err(|e| StopError::Signal {
            pid,
            source: e.into(),
        })
    };
    send(Signal::TERM)?;
    if wait_exit(&fd, grace) {
        return Ok(StopOutcome::Terminated);
    }
    send(Signal::KILL)?;
    wait_exit(&fd, Duration::from_secs(5));
    Ok(StopOutcome::Killed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sleeper(secs: &str) -> (std::process::Child, u32, u64) {
        let child = Command::new("sleep").arg(secs).spawn().unwrap();
        let pid = child.id();
        let start = process_start_time(pid).unwrap();
        (child, pid, start)
    }

    #[test]
    fn wait_process_exit_wakes_when_the_process_exits() {
        let (mut child, pid, start) = sleeper("0.2");
        let t = Instant::now();
        assert!(wait_process_exit(pid, start, Duration::from_secs(10)));
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(150), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        child.wait().unwrap();
    }

    #[test]
    fn wait_process_exit_times_out_and_ignores_other_processes() {
        let (mut child, pid, start) = sleeper("30");
        let t = Instant::now();
        assert!(!wait_process_exit(pid, start, Duration::from_millis(100)));
        assert!(t.elapsed() >= Duration::from_millis(100));
        // A different start time means the pid names another process: nothing to wait for.
        assert!(wait_process_exit(pid, start + 1, Duration::from_secs(10)));
        child.kill().unwrap();
        child.wait().unwrap();
        // Gone (reaped): nothing to wait for either.
        assert!(wait_process_exit(pid, start, Duration::from_secs(10)));
    }
}

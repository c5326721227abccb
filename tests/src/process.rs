//! Running a process to completion with captured output, optional stdin and a hard timeout.
//!
//! A hung build or `exec` must fail the test with a diagnostic instead of hanging CI, so every
//! command runs in its own process group and the whole group is killed when the time is up
//! (the helper and the command inside the environment go with it).

use std::fmt::{self, Write as _};
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// What a finished (or killed) command did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The command line, shell-quoted, with the environment variables that matter.
    pub cmdline: String,
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
    pub timed_out: bool,
}

impl Outcome {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with the full diagnostic unless the exit code is `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert!(self.code == Some(code), "expected exit code {code}\n{self}");
        self
    }

    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        self.assert_code(0)
    }

    /// stdout parsed as JSON; panics with the diagnostic if it is not.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{self}"))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  command: {}", self.cmdline)?;
        match (self.code, self.signal) {
            _ if self.timed_out => writeln!(
                f,
                "  result:  TIMED OUT after {:.1} s (process group killed)",
                self.elapsed.as_secs_f64()
            )?,
            (Some(c), _) => writeln!(
                f,
                "  result:  exit code {c} after {:.2} s",
                self.elapsed.as_secs_f64()
            )?,
            (None, Some(s)) => writeln!(f, "  result:  killed by signal {s}")?,
            (None, None) => writeln!(f, "  result:  unknown status")?,
        }
        writeln!(f, "  stdout:{}", indent(&self.stdout_str()))?;
        write!(f, "  stderr:{}", indent(&self.stderr_str()))
    }
}

fn indent(s: &str) -> String {
    if s.trim().is_empty() {
        return " (empty)".to_owned();
    }
    // Long apt logs would bury the interesting part: keep the tail.
    let lines: Vec<&str> = s.lines().collect();
    let skip = lines.len().saturating_sub(80);
    let mut out = String::new();
    if skip > 0 {
        let _ = write!(out, "\n    … {skip} earlier lines …");
    }
    for l in &lines[skip..] {
        out.push_str("\n    | ");
        out.push_str(l);
    }
    out
}

/// Quotes `arg` for display as a shell word.
pub fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
    {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

fn read_all(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Runs `cmd` (stdout and stderr captured, stdin from `stdin` or empty), killing its process
/// group after `timeout`. `cmdline` is only used for diagnostics.
pub fn run(mut cmd: Command, cmdline: String, stdin: Option<&[u8]>, timeout: Duration) -> Outcome {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmdline}: {e}"));
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let data = data.to_vec();
        // A command that does not read its stdin must not block us.
        thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let out_rx = read_all(child.stdout.take().expect("stdout is piped"));
    let err_rx = read_all(child.stderr.take().expect("stderr is piped"));
    let (status_tx, status_rx) = mpsc::channel::<std::io::Result<ExitStatus>>();
    thread::spawn(move || {
        let _ = status_tx.send(child.wait());
    });
    let (status, timed_out) = if let Ok(s) = status_rx.recv_timeout(timeout) {
        (s, false)
    } else {
        let _ = killpg(pid, Signal::SIGKILL);
        let reaped = status_rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| Err(std::io::Error::other("not reaped after SIGKILL")));
        (reaped, true)
    };
    let elapsed = start.elapsed();
    // Descendants that escaped the group may hold the pipes open; do not wait for them forever.
    let grace = if timed_out {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(30)
    };
    let stdout = out_rx.recv_timeout(grace).unwrap_or_default();
    let stderr = err_rx.recv_timeout(grace).unwrap_or_default();
    let (code, signal) = match &status {
        Ok(s) => (s.code(), s.signal()),
        Err(_) => (None, None),
    };
    Outcome {
        cmdline,
        code,
        signal,
        stdout,
        stderr,
        elapsed,
        timed_out,
    }
}

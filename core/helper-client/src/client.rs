//! Spawning the helper, the socket handshake, stdio and signal forwarding.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use interprocess::local_socket::traits::{Listener as _, StreamCommon};
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::uds_local_socket::{Listener, Stream};
use karapace_protocol::{
    Hello, PROTOCOL_VERSION, Reply, Request, RunSpec, Timings, TreeJob, TreeStats, WaitStatus,
    read_frame, read_frame_with_fd, write_frame,
};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use signal_hook::consts::SIGWINCH;
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::low_level::siginfo::Cause;

use crate::HelperError;
use crate::pty::Relay;

/// How long the helper may take to connect back.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the workload's stdio is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdioMode {
    /// The caller's own stdin/stdout/stderr (exec, enter).
    Inherit,
    /// stdout is captured and returned in [`RunOutcome::stdout`]; stdin is
    /// /dev/null, stderr inherited (e.g. `dpkg-query` during a build).
    CaptureStdout,
    /// stdin and stdout are /dev/null, stderr inherited.
    Null,
}

/// Result of a finished run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub status: WaitStatus,
    /// Captured stdout with [`StdioMode::CaptureStdout`].
    pub stdout: Option<Vec<u8>>,
    /// Helper-side timestamps (`CLOCK_MONOTONIC` ns).
    pub timings: Timings,
    /// Client-side timestamps (ns, same clock): spawn start, helper
    /// connected, handshake done, `Exited` received, helper reaped.
    pub client: ClientTimings,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientTimings {
    pub spawn: u64,
    pub connected: u64,
    pub handshake: u64,
    pub exited: u64,
    pub reaped: u64,
}

/// The helper binary: `$KARAPACE_HELPER`, else `karapace-helper` next to the
/// current executable (or one directory up, for cargo's `deps/` layout).
pub fn helper_path() -> Result<PathBuf, HelperError> {
    if let Some(p) = std::env::var_os("KARAPACE_HELPER") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(HelperError::NotFound(p))
        };
    }
    let exe = std::env::current_exe().map_err(HelperError::Spawn)?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let candidates = [dir.join("karapace-helper"), dir.join("../karapace-helper")];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| HelperError::NotFound(candidates[0].clone()))
}

/// A running helper session.
pub struct Session {
    child: Child,
    stream: Stream,
    stdout: Option<JoinHandle<Captured>>,
    capture_cap: usize,
    signals: Signals,
    started: Option<Timings>,
    /// Host pid of the environment's init process, from `Started`.
    init_pid: Option<u32>,
    /// An interactive session (`RunSpec::tty`): its pty master comes with `Started`.
    tty: bool,
    /// The master received with `Started`, until the relay takes it.
    pty_master: Option<OwnedFd>,
    /// Interactive sessions, once started: the relay between the caller's terminal and the
    /// session's pty (its drop restores the caller's terminal settings).
    relay: Option<Relay>,
    client: ClientTimings,
}

/// How long the output of an interactive session's last moments may take to arrive after the
/// workload's exit (it normally takes a few milliseconds: until the environment's processes
/// are gone).
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Signal delivery through a self-pipe polled together with the helper
/// socket: no extra thread on the hot path.
type Signals = SignalDelivery<UnixStream, WithOrigin>;

fn forwarded_signals() -> std::io::Result<Signals> {
    let (r, w) = UnixStream::pair()?;
    SignalDelivery::with_pipe(
        r,
        w,
        WithOrigin::default(),
        karapace_protocol::RELAYED_SIGNALS,
    )
}

fn socket_dir() -> std::io::Result<tempfile::TempDir> {
    // Prefer memory-backed directories: creating and removing a directory
    // on a disk file system can cost milliseconds. The directory gets an
    // unpredictable name and mode 0700 (set explicitly: tempfile creates
    // directories with the default mode, 0755 under the usual umask), which
    // is safe even inside the sticky, world-writable /dev/shm.
    use std::os::unix::fs::PermissionsExt;
    let private = std::fs::Permissions::from_mode(0o700);
    let candidates = [
        std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
        Some(PathBuf::from("/dev/shm")),
    ];
    for base in candidates.into_iter().flatten() {
        if base.is_dir()
            && let Ok(dir) = tempfile::Builder::new()
                .prefix("karapace-")
                .permissions(private.clone())
                .tempdir_in(&base)
        {
            return Ok(dir);
        }
    }
    tempfile::Builder::new()
        .prefix("karapace-")
        .permissions(private)
        .tempdir()
}

fn accept(listener: &Listener, child: &mut Child) -> Result<Stream, HelperError> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(50u16)) {
            Ok(n) if n > 0 => return listener.accept().map_err(HelperError::Socket),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(HelperError::Socket(e.into())),
        }
        if let Ok(Some(st)) = child.try_wait() {
            return Err(HelperError::HelperDied(st.to_string()));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HelperError::Timeout(CONNECT_TIMEOUT));
        }
    }
}

/// Spawns the helper, performs the handshake and sends `spec`. Returns once
/// the request is sent; call [`Session::wait`] for the outcome. The helper's
/// pid ([`Session::helper_pid`]) identifies the session for `stop`.
///
/// Dropping a `Session` without waiting closes the socket, and the helper
/// then kills the environment. the relayed signals (`RELAYED_SIGNALS`) sent to
/// the calling process are relayed to the workload while [`Session::wait`]
/// runs; the handlers are installed (through `signal-hook`) at the first
/// spawn and stay installed, so afterwards those signals no longer terminate
/// the calling process by default: a CLI should exit once the session is over.
pub fn spawn(spec: &RunSpec, stdio: StdioMode) -> Result<Session, HelperError> {
    prespawn(stdio)?.run(spec)
}

/// [`spawn`] with explicit stdio for the workload (a piped stdout is
/// collected into [`RunOutcome::stdout`]).
pub fn spawn_with(
    spec: &RunSpec,
    stdin: Stdio,
    stdout: Stdio,
    stderr: Stdio,
) -> Result<Session, HelperError> {
    prespawn_with(stdin, stdout, stderr, DEFAULT_CAPTURE_CAP)?.run(spec)
}

/// A helper started before its request is known: its exec and start-up (about a
/// millisecond) overlap whatever the caller still has to do to build the request. Dropping
/// it kills the helper.
pub struct Pending {
    child: Option<Child>,
    listener: Listener,
    /// The socket's directory: removed as soon as the helper has connected (nothing else ever
    /// connects), so a core killed during a long session or tree job leaves nothing behind;
    /// otherwise with the `Pending`.
    dir: Option<tempfile::TempDir>,
    signals: Option<Signals>,
    stdout: Option<JoinHandle<Captured>>,
    capture_cap: usize,
    client: ClientTimings,
}

/// What the stdout reader collected: at most the cap, and whether the workload wrote more.
struct Captured {
    bytes: Vec<u8>,
    overflowed: bool,
}

/// Reads the workload's stdout, at most `cap` bytes. On one byte more it stops reading and kills
/// the helper (which takes the whole environment with it), so a workload that writes without end
/// costs neither memory nor time. The helper is pinned with a pidfd taken before it can have
/// been reaped, so the kill never reaches another process.
fn read_capped(out: impl Read, cap: usize, helper: Option<OwnedFd>) -> Captured {
    let mut bytes = Vec::new();
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    let _ = out.take(limit).read_to_end(&mut bytes);
    let overflowed = bytes.len() > cap;
    if overflowed {
        bytes.truncate(cap);
        if let Some(fd) = helper {
            let _ = rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::KILL);
        }
    }
    Captured { bytes, overflowed }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts a helper for a request sent later with [`Pending::run`].
pub fn prespawn(stdio: StdioMode) -> Result<Pending, HelperError> {
    let (i, o) = match stdio {
        StdioMode::Inherit => (Stdio::inherit(), Stdio::inherit()),
        StdioMode::CaptureStdout => (Stdio::null(), Stdio::piped()),
        StdioMode::Null => (Stdio::null(), Stdio::null()),
    };
    prespawn_with(i, o, Stdio::inherit(), DEFAULT_CAPTURE_CAP)
}

fn prespawn_with(
    stdin: Stdio,
    stdout: Stdio,
    stderr: Stdio,
    capture_cap: usize,
) -> Result<Pending, HelperError> {
    let client = ClientTimings {
        spawn: karapace_protocol::monotonic_ns(),
        ..ClientTimings::default()
    };
    let helper = helper_path()?;
    let dir = socket_dir().map_err(HelperError::Socket)?;
    let sock = dir.path().join("helper.sock");
    let name = sock
        .as_os_str()
        .to_fs_name::<GenericFilePath>()
        .map_err(HelperError::Socket)?;
    let listener: Listener = ListenerOptions::new()
        .name(name)
        .create_sync_as()
        .map_err(HelperError::Socket)?;

    // Forward the relayed signals sent to *us*; register before
    // spawning so an early Ctrl-C cannot kill the core mid-setup.
    let signals = forwarded_signals().map_err(HelperError::Socket)?;

    let mut cmd = Command::new(&helper);
    cmd.arg("--socket")
        .arg(&sock)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr);
    let mut child = cmd.spawn().map_err(HelperError::Spawn)?;
    let stdout = child.stdout.take().map(|out| {
        // Not reaped before `finish`, so this pidfd names our helper.
        let pidfd = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .and_then(|pid| {
                rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
            });
        std::thread::spawn(move || read_capped(out, capture_cap, pidfd))
    });
    Ok(Pending {
        child: Some(child),
        listener,
        dir: Some(dir),
        signals: Some(signals),
        stdout,
        capture_cap,
        client,
    })
}

impl Pending {
    /// Accepts the helper's connection, checks it, performs the handshake and sends `spec`.
    /// Returns once the request is sent; call [`Session::wait`] for the outcome.
    pub fn run(mut self, spec: &RunSpec) -> Result<Session, HelperError> {
        let request = Request::Run(Box::new(spec.clone()));
        let (child, stream, signals, mut client) = self.connect(&request)?;
        client.handshake = karapace_protocol::monotonic_ns();
        Ok(Session {
            child,
            stream,
            stdout: self.stdout.take(),
            capture_cap: self.capture_cap,
            signals,
            started: None,
            init_pid: None,
            client,
            tty: spec.tty.is_some(),
            pty_master: None,
            relay: None,
        })
        // `self` drops here with the listener; the socket's name and directory went at accept.
    }

    /// Accepts the helper's connection, checks it, performs the handshake and sends `job`.
    /// Feed or drain the tar stream (the helper's stdin or stdout), then call
    /// [`TreeSession::finish`].
    pub fn tree(mut self, job: &TreeJob) -> Result<TreeSession, HelperError> {
        let (child, stream, _signals, _) = self.connect(&Request::Tree(job.clone()))?;
        Ok(TreeSession { child, stream })
    }

    /// The connection and handshake every request starts with, then `request`.
    fn connect(
        &mut self,
        request: &Request,
    ) -> Result<(Child, Stream, Signals, ClientTimings), HelperError> {
        let (Some(mut child), Some(signals)) = (self.child.take(), self.signals.take()) else {
            return Err(HelperError::Peer("helper already used".into()));
        };
        let mut client = self.client;
        let fail = |child: &mut Child, e: HelperError| {
            let _ = child.kill();
            let _ = child.wait();
            e
        };
        let mut stream = match accept(&self.listener, &mut child) {
            Ok(s) => s,
            Err(e) => return Err(fail(&mut child, e)),
        };
        client.connected = karapace_protocol::monotonic_ns();
        drop(self.dir.take());
        // The peer must be the helper we just spawned, running as ourselves.
        let creds = match stream.peer_creds() {
            Ok(c) => c,
            Err(e) => return Err(fail(&mut child, HelperError::Socket(e))),
        };
        let me = nix::unistd::geteuid().as_raw();
        if creds.pid() != i32::try_from(child.id()).ok() || creds.euid() != Some(me) {
            return Err(fail(
                &mut child,
                HelperError::Peer(format!("{:?}/{:?}", creds.pid(), creds.euid())),
            ));
        }
        match read_frame::<Reply>(&mut stream) {
            Ok(Reply::Hello(h)) if h.version == PROTOCOL_VERSION => {}
            Ok(Reply::Hello(h)) => {
                return Err(fail(
                    &mut child,
                    karapace_protocol::Refusal::VersionMismatch {
                        helper: h.version,
                        core: PROTOCOL_VERSION,
                    }
                    .into(),
                ));
            }
            Ok(Reply::Failed(r)) => return Err(fail(&mut child, r.into())),
            Ok(_) => return Err(fail(&mut child, HelperError::Peer("expected Hello".into()))),
            Err(e) => return Err(fail(&mut child, e.into())),
        }
        let hello = Request::Hello(Hello {
            version: PROTOCOL_VERSION,
            pid: std::process::id(),
        });
        if let Err(e) = write_frame(&mut stream, &hello) {
            return Err(fail(&mut child, e.into()));
        }
        if let Err(e) = write_frame(&mut stream, request) {
            return Err(fail(&mut child, e.into()));
        }
        Ok((child, stream, signals, client))
    }
}

/// A tree job sent to the helper ([`tree`]).
pub struct TreeSession {
    child: Child,
    stream: Stream,
}

impl TreeSession {
    /// Waits for the job's outcome (close or drain the tar stream first).
    pub fn finish(mut self) -> Result<TreeStats, HelperError> {
        let reply = read_frame::<Reply>(&mut self.stream);
        let ended = self.child.wait();
        match reply {
            Ok(Reply::TreeDone(done)) => Ok(done),
            Ok(Reply::Failed(r)) => Err(r.into()),
            Ok(_) => Err(HelperError::Peer("expected the tree job's outcome".into())),
            Err(_) => Err(HelperError::HelperDied(match ended {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            })),
        }
    }
}

/// Starts a tree job ([`TreeJob`]): the helper's stdin and stdout are the tar streams.
pub fn tree(job: &TreeJob, stdin: Stdio, stdout: Stdio) -> Result<TreeSession, HelperError> {
    prespawn_with(stdin, stdout, Stdio::inherit(), DEFAULT_CAPTURE_CAP)?.tree(job)
}

impl Session {
    /// Pid of the helper process (record it with the session; pass it to
    /// [`crate::stop_session`]).
    pub fn helper_pid(&self) -> u32 {
        self.child.id()
    }

    /// Next reply from the helper; meanwhile forwards signals sent to us
    /// (not terminal-generated ones, which already reached the workload's
    /// foreground process group).
    fn next_reply(&mut self) -> Result<Reply, HelperError> {
        loop {
            let (sock, sig) = {
                let mut fds = [
                    PollFd::new(self.stream.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.signals.get_read().as_fd(), PollFlags::POLLIN),
                ];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(HelperError::Socket(e.into())),
                }
                let ready = |f: &PollFd| f.revents().is_some_and(|e| !e.is_empty());
                (ready(&fds[0]), ready(&fds[1]))
            };
            if sig {
                let sigs: Vec<_> = self
                    .signals
                    .pending()
                    .filter(|o| !matches!(o.cause, Cause::Kernel))
                    .map(|o| o.signal)
                    .collect();
                for n in sigs {
                    write_frame(&mut self.stream, &Request::Signal(n))?;
                }
            }
            if sock {
                if self.tty {
                    // `Started` brings the pty master along.
                    let (reply, fd) = read_frame_with_fd::<Reply>(&mut self.stream)?;
                    self.pty_master = self.pty_master.take().or(fd);
                    return Ok(reply);
                }
                return Ok(read_frame::<Reply>(&mut self.stream)?);
            }
        }
    }

    /// [`Session::next_reply`] of an interactive session once it runs: also relays between
    /// the caller's terminal and the session's pty, and copies the caller's terminal size to
    /// the pty on SIGWINCH.
    fn next_reply_relaying(&mut self) -> Result<Reply, HelperError> {
        loop {
            let Some(relay) = self.relay.as_mut() else {
                return self.next_reply();
            };
            let (sock, stdin, master) = {
                let interest = relay.interest();
                let mut fds = vec![
                    PollFd::new(self.stream.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.signals.get_read().as_fd(), PollFlags::POLLIN),
                ];
                let stdin_at = interest.stdin.map(|fd| {
                    fds.push(PollFd::new(fd, PollFlags::POLLIN));
                    fds.len() - 1
                });
                let master_at = interest.master.map(|(fd, flags)| {
                    fds.push(PollFd::new(fd, flags));
                    fds.len() - 1
                });
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(HelperError::Socket(e.into())),
                }
                let events = |i: usize| fds[i].revents().unwrap_or(PollFlags::empty());
                (
                    !events(0).is_empty(),
                    stdin_at.map(events),
                    master_at.map(events),
                )
            };
            // Signals first, whether or not this poll saw them (the handler may have run just
            // after it): a resize made before keys were typed reaches the pty before them.
            let pending: Vec<_> = self.signals.pending().collect();
            for o in pending {
                if o.signal == SIGWINCH {
                    relay.resize();
                } else if !matches!(o.cause, Cause::Kernel) {
                    write_frame(&mut self.stream, &Request::Signal(o.signal))?;
                }
            }
            relay.handle(stdin, master);
            if sock {
                return Ok(read_frame::<Reply>(&mut self.stream)?);
            }
        }
    }

    /// Starts relaying an interactive session's pty, received with `Started`. Without it the
    /// session could only hang: the helper is killed (and the environment with it).
    fn start_relay(&mut self) -> Result<(), HelperError> {
        let relay = self
            .pty_master
            .take()
            .ok_or_else(|| HelperError::Peer("no pty master came with Started".into()))
            .and_then(|master| {
                self.signals
                    .handle()
                    .add_signal(SIGWINCH)
                    .map_err(HelperError::Socket)?;
                Ok(Relay::start(master))
            });
        match relay {
            Ok(r) => {
                self.relay = Some(r);
                Ok(())
            }
            Err(e) => {
                let _ = self.child.kill();
                Err(e)
            }
        }
    }

    /// Host pid of the environment's init process, once [`Session::wait_started`] returned.
    pub fn init_pid(&self) -> Option<u32> {
        self.init_pid
    }

    /// Waits until the workload has started (its `execve` succeeded).
    pub fn wait_started(&mut self) -> Result<Timings, HelperError> {
        if let Some(t) = self.started {
            return Ok(t);
        }
        match self.next_reply()? {
            Reply::Started { pid, timings } => {
                self.started = Some(timings);
                self.init_pid = Some(pid);
                if self.tty {
                    self.start_relay()?;
                }
                Ok(timings)
            }
            Reply::Failed(r) => Err(r.into()),
            other => Err(HelperError::Peer(format!("unexpected {other:?}"))),
        }
    }

    /// Waits for the workload to finish and the helper to exit (which includes the
    /// environment's teardown: its upper is unmounted and synced when this returns).
    pub fn wait(self) -> Result<RunOutcome, HelperError> {
        self.finish(true).map(|(outcome, _)| outcome)
    }

    /// Waits for the workload to finish, but not for the helper to tear the environment
    /// down: it may still be unmounting (and syncing) the overlay, and exits on its own
    /// ([`Session::helper_pid`] tells when it is gone). The flag says whether the helper had
    /// already exited.
    pub fn wait_workload(self) -> Result<(RunOutcome, bool), HelperError> {
        self.finish(false)
    }

    fn finish(mut self, reap: bool) -> Result<(RunOutcome, bool), HelperError> {
        let result = self.wait_inner();
        if let Some(mut relay) = self.relay.take() {
            relay.drain(DRAIN_LIMIT);
            // Dropped here: the caller's terminal gets its settings back.
        }
        self.signals.handle().close();
        if result.is_err() {
            let _ = self.child.kill();
        }
        // `None`: left running (dropping a `Child` neither kills nor waits for it).
        let helper_status = if reap || result.is_err() {
            Some(self.child.wait())
        } else {
            self.child.try_wait().ok().flatten().map(Ok)
        };
        if helper_status.is_some() {
            self.client.reaped = karapace_protocol::monotonic_ns();
        }
        let captured = self.stdout.take().and_then(|t| t.join().ok());
        if let Some(Captured {
            overflowed: true, ..
        }) = captured
        {
            return Err(HelperError::OutputTooLarge(self.capture_cap));
        }
        let stdout = captured.map(|c| c.bytes);
        let exited = helper_status.is_some();
        let (status, timings) = match (result, helper_status) {
            (Ok(r), _) => r,
            (Err(HelperError::Protocol(karapace_protocol::FrameError::Closed)), Some(st)) => {
                // The helper died without a report (e.g. SIGKILL from stop).
                use std::os::unix::process::ExitStatusExt;
                let st = st.map_err(HelperError::Socket)?;
                match (st.code(), st.signal()) {
                    (_, Some(sig)) => (WaitStatus::Signaled(sig), Timings::default()),
                    (Some(c), None) => {
                        return Err(HelperError::HelperDied(format!("exit code {c}")));
                    }
                    _ => return Err(HelperError::HelperDied(st.to_string())),
                }
            }
            (Err(e), _) => return Err(e),
        };
        Ok((
            RunOutcome {
                status,
                stdout,
                timings,
                client: self.client,
            },
            exited,
        ))
    }

    fn wait_inner(&mut self) -> Result<(WaitStatus, Timings), HelperError> {
        self.wait_started()?;
        loop {
            match self.next_reply_relaying()? {
                Reply::Exited { status, timings } => {
                    self.client.exited = karapace_protocol::monotonic_ns();
                    return Ok((status, timings));
                }
                Reply::Failed(r) => return Err(r.into()),
                Reply::Started { .. } | Reply::Hello(_) | Reply::TreeDone(_) => {}
            }
        }
    }
}

/// Runs `spec` to completion with the given stdio; returns the workload's
/// status (use [`WaitStatus::code`] for the shell-style exit code).
pub fn run(spec: &RunSpec, stdio: StdioMode) -> Result<WaitStatus, HelperError> {
    Ok(spawn(spec, stdio)?.wait()?.status)
}

/// Runs `spec` with stdout captured (stdin is /dev/null), at most [`DEFAULT_CAPTURE_CAP`] bytes.
pub fn capture(spec: &RunSpec) -> Result<(WaitStatus, Vec<u8>), HelperError> {
    capture_bounded(spec, DEFAULT_CAPTURE_CAP)
}

/// Runs `spec` with stdout captured (stdin is /dev/null). A workload that writes more than `cap`
/// bytes is killed at once and the run fails with [`HelperError::OutputTooLarge`]: never more
/// than `cap` + 1 bytes are held.
pub fn capture_bounded(spec: &RunSpec, cap: usize) -> Result<(WaitStatus, Vec<u8>), HelperError> {
    let pending = prespawn_with(Stdio::null(), Stdio::piped(), Stdio::inherit(), cap)?;
    let out = pending.run(spec)?.wait()?;
    Ok((out.status, out.stdout.unwrap_or_default()))
}

/// The cap of [`capture`] and of piped stdout in [`spawn_with`].
pub const DEFAULT_CAPTURE_CAP: usize = 16 << 20;

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_socket_directory_is_private_whatever_the_umask() {
        let dir = super::socket_dir().unwrap();
        let meta = std::fs::metadata(dir.path()).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o7777,
            0o700,
            "{}",
            dir.path().display()
        );
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            nix::unistd::geteuid().as_raw()
        );
    }
}

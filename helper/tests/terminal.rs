//! Interactive sessions on a real terminal: the workload gets a pty of the environment's own
//! devpts instance, relayed by the client to the caller's terminal.
//!
//! Each test gives `kp-run` (an example built with the tests: the client with `RunSpec::tty`
//! set from its stdin, as `karapace enter` does) a pty of its own as its controlling terminal
//! (`setsid -c`), and plays the user on that pty's master: it types, resizes, hangs up, and
//! reads what the session shows.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::termios::{LocalFlags, tcgetattr};

/// Generous: the suite runs on a busy two-core machine.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The user's side of a terminal on which `kp-run` runs a session.
struct Term {
    /// Shared with the reader thread; `None` once the terminal hung up.
    master: Option<Arc<std::fs::File>>,
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
    /// Tells the reader thread to let go of the master.
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
    _store: Option<common::Store>,
}

fn kp_run() -> std::path::PathBuf {
    common::examples_dir().join("kp-run")
}

impl Term {
    /// Starts `argv` in a session on a new terminal of `rows` × `cols`.
    fn start(argv: &[&str], rows: u16, cols: u16) -> Term {
        let store = common::store();
        let mut cmd = Command::new("setsid");
        cmd.arg("--ctty")
            .arg(kp_run())
            .arg(&store.root)
            .arg(store.layer())
            .arg("--")
            .args(argv);
        Term::start_command(&mut cmd, rows, cols, Some(store))
    }

    /// Runs `cmd` (which makes the terminal its controlling one) on a new terminal; `store` is
    /// kept until the end.
    fn start_command(
        cmd: &mut Command,
        rows: u16,
        cols: u16,
        store: Option<common::Store>,
    ) -> Term {
        let (master, slave) = new_pty();
        resize(&master, rows, cols);
        let slave = std::fs::File::from(slave);
        let child = cmd
            .stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave))
            .spawn()
            .expect("setsid(1) from util-linux");
        let master = Arc::new(std::fs::File::from(master));
        let output = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (master, sink, stop) =
                (Arc::clone(&master), Arc::clone(&output), Arc::clone(&stop));
            std::thread::spawn(move || read_until_stopped(&master, &sink, &stop))
        };
        Term {
            master: Some(master),
            child,
            output,
            stop,
            reader: Some(reader),
            _store: store,
        }
    }

    fn master(&self) -> &std::fs::File {
        self.master.as_deref().expect("the terminal is still there")
    }

    /// The terminal emulator goes away: its master is closed, which hangs the terminal up.
    fn hang_up(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(r) = self.reader.take() {
            r.join().expect("reader");
        }
        drop(self.master.take());
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).replace('\r', "")
    }

    /// Waits until the output contains `needle` (the whole output so far is returned).
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let text = self.text();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} within {TIMEOUT:?}; the terminal shows:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn type_keys(&mut self, keys: &[u8]) {
        self.master().write_all(keys).expect("type");
    }

    /// Resizes the terminal, as a terminal emulator does (the kernel sends SIGWINCH to its
    /// foreground process group: `kp-run`).
    fn resize(&self, rows: u16, cols: u16) {
        resize(self.master(), rows, cols);
    }

    /// Whether the terminal is in canonical mode with echo (as a shell left it), read through
    /// the master.
    fn cooked(&self) -> bool {
        let t = tcgetattr(self.master().as_fd()).expect("tcgetattr");
        t.local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG)
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "kp-run still runs after {TIMEOUT:?}; the terminal shows:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The helper process `kp-run` started (its only child).
    fn helper_pid(&self) -> i32 {
        let pid = self.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).expect("children");
        children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("kp-run has started the helper")
    }
}

/// Copies what the terminal shows into `sink` until every slave is closed (EIO) or `stop`.
fn read_until_stopped(master: &std::fs::File, sink: &Mutex<Vec<u8>>, stop: &AtomicBool) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(50u8)).unwrap_or(0) == 0 {
            continue;
        }
        match (&*master).read(&mut buf) {
            Ok(n) if n > 0 => sink.lock().unwrap().extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new host pty: (master, slave), both close-on-exec from the start (the tests run in
/// parallel threads, and a copy of a master inherited by another test's child would keep its
/// terminal from ever hanging up).
fn new_pty() -> (OwnedFd, OwnedFd) {
    use rustix::pty::{OpenptFlags, ioctl_tiocgptpeer, openpt, unlockpt};
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = openpt(flags).expect("open /dev/ptmx");
    unlockpt(&master).expect("unlockpt");
    let slave = ioctl_tiocgptpeer(&master, flags).expect("TIOCGPTPEER");
    (master, slave)
}

fn resize(master: impl AsFd, rows: u16, cols: u16) {
    let size = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(master, size).expect("TIOCSWINSZ");
}

/// A host pty whose number is not 0 (the only number the session's own instance uses): the
/// user's "other terminal", where a password might be typed.
fn other_host_pty() -> (OwnedFd, u32) {
    let mut keep = Vec::new();
    loop {
        let (master, slave) = new_pty();
        let name = std::fs::read_link(format!("/proc/self/fd/{}", {
            use std::os::fd::AsRawFd;
            slave.as_raw_fd()
        }))
        .expect("slave name");
        let n: u32 = name
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .expect("a /dev/pts/N name");
        if n != 0 {
            return (master, n);
        }
        keep.push((master, slave));
    }
}

/// The devpts the session sees is its own: `/dev/pts` lists only the session's pty and the
/// multiplexer, a host pty cannot be opened by its number, `/dev/ptmx` is the instance's own,
/// the pty is the workload's terminal, and the output the workload wrote just before it exited
/// is all shown. (With the host's devpts shared, as before, the workload listed and opened the
/// user's other terminals and could read what was typed into them.)
#[test]
fn an_interactive_session_sees_only_its_own_ptys() {
    use std::os::unix::fs::MetadataExt;
    let (_victim, n) = other_host_pty();
    let host_devpts = std::fs::metadata("/dev/pts").expect("host devpts").dev();
    let script = format!(
        "echo PTS=[$(ls /dev/pts | tr '\\n' ' ')]; \
         ( : < /dev/pts/{n} ) 2>/dev/null && echo HOST-PTY-OPENED || echo HOST-PTY-REFUSED; \
         echo DEVPTS=$(stat -c %d /dev/pts) PTMX=$(stat -L -c %d /dev/ptmx) TTY=$(tty); \
         seq 1 20000; echo LAST-LINE; exit 3"
    );
    let mut term = Term::start(&["/bin/sh", "-c", &script], 24, 80);
    let status = term.wait_exit();
    let text = term.wait_for("LAST-LINE");
    assert!(text.contains("PTS=[0 ptmx ]"), "{text}");
    assert!(text.contains("HOST-PTY-REFUSED"), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("DEVPTS="))
        .unwrap_or_else(|| panic!("{text}"));
    let field = |key: &str| -> String {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in {line}"))
            .to_owned()
    };
    assert_ne!(field("DEVPTS="), host_devpts.to_string(), "{line}");
    assert_eq!(field("PTMX="), field("DEVPTS="), "{line}");
    assert_eq!(field("TTY="), "/dev/pts/0", "{line}");
    assert!(text.contains("\n20000\nLAST-LINE"), "{text}");
    assert_eq!(status.code(), Some(3), "{text}");
    assert!(term.cooked(), "the terminal's settings are restored");
}

/// The session starts with the caller's window size, and a resize of the caller's terminal
/// reaches the workload (SIGWINCH, and the new size).
#[test]
fn a_resize_of_the_callers_terminal_reaches_the_workload() {
    let script = "trap 'echo WINCH=$(stty size)' WINCH; echo START=$(stty size); \
                  while :; do sleep 0.05; done";
    let mut term = Term::start(&["/bin/sh", "-c", script], 33, 101);
    term.wait_for("START=33 101");
    assert!(
        !term.cooked(),
        "the caller's terminal is raw while the session runs"
    );
    term.resize(40, 120);
    term.wait_for("WINCH=40 120");
    // Ctrl-C ends the loop: the shell runs as the pty's foreground job.
    term.type_keys(b"\x03");
    let status = term.wait_exit();
    assert_eq!(status.code(), Some(130), "{}", term.text());
    assert!(term.cooked(), "the terminal's settings are restored");
}

/// Job control inside: the shell leads its own session with the pty as its controlling
/// terminal, and Ctrl-C / Ctrl-Z reach the inner foreground job, not `kp-run`, which goes on
/// relaying and reports the shell's exit status.
#[test]
fn keys_reach_the_inner_foreground_job() {
    let mut term = Term::start(&["/bin/sh", "-i"], 24, 80);
    // The echo of a typed line shows `""`; only the output has the marker whole.
    term.type_keys(b"echo SID\"\"=$(cut -d' ' -f6 /proc/$$/stat) PID=$$ TTY=$(tty)\n");
    let text = term.wait_for("SID=");
    let line = text.lines().find(|l| l.starts_with("SID=")).expect("line");
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        words.first().and_then(|w| w.strip_prefix("SID=")),
        words.get(1).and_then(|w| w.strip_prefix("PID=")),
        "the shell is a session leader: {line}"
    );
    assert_eq!(words.get(2), Some(&"TTY=/dev/pts/0"), "{line}");

    term.type_keys(b"sh -c 'echo SLEEP\"\"ING; exec sleep 60'\n");
    term.wait_for("SLEEPING");
    term.type_keys(b"\x03");
    term.type_keys(b"echo RC\"\"=$?\n");
    term.wait_for("RC=130");

    term.type_keys(b"sh -c 'echo STOPP\"\"ING; exec sleep 60'\n");
    term.wait_for("STOPPING");
    term.type_keys(b"\x1a");
    term.wait_for("Stopped");
    term.type_keys(b"kill -9 %1; echo KILL\"\"ED\n");
    term.wait_for("KILLED");
    term.type_keys(b"exit 4\n");
    // ash may not have noticed yet that the stopped job is gone: it then refuses the first
    // `exit` ("You have stopped jobs."), as shells do, and takes the second.
    let deadline = Instant::now() + TIMEOUT;
    while term.child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        if term.text().contains("You have stopped jobs") {
            term.type_keys(b"exit 4\n");
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = term.wait_exit();
    assert_eq!(status.code(), Some(4), "{}", term.text());
    assert!(term.cooked(), "the terminal's settings are restored");
}

/// The caller's terminal gets its settings back however the session ends: a signal to the
/// client (forwarded to the workload, which dies of it), or the helper's death.
#[test]
fn the_terminal_is_restored_on_every_exit_path() {
    for (signal, expect) in [
        (nix::sys::signal::Signal::SIGTERM, 128 + 15),
        (nix::sys::signal::Signal::SIGHUP, 128 + 1),
    ] {
        let mut term = Term::start(
            &["/bin/sh", "-c", "echo RUN\"\"NING; exec sleep 60"],
            24,
            80,
        );
        term.wait_for("RUNNING");
        assert!(!term.cooked(), "raw while the session runs");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(term.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, signal).expect("signal kp-run");
        let status = term.wait_exit();
        assert_eq!(status.code(), Some(expect), "{signal}: {}", term.text());
        assert!(term.cooked(), "restored after {signal}");
    }

    let mut term = Term::start(
        &["/bin/sh", "-c", "echo RUN\"\"NING; exec sleep 60"],
        24,
        80,
    );
    term.wait_for("RUNNING");
    assert!(!term.cooked(), "raw while the session runs");
    let helper = nix::unistd::Pid::from_raw(term.helper_pid());
    nix::sys::signal::kill(helper, nix::sys::signal::Signal::SIGKILL).expect("kill helper");
    let status = term.wait_exit();
    assert_ne!(status.code(), Some(0), "{}", term.text());
    assert!(term.cooked(), "restored after the helper's death");
}

/// A hang-up of the caller's terminal ends the session: the shell inside gets SIGHUP.
#[test]
fn a_hang_up_of_the_callers_terminal_ends_the_session() {
    let mut term = Term::start(&["/bin/sh", "-i"], 24, 80);
    term.type_keys(b"echo READ\"\"Y\n");
    term.wait_for("READY");
    term.hang_up();
    let status = term.wait_exit();
    assert_eq!(status.code(), Some(128 + 1), "{}", term.text());
}

/// Set by the outer test for the inner one.
const INNER_ENV: &str = "KARAPACE_TERMINAL_TEST_INNER";

/// An interactive session that joins a running session of the same environment gets a devpts
/// instance of its own too: it sees neither the ptys of the session it joined nor the host's.
/// The client must run on a terminal, so this test re-runs `joined_session_inner` (the test
/// binary itself) on a pty, and reads what it shows.
#[test]
fn a_joined_interactive_session_sees_only_its_own_ptys() {
    let exe = std::env::current_exe().expect("test binary");
    let exe = exe.to_str().expect("utf-8 path");
    let mut term = Term::start_command(
        Command::new("setsid")
            .arg("--ctty")
            .arg(exe)
            .args([
                "--exact",
                "joined_session_inner",
                "--ignored",
                "--nocapture",
            ])
            .env(INNER_ENV, "1"),
        24,
        80,
        None,
    );
    let status = term.wait_exit();
    assert!(status.success(), "{status}: {}", term.text());
    // The inner test's last lines may still be on their way through the pty when it has
    // exited: wait for its summary rather than read what has arrived so far.
    let text = term.wait_for("test result");
    assert!(
        text.contains("1 passed"),
        "the inner test did not run: {text}"
    );
    assert!(text.contains("JOINED-PTS=[0 ptmx ]"), "{text}");
    assert!(text.contains("JOINED-TTY=/dev/pts/0"), "{text}");
}

#[test]
#[ignore = "run on a pty by a_joined_interactive_session_sees_only_its_own_ptys"]
fn joined_session_inner() {
    use karapace_helper_client::{self as hc, Identity, JoinTarget, StdioMode, Upper};
    assert!(
        std::env::var_os(INNER_ENV).is_some(),
        "run by the outer test"
    );
    let s = common::store();
    let persistent = |script: &str| {
        let mut spec = common::sh(&s, script);
        spec.upper = Upper::Store {
            upper: s.root.join("envs/e1/upper"),
            work: s.root.join("envs/e1/work"),
        };
        spec.identity = Identity::Caller;
        spec
    };
    // The first session holds two ptys of its environment's instance (0 and 1).
    let upper = s.root.join("envs/e1/upper");
    let mut first = hc::spawn(
        &persistent("exec 3<>/dev/ptmx 4<>/dev/ptmx; touch /var/ready; exec sleep 60 <&3"),
        StdioMode::Null,
    )
    .expect("first session");
    first.wait_started().expect("first started");
    let deadline = Instant::now() + TIMEOUT;
    while !upper.join("var/ready").exists() {
        assert!(
            Instant::now() < deadline,
            "the first session never got ready"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = first.init_pid().expect("init pid");
    let mut spec = persistent(
        "echo JOINED-PTS=[$(ls /dev/pts | tr '\\n' ' ')] JOINED-TTY=$(tty); test -e /var/ready",
    );
    spec.tty = hc::terminal::caller_size();
    assert!(spec.tty.is_some(), "stdin is a terminal");
    spec.join = vec![JoinTarget {
        pid,
        start_time: hc::process_start_time(pid).expect("start time"),
    }];
    let joined = hc::spawn(&spec, StdioMode::Inherit)
        .and_then(hc::Session::wait)
        .expect("joined session");
    hc::stop_session(first.helper_pid(), None, Duration::from_secs(5)).expect("stop");
    let _ = first.wait();
    assert_eq!(
        joined.status.code(),
        0,
        "the joined session saw the first one's files"
    );
}

/// With stdout redirected, `kp-run` (like `enter`) runs no pty: the workload writes to the file
/// itself, byte for byte (no `\r` added by a line discipline), as with `exec`.
#[test]
fn a_session_whose_stdout_is_redirected_gets_no_pty() {
    let store = common::store();
    let (master, slave) = new_pty();
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let slave = std::fs::File::from(slave);
    let mut child = Command::new("setsid")
        .arg("--ctty")
        .arg(kp_run())
        .arg(&store.root)
        .arg(store.layer())
        .args([
            "--",
            "/bin/sh",
            "-c",
            "test -t 1 || echo plain; ls /dev/pts",
        ])
        .stdin(Stdio::from(slave.try_clone().expect("dup")))
        .stdout(Stdio::from(out.reopen().expect("reopen")))
        .stderr(Stdio::from(slave))
        .spawn()
        .expect("setsid(1) from util-linux");
    let status = child.wait().expect("wait");
    drop(master);
    let text = std::fs::read_to_string(out.path()).expect("output");
    assert!(status.success(), "{text}");
    // No pty allocated in the environment's devpts: only the multiplexer.
    assert_eq!(text, "plain\nptmx\n");
}

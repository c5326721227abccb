//! `hardened-host [--uid-base N] -- PROGRAM [ARG]…`: runs PROGRAM as root of a simulated
//! hardened host — a host that allows no user namespaces — without touching this machine's
//! settings. Run it as root.
//!
//! It creates a user namespace (and a mount namespace) whose ids `0..65536` are the host's
//! `N..N+65536` (default 300000: no real user's), sets `user.max_user_namespaces` to 0 inside
//! it (that limit belongs to each user namespace, and binds every namespace below), checks
//! that creating a user namespace now fails, and executes PROGRAM as its root. File
//! capabilities set there (`setcap`) are namespaced to it (their root id is N): a helper
//! installed privileged inside gets them when an unprivileged uid there runs it, and nowhere
//! else on the machine. Inside, everything is as on a real host with
//! `user.max_user_namespaces = 0`, except that files of host ids outside the map show as
//! `nobody`.
//!
//! No descriptor is passed: the two processes synchronise through `/proc` (the parent waits
//! until the child is in a new user namespace and writes its maps; the child waits until its
//! uid map is written), so PROGRAM keeps this process's stdin, stdout, stderr and terminal.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

const COUNT: u32 = 65_536;
const INNER: &str = "--inner";

fn die(what: &str) -> ExitCode {
    eprintln!("hardened-host: {what}");
    ExitCode::from(125)
}

fn ns_inode(pid: &str) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/user"))
        .ok()
        .map(|m| m.ino())
}

fn wait_for(mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// The parent: starts the child, maps its ids once it has unshared, relays its exit status.
fn outer(base: u32, program: &[String]) -> ExitCode {
    if !nix::unistd::geteuid().is_root() {
        return die("run me as root (I write another process's id maps)");
    }
    let Ok(me) = std::env::current_exe() else {
        return die("cannot find my own executable");
    };
    let mut child = match Command::new(me).arg(INNER).arg("--").args(program).spawn() {
        Ok(c) => c,
        Err(e) => return die(&format!("cannot start: {e}")),
    };
    let pid = child.id().to_string();
    let ours = ns_inode("self");
    if !wait_for(|| ns_inode(&pid).is_some_and(|n| Some(n) != ours)) {
        let _ = child.kill();
        return die("the child never entered a user namespace");
    }
    let map = format!("0 {base} {COUNT}\n");
    for file in ["gid_map", "uid_map"] {
        if let Err(e) = std::fs::write(format!("/proc/{pid}/{file}"), &map) {
            let _ = child.kill();
            return die(&format!("cannot write {file}: {e}"));
        }
    }
    match child.wait() {
        Ok(status) => match status.code() {
            Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(125)),
            None => ExitCode::from(125),
        },
        Err(e) => die(&format!("wait: {e}")),
    }
}

/// The child: unshares, waits for its maps, becomes root there, forbids user namespaces below,
/// checks that they are forbidden, executes the program.
fn inner(program: &[String]) -> ExitCode {
    use nix::sched::CloneFlags;
    if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS) {
        return die(&format!("unshare: {e}"));
    }
    let mapped =
        || std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| !m.trim().is_empty());
    if !wait_for(mapped) {
        return die("no uid map was written");
    }
    let root = nix::unistd::Uid::from_raw(0);
    let root_group = nix::unistd::Gid::from_raw(0);
    if let Err(e) = nix::unistd::setresgid(root_group, root_group, root_group)
        .and_then(|()| nix::unistd::setresuid(root, root, root))
    {
        return die(&format!("cannot become root inside: {e}"));
    }
    if let Err(e) = nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    ) {
        return die(&format!("make-rprivate: {e}"));
    }
    if let Err(e) = std::fs::write("/proc/sys/user/max_user_namespaces", "0\n") {
        return die(&format!("cannot forbid user namespaces: {e}"));
    }
    // The simulation holds only if nobody can create one now, root of this namespace included.
    match Command::new("unshare").args(["--user", "true"]).status() {
        Ok(s) if !s.success() => {}
        Ok(_) => return die("a user namespace could still be created"),
        Err(e) => return die(&format!("cannot run unshare(1) to check: {e}")),
    }
    let Some((first, rest)) = program.split_first() else {
        return die("no program");
    };
    let e = Command::new(first).args(rest).exec();
    die(&format!("cannot execute {first}: {e}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (options, program) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => return die("usage: hardened-host [--uid-base N] -- PROGRAM [ARG]…"),
    };
    match options {
        [flag] if flag == INNER => inner(program),
        [] => outer(300_000, program),
        [flag, n] if flag == "--uid-base" => match n.parse() {
            Ok(base) => outer(base, program),
            Err(_) => die("--uid-base takes a number"),
        },
        _ => die("usage: hardened-host [--uid-base N] -- PROGRAM [ARG]…"),
    }
}

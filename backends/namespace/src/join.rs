//! Joining a running session of the same environment.
//!
//! Two overlay mounts must never share an upper directory (the kernel calls
//! it undefined behaviour), so a second session of an environment does not
//! mount the overlay again: it enters the user, mount, UTS, IPC (and
//! network) namespaces of a running session's init process through a pidfd,
//! copies that mount namespace, and gets a pid namespace and `/proc` of its
//! own. The overlay then stays mounted until the last session ends, and
//! every session sees the others' writes at once.
//!
//! The target comes from the core's session records, so the helper checks it
//! before joining anything: the pid still names the recorded process (start
//! time), it runs as the caller, it lives in a user and mount namespace other
//! than the helper's, that user namespace has exactly the id maps the request
//! would have written (a plain and a `--root` session of a user never share
//! one), and its root is an overlay (or fuse-overlayfs) mount — or, for an `oci` session, the
//! environment is a kernel overlay mounted on its stage (`oci.rs`).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;

use karapace_protocol::{JoinTarget, Network, Refusal};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::statfs::{FsType, statfs};
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, pipe2};

use crate::idmap::{self, MapLines};
use crate::init::fail;
use crate::{Launched, Mode, Prepared, SetupStep, Step, init, privilege, sys};

const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// A checked join target, pinned by its pidfd.
pub struct Target {
    pidfd: OwnedFd,
}

enum Verdict {
    /// The process has exited (or its pid was recycled): try the next one.
    Gone,
    /// Something that is not a session of this user's environment.
    Bad(String),
}

/// Start time of a process that is neither a zombie nor ending. An init
/// whose workload has exited ([`crate::ENDING_PROCESS_NAME`]) or that has
/// begun to exit is tearing its namespaces down: joining them would fail
/// half-way, so it counts as gone.
fn start_time(pid: u32) -> Option<u64> {
    karapace_procstat::live(pid)
        .filter(|s| !s.is_exiting() && s.comm != crate::ENDING_PROCESS_NAME.to_bytes())
        .map(|s| s.start_time)
}

/// The four ids of a `Uid:` or `Gid:` line of `/proc/<pid>/status`.
fn status_ids(status: &str, key: &str) -> Option<Vec<u32>> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect()
}

fn same_ns(pid: u32, ns: &str) -> Result<bool, Verdict> {
    let theirs = std::fs::metadata(format!("/proc/{pid}/ns/{ns}")).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            // Not dumpable: a session started without Landlock (init.rs, `joinable`).
            Verdict::Bad("it runs without Landlock and cannot be joined".into())
        } else {
            Verdict::Gone
        }
    })?;
    let ours = std::fs::metadata(format!("/proc/self/ns/{ns}"))
        .map_err(|e| Verdict::Bad(format!("own {ns} namespace: {e}")))?;
    Ok((theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()))
}

/// The id maps of the user namespace of `pid` (as this process's namespace reads them).
fn maps_of(pid: i32) -> Result<MapLines, Verdict> {
    let read = |file: &str| {
        let text =
            std::fs::read_to_string(format!("/proc/{pid}/{file}")).map_err(|_| Verdict::Gone)?;
        idmap::parse_map(&text).ok_or_else(|| Verdict::Bad(format!("unreadable {file}")))
    };
    Ok(MapLines {
        uid: read("uid_map")?,
        gid: read("gid_map")?,
    })
}

/// `maps`: the id maps the request would have written; none in the privileged mode. `oci`: the
/// request is an `oci` session's, whose target has the environment's root on its stage.
fn check(
    t: JoinTarget,
    uid: u32,
    gid: u32,
    maps: Option<&MapLines>,
    oci: bool,
) -> Result<Target, Verdict> {
    let pid = i32::try_from(t.pid).map_err(|_| Verdict::Bad("pid out of range".into()))?;
    if pid <= 1 {
        return Err(Verdict::Bad("not a session process".into()));
    }
    // Pin first, then check: if the pid was recycled before the pidfd was
    // opened, the start time differs; if the process dies afterwards, setns
    // fails with ESRCH instead of entering another process's namespaces.
    let pidfd = sys::pidfd_open(pid).map_err(|_| Verdict::Gone)?;
    if start_time(t.pid) != Some(t.start_time) {
        return Err(Verdict::Gone);
    }
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|_| Verdict::Gone)?;
    let uids = status_ids(&status, "Uid:").unwrap_or_default();
    let gids = status_ids(&status, "Gid:").unwrap_or_default();
    if uids.len() != 4 || uids.iter().any(|&u| u != uid) {
        return Err(Verdict::Bad(format!("runs as uid {uids:?}, not {uid}")));
    }
    if gids.len() != 4 || gids.iter().any(|&g| g != gid) {
        return Err(Verdict::Bad(format!("runs as gid {gids:?}, not {gid}")));
    }
    if same_ns(t.pid, "mnt")? {
        return Err(Verdict::Bad("shares the helper's mnt namespace".into()));
    }
    // A privileged helper's sessions have no user namespace of their own: the target shares
    // the helper's, and its workloads run as the caller, like this one's will. Any process of
    // the caller's in another mount namespace would pass that far (a container someone runs as
    // the caller's uid): the target must carry the mark of an environment, which only a
    // process that may mount can make, and have a kernel overlay as its root.
    let Some(maps) = maps else {
        if !same_ns(t.pid, "user")? {
            return Err(Verdict::Bad(
                "it runs in a user namespace, not as a privileged helper's session".into(),
            ));
        }
        if !marked_session(pid)? {
            return Err(Verdict::Bad("it is not a karapace environment".into()));
        }
        return overlay_root(pid, false).map(|()| Target { pidfd });
    };
    if same_ns(t.pid, "user")? {
        return Err(Verdict::Bad("shares the helper's user namespace".into()));
    }
    // The workload runs as the request's identity inside the namespace it joins: in one whose
    // maps differ that identity is another id or none (a user's plain session would run as one
    // of the user's subordinate ids, or fail to start; a `--root` session could not become root).
    if maps_of(pid)? != *maps {
        return Err(Verdict::Bad(
            "its user namespace maps other ids than this session needs (sessions with and \
             without --root cannot share an environment's namespaces)"
                .into(),
        ));
    }
    // An `oci` session's init has the host's file system as its root (as its mount namespace
    // shows it) and the environment on its stage, a tmpfs marked as such; a namespace session's
    // init has the environment as its root and no such mount (its workloads cannot mount).
    // Each kind is refused as the other.
    let stage = oci_stage(pid)?;
    match (oci, &stage) {
        (true, Some(at)) => stage_overlay(pid, at)?,
        (true, None) => return Err(Verdict::Bad("it has no OCI runtime's stage".into())),
        (false, Some(_)) => return Err(Verdict::Bad("it is an OCI runtime's session".into())),
        (false, None) => overlay_root(pid, true)?,
    }
    Ok(Target { pidfd })
}

/// Where the target's mount namespace has an `oci` session's stage (`rootfs::OCI_STAGE_MARK`),
/// as a path of its root (the top-most such mount); `None` without one. A mount point that
/// `mountinfo` shows escaped (white space, a backslash) is not one of ours.
fn oci_stage(pid: i32) -> Result<Option<String>, Verdict> {
    let mounts =
        std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).map_err(|_| Verdict::Gone)?;
    Ok(mounts.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let separator = fields.iter().position(|f| *f == "-")?;
        let marked = fields.get(separator + 1) == Some(&"tmpfs")
            && fields.get(separator + 2) == Some(&crate::rootfs::OCI_STAGE_MARK);
        let at = fields.get(4)?;
        (marked && at.starts_with('/') && !at.contains('\\')).then(|| (*at).to_owned())
    }))
}

/// The environment on a target's stage (`at`, see [`oci_stage`]): its `root` directory, reached
/// beneath the target's root without following any link, must be a kernel overlay mounted
/// there. A fuse-overlayfs one is refused: its daemon lives in the target's pid namespace and
/// ends with it, taking this session's root along.
fn stage_overlay(pid: i32, at: &str) -> Result<(), Verdict> {
    use nix::fcntl::{OpenHow, ResolveFlag, openat2};
    let root = nix::fcntl::open(
        format!("/proc/{pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|_| Verdict::Gone)?;
    let beneath = |path: &str| {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        openat2(root.as_fd(), path, how)
            .map_err(|_| Verdict::Bad("its stage cannot be opened without links".into()))
    };
    let stage_dir = at.trim_start_matches('/');
    let stage = beneath(stage_dir)?;
    let env = beneath(&format!("{stage_dir}/root"))?;
    let dev = |fd: &OwnedFd| nix::sys::stat::fstat(fd.as_fd()).map(|st| st.st_dev);
    let mounted = matches!((dev(&stage), dev(&env)), (Ok(a), Ok(b)) if a != b);
    let fs = nix::sys::statfs::fstatfs(env.as_fd()).map_err(|_| Verdict::Gone)?;
    match fs.filesystem_type() {
        FsType(OVERLAYFS_SUPER_MAGIC) if mounted => Ok(()),
        FsType(FUSE_SUPER_MAGIC) => Err(Verdict::Bad(
            "its environment is a fuse-overlayfs mount, which ends with the session that \
             mounted it"
                .into(),
        )),
        _ => Err(Verdict::Bad(
            "no environment is mounted on its stage".into(),
        )),
    }
}

/// Whether the mount namespace of `pid` has an environment's `/run` (`rootfs::SESSION_MARK`).
fn marked_session(pid: i32) -> Result<bool, Verdict> {
    let mounts =
        std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).map_err(|_| Verdict::Gone)?;
    Ok(mounts.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let separator = fields.iter().position(|f| *f == "-");
        fields.get(4) == Some(&"/run")
            && separator.is_some_and(|i| {
                fields.get(i + 1) == Some(&"tmpfs")
                    && fields.get(i + 2) == Some(&crate::rootfs::SESSION_MARK)
            })
    }))
}

/// Whether the root of `pid` is a kernel overlay (or, with `fuse`, a fuse-overlayfs) mount.
fn overlay_root(pid: i32, fuse: bool) -> Result<(), Verdict> {
    let fs = statfs(format!("/proc/{pid}/root").as_str()).map_err(|_| Verdict::Gone)?;
    let magic = fs.filesystem_type();
    if magic != FsType(OVERLAYFS_SUPER_MAGIC) && !(fuse && magic == FsType(FUSE_SUPER_MAGIC)) {
        return Err(Verdict::Bad("its root is not an overlay".into()));
    }
    Ok(())
}

/// The first target that is still running, checked; `maps` are the id maps the request would
/// have written itself; `oci`: see [`check`].
pub fn open_target(
    targets: &[JoinTarget],
    uid: u32,
    gid: u32,
    maps: Option<&MapLines>,
    oci: bool,
) -> Result<Target, Refusal> {
    for t in targets {
        match check(*t, uid, gid, maps, oci) {
            Ok(target) => return Ok(target),
            Err(Verdict::Gone) => {}
            Err(Verdict::Bad(why)) => return Err(Refusal::BadJoinTarget { pid: t.pid, why }),
        }
    }
    Err(Refusal::NoJoinTarget)
}

/// Starts a session inside `target`'s namespaces. The caller must be
/// single-threaded and must have blocked [`crate::blocked_set`].
///
/// A middle process enters the namespaces and unshares a mount and a pid
/// namespace; the pid namespace only applies to its children, so it forks
/// the session's init (pid 1) and exits. The helper is a child subreaper, so
/// the init is re-parented to it and the helper waits for it exactly as for
/// a fresh environment.
pub fn launch(p: &Prepared, target: &Target) -> Result<Launched, Refusal> {
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| Step(SetupStep::Subreaper, e))?;
    let (ev_r, ev_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| Step(SetupStep::Pipe, e))?;
    let (go_r, go_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| Step(SetupStep::Pipe, e))?;
    let (pid_r, pid_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| Step(SetupStep::Pipe, e))?;
    let (terminal, init_terminal) = crate::terminal_channel(p)?;
    match sys::fork().map_err(|e| Step(SetupStep::Fork, e))? {
        sys::Forked::Child => {
            drop((ev_r, go_w, pid_r, terminal));
            let code = middle(p, target, ev_w, go_r, pid_w, init_terminal);
            sys::exit_now(code)
        }
        sys::Forked::Parent(middle_pid) => {
            drop((ev_w, go_r, pid_w, init_terminal));
            let mut buf = [0u8; 4];
            let got = File::from(pid_r).read_exact(&mut buf);
            // The middle process exits right after reporting; once it is
            // reaped, its child is ours.
            let _ = waitpid(middle_pid, None);
            if got.is_err() {
                // It failed before forking; the reason is on the event pipe.
                return Ok(Launched {
                    init: middle_pid,
                    // Reaped above: nothing to signal.
                    init_fd: None,
                    events: File::from(ev_r),
                    keepalive: None,
                    terminal: None,
                });
            }
            let init = Pid::from_raw(i32::from_le_bytes(buf));
            let init_fd = match sys::pidfd_open(init.as_raw()) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    crate::kill_and_reap(init);
                    return Err(Step(SetupStep::Pidfd, e).into());
                }
            };
            let mut go = File::from(go_w);
            if go.write_all(&[1]).is_err() {
                crate::kill_and_reap(init);
                return Err(Step(SetupStep::ReleaseInit, Errno::EPIPE).into());
            }
            Ok(Launched {
                init,
                init_fd,
                events: File::from(ev_r),
                keepalive: Some(go),
                terminal,
            })
        }
    }
}

/// The middle process: enter, unshare, fork the init, report its pid.
fn middle(
    p: &Prepared,
    target: &Target,
    ev: OwnedFd,
    go: OwnedFd,
    pid_w: OwnedFd,
    terminal: Option<UnixStream>,
) -> i32 {
    let mut events = File::from(ev);
    // The core's socket and the request's validated paths (opened in the host's mount
    // namespace) must not follow into the session: keep only what this process uses.
    let mut keep = vec![
        0,
        1,
        2,
        events.as_raw_fd(),
        go.as_raw_fd(),
        pid_w.as_raw_fd(),
        target.pidfd.as_raw_fd(),
    ];
    // Interactive sessions: the init's end of the terminal channel (pty.rs).
    keep.extend(terminal.as_ref().map(AsRawFd::as_raw_fd));
    let runtime = p.oci.as_ref().map(|o| o.runtime.fd.as_raw_fd());
    let keep_now = [&keep[..], runtime.as_slice()].concat();
    // SAFETY: the objects owning the other descriptors (the helper's socket, `p`'s validated
    // paths but an `oci` session's runtime, checked and closed below) are never used again;
    // this process ends in `exit_now`.
    let closed = unsafe { sys::close_all_except(&keep_now) };
    if let Err(e) = closed {
        return fail(&mut events, Step(SetupStep::CloseDescriptors, e));
    }
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if p.network == Network::Isolated {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if p.mode == Mode::Rootless {
        flags |= CloneFlags::CLONE_NEWUSER;
    } else if let Err(e) = privilege::raise() {
        return fail(&mut events, Step(SetupStep::RaiseCapabilities, e));
    }
    match setns(target.pidfd.as_fd(), flags) {
        Ok(()) => {}
        // The target ended after it was checked (its namespaces are gone or
        // being torn down): the same answer as a target that was already gone,
        // so the core waits for it and mounts afresh.
        Err(Errno::ESRCH) => return fail(&mut events, Refusal::NoJoinTarget),
        Err(e) => return fail(&mut events, Step(SetupStep::JoinNamespaces, e)),
    }
    // A private copy of the session's mount tree (for our own /proc) and a
    // pid namespace of our own, owned by the environment's user namespace.
    if let Err(e) = unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID) {
        return fail(&mut events, Step(SetupStep::Unshare, e));
    }
    // The copy keeps the target's propagation: make it private before anything is mounted in it,
    // so no mount of this session can reach another namespace.
    if let Err(s) = crate::rootfs::make_private() {
        return fail(&mut events, s);
    }
    // The runtime as this mount namespace shows it must be the file the helper checked, as in a
    // fresh session (`rootfs::assemble_oci`); then its descriptor goes too.
    if let Some(o) = &p.oci {
        if let Err(s) = crate::rootfs::check_runtime(o) {
            return fail(&mut events, s);
        }
        // SAFETY: as above; the runtime's `Opened` is never used again.
        if let Err(e) = unsafe { sys::close_all_except(&keep) } {
            return fail(&mut events, Step(SetupStep::CloseDescriptors, e));
        }
    }
    match sys::fork() {
        Ok(sys::Forked::Child) => {
            drop(pid_w);
            let code = init::run_joined(p, events, go, terminal);
            sys::exit_now(code)
        }
        Ok(sys::Forked::Parent(child)) => {
            let mut w = File::from(pid_w);
            if w.write_all(&child.as_raw().to_le_bytes()).is_err() {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                return 1;
            }
            0
        }
        Err(e) => fail(&mut events, Step(SetupStep::Fork, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::start_time;

    #[test]
    fn running_processes_have_a_start_time_and_zombies_do_not() {
        assert!(start_time(std::process::id()).is_some());
        let child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        // Not waited for: once it has exited it stays a zombie until we reap it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while start_time(pid).is_some() {
            assert!(std::time::Instant::now() < deadline, "true never exited");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let mut child = child;
        let _ = child.wait();
    }

    #[test]
    fn an_init_that_reported_its_workloads_exit_cannot_be_joined() {
        // /proc/<tid>/stat works for any thread: rename one, as an ending init renames itself.
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            let tid = nix::unistd::gettid().as_raw().cast_unsigned();
            let before = start_time(tid);
            nix::sys::prctl::set_name(crate::ENDING_PROCESS_NAME).expect("rename");
            tx.send((before, start_time(tid))).expect("send");
            let _ = done_rx.recv();
        });
        let (before, after) = rx.recv().expect("recv");
        done_tx.send(()).expect("release");
        t.join().expect("thread");
        assert!(before.is_some());
        assert_eq!(after, None);
    }

    #[test]
    fn an_ending_process_is_skipped_not_refused() {
        // A process whose name is the ending name (exec'd through a symlink of that name). Were
        // it not skipped as gone, the checks would go on and refuse it as a bad target: it
        // shares our user and mount namespaces.
        let dir = tempfile::tempdir().expect("tempdir");
        let name = crate::ENDING_PROCESS_NAME.to_str().expect("utf-8");
        let link = dir.path().join(name);
        std::os::unix::fs::symlink("/bin/sleep", &link).expect("symlink");
        let mut child = std::process::Command::new(&link)
            .arg("30")
            .spawn()
            .expect("spawn");
        let pid = child.id();
        let stat = karapace_procstat::live(pid).expect("stat");
        assert_eq!(stat.comm, name.as_bytes());
        let start_time = stat.start_time;
        let target = super::JoinTarget { pid, start_time };
        let (uid, gid) = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let maps = crate::idmap::IdMap::Single.lines(karapace_protocol::Identity::Caller, uid, gid);
        let verdict = super::open_target(&[target], uid, gid, Some(&maps), false).map(|_| ());
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            matches!(verdict, Err(super::Refusal::NoJoinTarget)),
            "{:?}",
            verdict.err()
        );
    }

    #[test]
    fn the_store_reads_the_same_ending_name() {
        assert_eq!(
            crate::ENDING_PROCESS_NAME.to_str(),
            Ok(karapace_store::ENDING_PROCESS_NAME)
        );
    }
}

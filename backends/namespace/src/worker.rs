//! A process in a user namespace with an environment's full id maps ([`IdMap::full`]), for
//! the store's jobs on trees whose files belong to the environment's ids (pack, unpack with
//! owners, remove).
//!
//! Why it is safe for the caller: the process holds capabilities only in a new user namespace
//! whose ids are the caller's own and the caller's subordinate range (what `newuidmap` grants
//! the caller anyway); in a mount namespace of its own it pivots into the store root, so
//! nothing outside the store exists for it (not even for `chmod`, `chown` or `utimes`, which
//! Landlock does not cover); Landlock and `no_new_privs` come on top, and it runs no program,
//! only the job's code. The job's paths are therefore given relative to the store root
//! ([`inside`]).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use karapace_protocol::{Refusal, TreeFailure, TreeStats, read_frame, write_frame};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};

use crate::idmap::{self, IdMap};
use crate::{SetupStep, Step, confine, rootfs, sys};

/// The outcome a worker sends its parent.
type Outcome = Result<TreeStats, TreeFailure>;

/// `path` (beneath `store_root`) as the worker sees it, once the store root is its `/`.
pub fn inside(store_root: &Path, path: &Path) -> Option<std::path::PathBuf> {
    path.strip_prefix(store_root)
        .ok()
        .map(|rel| Path::new("/").join(rel))
}

/// Runs `job` in a new user namespace with `map` (from [`IdMap::full`]), with `store_root` as
/// its root directory (paths as [`inside`] gives them; Landlock too when `landlock`), and
/// returns what it reported. The caller must be
/// single-threaded. The worker inherits this process's stdin and stdout (the tar streams);
/// this process lets go of both once the worker runs, so the core sees end of file or a
/// broken pipe the moment the worker is gone.
pub fn run<F>(map: IdMap, store_root: &Path, landlock: bool, job: F) -> Result<TreeStats, Refusal>
where
    F: FnOnce() -> Outcome,
{
    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| Step(SetupStep::Pipe, e))?;
    let (go_r, go_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| Step(SetupStep::Pipe, e))?;
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| Step(SetupStep::Pipe, e))?;
    match sys::fork().map_err(|e| Step(SetupStep::Fork, e))? {
        sys::Forked::Child => {
            drop((ready_r, go_w, out_r));
            let outcome = child(store_root, landlock, ready_w, go_r, job);
            let mut out = File::from(out_w);
            let code = i32::from(write_frame(&mut out, &outcome).is_err() || outcome.is_err());
            sys::exit_now(code)
        }
        sys::Forked::Parent(pid) => {
            drop((ready_w, go_r, out_w));
            parent(pid, map, uid, gid, ready_r, go_w, out_r)
        }
    }
}

fn child<F: FnOnce() -> Outcome>(
    store_root: &Path,
    landlock: bool,
    ready: OwnedFd,
    go: OwnedFd,
    job: F,
) -> Outcome {
    let failed = |what: &str, e: &dyn std::fmt::Display| TreeFailure::Other(format!("{what}: {e}"));
    // Never outlive the helper (which never outlives the core): a store operation that was
    // interrupted is undone by the next command, which must not find a worker still writing.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| failed("PR_SET_PDEATHSIG", &e))?;
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)
        .map_err(|e| failed("unshare", &e))?;
    File::from(ready)
        .write_all(&[1])
        .map_err(|e| failed("report", &e))?;
    // The parent writes the id maps, then releases us; end of file means it gave up.
    let mut byte = [0u8; 1];
    match File::from(go).read(&mut byte) {
        Ok(1) => {}
        _ => {
            return Err(TreeFailure::Other(
                "the helper gave up on the id maps".into(),
            ));
        }
    }
    enter_store(store_root).map_err(|Step(what, e)| failed(what.words(), &e))?;
    if landlock {
        confine::landlock_beneath(Path::new("/")).map_err(|e| failed("confine", &e))?;
    }
    confine::set_no_new_privs().map_err(|e| failed("confine", &e))?;
    job()
}

/// Makes `store_root` this process's `/` (private mounts, a bind of the store onto itself,
/// `pivot_root`, the old root detached): the host's other files are gone from its view.
fn enter_store(store_root: &Path) -> Result<(), Step> {
    rootfs::make_private()?;
    rootfs::rbind(store_root, store_root).map_err(|e| Step(SetupStep::BindStoreRoot, e))?;
    let root = rootfs::open_dir(store_root).map_err(|e| Step(SetupStep::OpenStoreRoot, e))?;
    rootfs::pivot(&root)
}

fn parent(
    pid: Pid,
    map: IdMap,
    uid: u32,
    gid: u32,
    ready: OwnedFd,
    go: OwnedFd,
    out: OwnedFd,
) -> Result<TreeStats, Refusal> {
    let mut byte = [0u8; 1];
    if !matches!(File::from(ready).read(&mut byte), Ok(1)) {
        // The child could not create its namespace: its report says why.
        return finish(pid, out);
    }
    if let Err(e) = write_maps(pid, map, uid, gid) {
        crate::kill_and_reap(pid);
        return Err(e);
    }
    // Only the worker reads and writes the tar streams from now on.
    sys::stdio_to_null().map_err(|e| Step(SetupStep::RedirectStdio, e))?;
    if File::from(go).write_all(&[1]).is_err() {
        crate::kill_and_reap(pid);
        return Err(Step(SetupStep::ReleaseTreeWorker, Errno::EPIPE).into());
    }
    finish(pid, out)
}

fn write_maps(pid: Pid, map: IdMap, uid: u32, gid: u32) -> Result<(), Refusal> {
    match map {
        IdMap::Subordinate { uid: u, gid: g } => idmap::write_subordinate(pid, uid, gid, u, g),
        IdMap::Identity { count } => idmap::write_identity(pid, count).map_err(Refusal::from),
        IdMap::Single => Err(Refusal::Invalid("a tree job needs the full id maps".into())),
    }
}

/// Reads the worker's report and reaps it.
fn finish(pid: Pid, out: OwnedFd) -> Result<TreeStats, Refusal> {
    let report = read_frame::<Outcome>(&mut File::from(out));
    let reaped = waitpid(pid, None);
    match report {
        Ok(Ok(stats)) => Ok(stats),
        Ok(Err(failure)) => Err(Refusal::Tree(failure)),
        Err(_) => Err(Refusal::Tree(TreeFailure::Other(format!(
            "the tree worker ended without a report ({})",
            match reaped {
                Ok(WaitStatus::Signaled(_, sig, _)) => format!("killed by {sig}"),
                Ok(WaitStatus::Exited(_, code)) => format!("exit status {code}"),
                other => format!("{other:?}"),
            }
        )))),
    }
}

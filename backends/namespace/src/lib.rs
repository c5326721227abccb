//! Linux-namespace runtime backend driven by `karapace-helper`.
//!
//! [`launch`] creates the environment's init process with
//! `clone(CLONE_NEWUSER | CLONE_NEWPID)`; the init process performs the rest
//! of the setup in the order of the architecture document (id maps, mount /
//! UTS / IPC / network namespaces, mounts, `pivot_root`), starts the workload
//! (Landlock, capability drop, `no_new_privs`, seccomp, `execve`), confines
//! itself and reaps. Progress is reported to the caller as protocol frames
//! on a pipe.

mod confine;
mod idmap;
mod init;
mod join;
pub mod oci;
pub mod privilege;
mod pty;
mod rootfs;
#[path = "../seccomp/src/policy.rs"]
pub mod seccomp_policy;
mod sys;
pub mod worker;
mod workload;

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

pub use karapace_protocol::SetupStep;
use karapace_protocol::{Identity, Limits, Network, Refusal};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::{Pid, getgid, getuid, pipe2};

pub use confine::{ConfineError, PACKAGE_MANAGER_CAPS, confine_control, landlock_decision};
pub use idmap::{IdMap, SubRange, subordinate_ranges};
pub use privilege::Mode;
pub use sys::landlock_abi;

/// A validated, opened path. The descriptor belongs to the helper's mount
/// namespace; the environment's init process re-resolves `path` in its own
/// namespace (mounts cannot use another namespace's mounts) and insists on
/// the same inode.
pub struct Opened {
    pub fd: OwnedFd,
    pub path: PathBuf,
}

/// A request whose every path has been validated and opened by the helper.
pub struct Prepared {
    /// Layer trees, top-most first.
    pub lowers: Vec<Opened>,
    pub upper: PreparedUpper,
    pub binds: Vec<PreparedBind>,
    pub devices: Vec<PreparedBind>,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    /// `PATH` of the workload's environment, used to look up `argv[0]`.
    pub path_env: Option<String>,
    pub cwd: PathBuf,
    pub hostname: String,
    pub network: Network,
    pub limits: Limits,
    pub identity: Identity,
    pub id_map: IdMap,
    /// The `chown` family succeeds without effect ([`karapace_protocol::IdMapMode::Collapsed`]).
    pub ignore_chown: bool,
    pub capabilities: karapace_protocol::Capabilities,
    /// An interactive session, with the caller's terminal size: the workload gets a pty of
    /// the environment's own devpts instance (see `pty.rs`).
    pub tty: Option<karapace_protocol::TerminalSize>,
    /// Running sessions to join instead of mounting a fresh environment.
    pub join: Vec<karapace_protocol::JoinTarget>,
    /// Landlock confines the workload and the helper's own processes. False only on a kernel
    /// without Landlock, for a request that allowed that ([`landlock_decision`]).
    pub landlock: bool,
    /// An `oci`-backend session: the OCI runtime to run on the assembled stage (see `oci.rs`).
    pub oci: Option<oci::PreparedOci>,
    /// The helper's mode ([`privilege`]): in the privileged one no user namespace is created,
    /// the setup runs with the helper's capabilities and the workload as the caller.
    pub mode: Mode,
}

impl Prepared {
    /// Whom the session's user namespace maps the caller to: root for an `oci` session (its
    /// runtime must be root there, whatever the workload's identity), else the request's
    /// identity.
    pub fn mapped_identity(&self) -> Identity {
        if self.oci.is_some() {
            Identity::Root
        } else {
            self.identity
        }
    }

    /// The descriptors of every validated path (lowers, upper and work, bind and device
    /// sources): the helper opened them in the host's mount namespace.
    fn host_fds(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self.lowers.iter().map(|o| o.fd.as_raw_fd()).collect();
        if let PreparedUpper::Store { upper, work } = &self.upper {
            fds.extend([upper.fd.as_raw_fd(), work.fd.as_raw_fd()]);
        }
        fds.extend(
            self.binds
                .iter()
                .chain(&self.devices)
                .map(|b| b.src.fd.as_raw_fd()),
        );
        fds.extend(self.oci.as_ref().map(|o| o.runtime.fd.as_raw_fd()));
        fds
    }
}

pub enum PreparedUpper {
    Store { upper: Opened, work: Opened },
    Tmpfs { size_mb: u64 },
    ReadOnly,
}

pub struct PreparedBind {
    /// The validated source.
    pub src: Opened,
    /// Target inside the environment (absolute, normalized).
    pub dst: PathBuf,
    pub readonly: bool,
    pub is_dir: bool,
}

/// A failed setup step and its errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step(pub SetupStep, pub Errno);

impl From<Step> for Refusal {
    fn from(s: Step) -> Self {
        Refusal::Setup {
            step: s.0,
            detail: String::new(),
            errno: s.1 as i32,
        }
    }
}

/// Maps an I/O error of `step` to its [`Step`], with errno `or` when it carries none.
pub(crate) fn io_step(step: SetupStep, or: i32) -> impl Fn(std::io::Error) -> Step {
    move |e| Step(step, Errno::from_raw(e.raw_os_error().unwrap_or(or)))
}

/// The running environment as seen by the helper's control process.
pub struct Launched {
    /// Host pid of the environment's init process.
    pub init: Pid,
    /// A pidfd of the init process (none when it was already gone), opened before the helper
    /// confines itself: from then on the init is signalled only through it ([`signal_init`]).
    pub init_fd: Option<std::os::fd::OwnedFd>,
    /// Protocol `Reply` frames from the init process: `Started`, then
    /// `Exited` or `Failed`.
    pub events: File,
    /// Write end of the pipe that released the init process. Hold it while
    /// the environment runs: the init process treats its closing (the helper
    /// died) as the end of the environment.
    pub keepalive: Option<File>,
    /// Interactive sessions: the helper's end of the terminal channel, on which the init
    /// process sends the master of the session's pty (once, before it reports `Started`);
    /// read it with [`receive_pty_master`].
    pub terminal: Option<UnixStream>,
}

pub use pty::receive_master as receive_pty_master;

/// Sends `sig` to the environment's init process through its pidfd; an init that is already
/// gone (no pidfd, or the process ended) is no error: there is nothing left to signal.
pub fn signal_init(init_fd: Option<&std::os::fd::OwnedFd>, sig: nix::sys::signal::Signal) {
    if let Some(fd) = init_fd {
        let _ = sys::signal(std::os::fd::AsFd::as_fd(fd), sig);
    }
}

/// The name (`comm`) an environment's init process takes once its workload
/// has exited, just before it reports the exit: from then on it only tears
/// the environment down (unmounting the overlay syncs the upper file system,
/// which takes milliseconds) and can no longer be joined. The core's session
/// records read it from `/proc/<pid>/stat` (`karapace_store` keeps the same
/// constant; a test ties the two).
pub const ENDING_PROCESS_NAME: &std::ffi::CStr = c"karapace-ending";

/// The signal set the helper blocks from the start and reads through a signalfd: the relayed
/// signals ([`karapace_protocol::RELAYED_SIGNALS`]), which the control and init processes
/// forward to the workload, plus SIGCHLD.
pub fn blocked_set() -> nix::sys::signal::SigSet {
    let mut set = nix::sys::signal::SigSet::empty();
    for s in karapace_protocol::RELAYED_SIGNALS {
        if let Ok(s) = nix::sys::signal::Signal::try_from(s) {
            set.add(s);
        }
    }
    set.add(nix::sys::signal::Signal::SIGCHLD);
    set
}

/// Starts the environment, or a new session inside a running one when
/// `p.join` names one. The caller must be single-threaded and must have
/// blocked [`blocked_set`].
pub fn launch(p: &Prepared) -> Result<Launched, Refusal> {
    let (uid, gid) = (getuid().as_raw(), getgid().as_raw());
    if !p.join.is_empty() {
        let maps =
            (p.mode == Mode::Rootless).then(|| p.id_map.lines(p.mapped_identity(), uid, gid));
        let target = join::open_target(&p.join, uid, gid, maps.as_ref(), p.oci.is_some())?;
        return join::launch(p, &target);
    }
    let (ev_r, ev_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| Step(SetupStep::Pipe, e))?;
    let (go_r, go_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| Step(SetupStep::Pipe, e))?;
    let (terminal, init_terminal) = terminal_channel(p)?;
    // "clone", "write id map", "unshare" and "overlay mount": the core explains failures of
    // these steps by the host's prerequisites (core/src/engine/run.rs); keep the names.
    let user_namespace = p.mode == Mode::Rootless;
    if !user_namespace {
        // A pid namespace without a user namespace takes CAP_SYS_ADMIN; it is effective for
        // this one call only (the clone keeps it for its setup).
        privilege::raise().map_err(|e| Step(SetupStep::RaiseCapabilities, e))?;
    }
    let cloned = sys::clone_into_namespaces(user_namespace);
    if !user_namespace && let Ok(sys::Forked::Parent(_)) | Err(_) = cloned {
        privilege::lower().map_err(|e| Step(SetupStep::DropCapabilities, e))?;
    }
    match cloned.map_err(|e| Step(SetupStep::Clone, e))? {
        sys::Forked::Child => {
            drop((ev_r, go_w, terminal));
            let code = init::run(p, uid, gid, ev_w, go_r, init_terminal);
            sys::exit_now(code)
        }
        sys::Forked::Parent(pid) => {
            drop((ev_w, go_r, init_terminal));
            // newuidmap/newgidmap are setuid helpers: they must run from this unconfined
            // side, before anything sets no_new_privs. Root writes its identity maps here too.
            let written = match p.id_map {
                // The privileged mode has no user namespace: nothing to map.
                _ if !user_namespace => Ok(()),
                IdMap::Subordinate { uid: u, gid: g } => {
                    idmap::write_subordinate(pid, uid, gid, u, g)
                }
                IdMap::Identity { count } => {
                    idmap::write_identity(pid, count).map_err(Refusal::from)
                }
                IdMap::Single => Ok(()),
            };
            if let Err(e) = written {
                kill_and_reap(pid);
                return Err(e);
            }
            let init_fd = match sys::pidfd_open(pid.as_raw()) {
                Ok(fd) => fd,
                Err(e) => {
                    kill_and_reap(pid);
                    return Err(Step(SetupStep::Pidfd, e).into());
                }
            };
            let mut go = File::from(go_w);
            go.write_all(&[1])
                .map_err(|_| Step(SetupStep::ReleaseInit, Errno::EPIPE))?;
            Ok(Launched {
                init: pid,
                init_fd: Some(init_fd),
                events: File::from(ev_r),
                keepalive: Some(go),
                terminal,
            })
        }
    }
}

/// Kills `pid` and waits for it.
fn kill_and_reap(pid: Pid) {
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
}

/// The terminal channel of an interactive session (helper's end, init's end); none for
/// others, which pay nothing for it.
fn terminal_channel(p: &Prepared) -> Result<(Option<UnixStream>, Option<UnixStream>), Step> {
    if p.tty.is_none() {
        return Ok((None, None));
    }
    let (helper, init) = pty::channel()?;
    Ok((Some(helper), Some(init)))
}

//! Message types shared by the Karapace core and `karapace-helper`.
//!
//! The crate is deliberately tiny: plain data types plus the frame codec both
//! sides need (a `u32` little-endian length prefix followed by a bincode body,
//! capped at [`MAX_FRAME`]). It performs no I/O of its own besides reading and
//! writing frames on a stream handed to it.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use bincode::Options;
use serde::{Deserialize, Serialize};

/// Bumped on every incompatible change of any message type.
pub const PROTOCOL_VERSION: u32 = 8;

/// Largest frame body either side accepts (1 MiB). A request is a few KiB;
/// anything near this is hostile or broken.
pub const MAX_FRAME: u32 = 1 << 20;

/// Signals relayed to a session's workload, as raw numbers: the core catches them (a Ctrl-C,
/// a `kill` of karapace) and sends each on as [`Request::Signal`]; the helper accepts these
/// (and SIGKILL, for `stop`), and its control and init processes block and forward them.
pub const RELAYED_SIGNALS: [i32; 6] = {
    use rustix::process::Signal;
    [
        Signal::INT.as_raw(),
        Signal::TERM.as_raw(),
        Signal::HUP.as_raw(),
        Signal::QUIT.as_raw(),
        Signal::USR1.as_raw(),
        Signal::USR2.as_raw(),
    ]
};

/// Limits the helper enforces on a request (refused with [`Refusal::TooLarge`]).
pub mod limits {
    /// Overlayfs accepts at most 500 lower layers.
    pub const MAX_LOWERS: usize = 500;
    pub const MAX_ARGV: usize = 4096;
    pub const MAX_ENV: usize = 4096;
    pub const MAX_BINDS: usize = 256;
    pub const MAX_DEVICES: usize = 64;
    /// Sessions a request may offer to join.
    pub const MAX_JOIN: usize = 64;
    /// Longest single string (argument, env entry, path).
    pub const MAX_STRING: usize = 64 * 1024;
    pub const MAX_HOSTNAME: usize = 64;
    /// Largest tmpfs the helper will mount for a throwaway upper, /tmp or /run.
    pub const MAX_TMPFS_MB: u64 = 64 * 1024;
}

/// First message of each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    /// Process id of the sender, cross-checked against `SO_PEERCRED`.
    pub pid: u32,
}

/// Messages from the core to the helper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Hello(Hello),
    /// Run a workload. At most one per connection.
    Run(Box<RunSpec>),
    /// Forward a signal to the workload (only meaningful after `Run`).
    Signal(i32),
    /// Work on a tree of the store whose files belong to the environment's ids (see
    /// [`TreeJob`]). At most one per connection, instead of `Run`.
    Tree(TreeJob),
}

/// Messages from the helper to the core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Hello(Hello),
    /// The workload was executed successfully; `pid` is the init process of
    /// the environment as seen from the host.
    Started {
        pid: u32,
        timings: Timings,
    },
    /// The workload finished.
    Exited {
        status: WaitStatus,
        timings: Timings,
    },
    /// The request was refused or setup failed; nothing (more) runs.
    Failed(Refusal),
    /// A [`TreeJob`] finished.
    TreeDone(TreeStats),
}

/// How the workload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WaitStatus {
    Exited(i32),
    Signaled(i32),
}

impl WaitStatus {
    /// Shell convention: the exit code, or 128+N for signal N.
    pub fn code(self) -> i32 {
        match self {
            WaitStatus::Exited(c) => c,
            WaitStatus::Signaled(s) => 128 + s,
        }
    }
}

/// The clock of [`Timings`] and of the core's own timestamps beside them: `CLOCK_MONOTONIC` in
/// nanoseconds (0 if it cannot be read, which Linux never does for this clock).
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

/// `CLOCK_MONOTONIC` timestamps in nanoseconds (0 = not reached), taken by
/// the helper so the core can print where the time went ([`monotonic_ns`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// Helper received the `Run` request.
    pub request: u64,
    /// Request validated, all paths opened.
    pub validated: u64,
    /// Namespaces created and id maps written.
    pub namespaces: u64,
    /// All mounts done and root pivoted.
    pub mounts: u64,
    /// The workload's `execve` succeeded.
    pub exec: u64,
    /// The workload was reaped by the environment's init.
    pub exited: u64,
}

/// A terminal's window size (`struct winsize`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    pub rows: u16,
    pub cols: u16,
    pub xpixel: u16,
    pub ypixel: u16,
}

/// Declarative description of one workload run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Canonical absolute store root; every store path must lie beneath it.
    pub store_root: PathBuf,
    /// Read-only layer trees, top-most first (overlay `lowerdir` order).
    pub lowers: Vec<PathBuf>,
    pub upper: Upper,
    pub argv: Vec<String>,
    /// Complete environment of the workload (already filtered by the core).
    pub env: Vec<(String, String)>,
    /// Working directory inside the environment.
    pub cwd: PathBuf,
    /// A host name: ASCII letters, digits, `-` and `.`, not starting with `-`, at most 64 bytes
    /// (the core sends `karapace-<short_id>` or `karapace-build`).
    pub hostname: String,
    pub binds: Vec<BindMount>,
    /// Host device nodes or directories (under `/dev/dri`, `/dev/snd`, `/dev/nvidia*`).
    pub devices: Vec<PathBuf>,
    pub network: Network,
    pub limits: Limits,
    pub identity: Identity,
    pub id_map: IdMapMode,
    pub capabilities: Capabilities,
    /// `Some` for an interactive session (the caller's stdin and stdout are a terminal), with
    /// that terminal's size. The workload then never sees the caller's terminal nor the host's
    /// devpts: it gets a new pseudo-terminal of the environment's own devpts instance (its
    /// stdin, stdout, stderr and controlling terminal, in a session of its own), sized like
    /// the caller's. The helper passes the pty's master to the core (`SCM_RIGHTS`, attached to
    /// the `Started` frame), which relays it to the caller's terminal.
    pub tty: Option<TerminalSize>,
    /// Host paths under which bind sources are allowed (policy, validated by
    /// the core; the helper re-checks every source against it).
    pub allowed_mount_prefixes: Vec<PathBuf>,
    /// Running sessions of the same environment, tried in order. When one is
    /// still alive, the workload joins its user, mount, UTS, IPC (and
    /// network) namespaces instead of mounting the overlay a second time
    /// (two overlay mounts must never share an upper directory) and gets a
    /// private pid namespace and `/proc`. Empty: a fresh environment.
    pub join: Vec<JoinTarget>,
    /// Run even on a kernel without Landlock (then the workload is confined by namespaces,
    /// capabilities, `no_new_privs` and seccomp only). Set only by the user's explicit opt-out
    /// (`allow_without_landlock` in the user's config, `--allow-without-landlock`); otherwise
    /// the helper refuses such a kernel with [`Refusal::LandlockUnavailable`].
    pub allow_without_landlock: bool,
    /// `Some`: an `oci`-backend session. The helper sets up the session's namespaces and the
    /// overlay as for any session, then runs this OCI runtime on a bundle it generates from this
    /// request (the runtime creates the container's mount namespace, mounts, capabilities,
    /// `no_new_privs` and seccomp from `config.json`). Joins like any session (`join`): a
    /// container of its own on the running session's root.
    pub oci: Option<OciRuntime>,
}

/// The OCI runtime an `oci`-backend session runs, resolved once by the core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciRuntime {
    /// Absolute, symlink-free path of the runtime's executable (the helper checks it is a
    /// regular executable file owned by root or the caller and writable by no one else).
    pub path: PathBuf,
    pub flavour: OciFlavour,
}

/// What disqualifies an OCI runtime's file, or a directory above it, by its mode and owner
/// (`None`: nothing). The runtime runs with every capability of the session's user namespace
/// and is executed by its path after the check, so only root and the caller may have written
/// it or be able to rename another file into its place (a sticky directory lets no one rename
/// their entries). The helper refuses such a runtime; the core checks the same before it runs
/// the runtime's `--version`.
pub fn oci_runtime_fault(mode: u32, owner: u32, caller: u32, dir: bool) -> Option<&'static str> {
    if owner != 0 && owner != caller {
        Some("belongs to another user")
    } else if mode & 0o022 != 0 && !(dir && mode & 0o1000 != 0) {
        Some("is writable by group or others")
    } else {
        None
    }
}

/// Which command line the runtime speaks (they differ only in how cgroups are turned off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OciFlavour {
    Crun,
    Runc,
    Youki,
}

/// A running session's init process, as recorded by the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTarget {
    /// Host pid of the session's init process (from [`Reply::Started`]).
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/<pid>/stat` field 22),
    /// so a recycled pid is never joined.
    pub start_time: u64,
}

/// Where the writable layer lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Upper {
    /// Persistent upper and work directories on the store (same filesystem).
    Store { upper: PathBuf, work: PathBuf },
    /// Throwaway upper on a tmpfs of at most `size_mb`, mounted `volatile`.
    Tmpfs { size_mb: u64 },
    /// No writable layer: the root is read-only.
    ReadOnly,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// Absolute, canonical host path (no symlink components).
    pub src: PathBuf,
    /// Absolute path inside the environment.
    pub dst: PathBuf,
    pub readonly: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    /// Own network namespace with only `lo` up.
    Isolated,
    /// Share the host network.
    Host,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// `RLIMIT_NOFILE` soft/hard.
    pub nofile: Option<u64>,
    /// `RLIMIT_NPROC`.
    pub nproc: Option<u64>,
    /// Size of the tmpfs mounted at /tmp and /run (MiB; default 1024).
    pub tmpfs_mb: Option<u64>,
    /// Carried for a cgroup backend; not enforced by any backend yet.
    pub memory_mb: Option<u64>,
    /// Carried for a cgroup backend; not enforced by any backend yet.
    pub cpu_shares: Option<u64>,
}

/// Who the workload runs as inside the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Identity {
    /// uid/gid 0 inside (mapped to the caller): package managers, builds.
    Root,
    /// The caller's own uid/gid inside: interactive shells.
    Caller,
}

/// Capabilities the workload keeps (all of them only inside its own user
/// namespace, i.e. over ids the caller owns anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Capabilities {
    /// None at all: `CapEff`, `CapPrm` and `CapBnd` are empty (exec, enter).
    None,
    /// What package managers need to unpack files owned by other ids and to
    /// drop privileges: CHOWN, `DAC_OVERRIDE`, FOWNER, FSETID, SETUID, SETGID,
    /// SETFCAP, KILL, `NET_BIND_SERVICE`, `AUDIT_WRITE` (builds only).
    PackageManager,
}

/// The highest id an environment's files and processes may have inside it: every id map
/// that keeps owners maps `0..=MAX_INSIDE_ID`, so a layer means the same on every machine.
/// Archives naming a higher owner get [`OVERFLOW_ID`] (`nobody`) instead.
pub const MAX_INSIDE_ID: u32 = 65_535;
/// The owner given to files whose recorded owner is above [`MAX_INSIDE_ID`].
pub const OVERFLOW_ID: u32 = 65_534;

/// First word of `karapace-helper --id-maps` when environments of the caller keep owners
/// ([`IdMapMode::Full`] is available), followed by a description of the maps.
pub const ID_MAPS_FULL: &str = "full";
/// First word of `karapace-helper --id-maps` when only the caller's own ids can be mapped,
/// followed by the reason.
pub const ID_MAPS_SINGLE: &str = "single";

/// What `karapace-helper --mode` prints when it runs rootless (unprivileged user namespaces).
pub const MODE_ROOTLESS: &str = "rootless";
/// First word of `karapace-helper --mode` when it runs privileged (installed with file
/// capabilities on a host without unprivileged user namespaces), followed by its capabilities;
/// also of its `--id-maps`, followed by what that means for owners (every file the caller's).
pub const MODE_PRIVILEGED: &str = "privileged";

/// The file capabilities of a privileged helper, in `setcap`'s syntax: permitted only, so
/// none is effective until the helper raises one for a setup step
/// (`backends/namespace/src/privilege.rs` says what each is for).
pub const PRIVILEGED_FILE_CAPABILITIES: &str =
    "cap_dac_override,cap_net_admin,cap_setpcap,cap_sys_admin,cap_sys_chroot+p";

/// The user namespace's id maps, which decide who may own files inside the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdMapMode {
    /// Only the caller's uid/gid, mapped to 0 ([`Identity::Root`]) or to itself
    /// ([`Identity::Caller`]). Other owners show as `nobody`; changing a file's owner fails.
    Single,
    /// Like `Single`, but the `chown` family succeeds without effect, so package managers that
    /// set owners work and every file belongs to the caller (a caller without a subordinate
    /// id range; root inside only).
    Collapsed,
    /// Owners kept: inside ids `0..=MAX_INSIDE_ID` are mapped, 0 to the caller and the rest to
    /// the caller's subordinate range from /etc/subuid and /etc/subgid (through
    /// newuidmap/newgidmap), or, for a caller that is root, each to itself. Refused when the
    /// caller has no such range ([`Identity::Root`] only).
    Full,
}

/// A job on a tree of the store, done by a process of the helper in a user namespace with the
/// [`IdMapMode::Full`] maps: it can read, own and remove files of every id inside the
/// environment, and only beneath the store root (Landlock). The tar stream is the helper's
/// stdin (unpack) or stdout (pack).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeJob {
    /// Canonical absolute store root, owned by the caller; every path lies beneath it.
    pub store_root: PathBuf,
    pub op: TreeOp,
    /// As [`RunSpec::allow_without_landlock`]: without it, a kernel without Landlock is
    /// refused.
    pub allow_without_landlock: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TreeOp {
    /// Write the deterministic layer tar of `dir` (owners as inside the environment) to stdout.
    /// With `adopt`, `dir` is about to become a layer tree as it is: it first loses its
    /// setuid/setgid bits and file capabilities, and every entry gets the tree time.
    Pack { dir: PathBuf, adopt: bool },
    /// Unpack the layer tar read from stdin into the existing directory `dir`, giving every
    /// entry its recorded owner.
    Unpack { dir: PathBuf, options: UnpackSpec },
    /// Remove `path` and everything beneath it (absent: nothing to do).
    Remove { path: PathBuf },
    /// Compare the writable layer `upper` with the layer trees `lowers` (top first) and write
    /// the differences to stdout, one frame of [`DiffEntry`] each (`karapace diff` of an
    /// environment whose sessions created files of other ids, e.g. apt's `_apt` directories).
    Diff {
        upper: PathBuf,
        lowers: Vec<PathBuf>,
    },
}

/// One difference of a [`TreeOp::Diff`]: a path relative to the environment's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiffEntry {
    Added(String),
    Modified(String),
    Removed(String),
}

/// How to unpack (the store's `UnpackOptions`, as plain data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnpackSpec {
    pub whiteouts: Whiteouts,
    pub skip_devices: bool,
    pub reject_escaping_symlinks: bool,
    pub keep_set_id: bool,
    pub max_entries: u64,
    pub max_bytes: u64,
}

/// What becomes of OCI whiteout entries (`.wh.<name>`, `.wh..wh..opq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Whiteouts {
    /// Overlay whiteouts (layer trees, restored uppers).
    Convert,
    /// Plain empty files (image archives).
    AsFiles,
    /// The archive is refused.
    Reject,
}

/// What a tree job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeStats {
    pub entries: u64,
    pub file_bytes: u64,
    pub set_id_cleared: u64,
    /// `Remove`: whether anything was there.
    pub removed: bool,
}

/// Why a tree job failed, in the store's own terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum TreeFailure {
    #[error("unsafe archive entry {path:?}: {reason}")]
    UnsafeArchive { path: String, reason: String },
    #[error("corrupt archive: {0}")]
    Integrity(String),
    #[error("{0}")]
    Other(String),
}

/// Typed refusal or failure reported by the helper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("protocol version mismatch: helper speaks {helper}, core speaks {core}")]
    VersionMismatch { helper: u32, core: u32 },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("peer credentials rejected: {0}")]
    PeerRejected(String),
    #[error("path {0:?} is not beneath the store root")]
    OutsideStore(PathBuf),
    #[error("path {0:?} contains a symbolic link or '..'")]
    Symlink(PathBuf),
    #[error("path {path:?} cannot be opened: errno {errno}")]
    Open { path: PathBuf, errno: i32 },
    #[error("path {0:?} is not an absolute, normalized path")]
    NotNormalized(PathBuf),
    #[error("mount source {0:?} is not allowed by the mount policy")]
    MountNotAllowed(PathBuf),
    #[error("mount target {0:?} is not allowed")]
    TargetNotAllowed(PathBuf),
    #[error("device {0:?} is not an allowed device")]
    DeviceNotAllowed(PathBuf),
    #[error("{what} too large: {got} > {max}")]
    TooLarge { what: String, got: u64, max: u64 },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("store root {0:?} is not owned by the caller")]
    NotOwner(PathBuf),
    #[error("environment setup failed at {step}{}: errno {errno}", detail_suffix(.detail))]
    Setup {
        step: SetupStep,
        /// What the step name alone does not say (a tool's path, a confinement error).
        detail: String,
        errno: i32,
    },
    #[error("cannot execute {argv0:?}: errno {errno}")]
    Exec { argv0: String, errno: i32 },
    #[error("none of the sessions to join is running any more")]
    NoJoinTarget,
    #[error("process {pid} is not a session of this user's environment: {why}")]
    BadJoinTarget { pid: u32, why: String },
    #[error(
        "this kernel has no Landlock (not built in, or not enabled with lsm=), so environments \
         would be confined without their file-system and ptrace rules; to run them anyway, set \
         allow_without_landlock = true in ~/.config/karapace/config.toml or pass \
         --allow-without-landlock"
    )]
    LandlockUnavailable,
    #[error("{0}")]
    Tree(TreeFailure),
    #[error(
        "no subordinate id range of at least 65536 ids for this user in /etc/subuid and \
         /etc/subgid (or newuidmap/newgidmap missing)"
    )]
    NoSubordinateRange,
    /// What only the rootless mode can do, asked of a privileged helper (no user namespace).
    #[error(
        "the privileged karapace-helper (this host allows no unprivileged user namespaces) \
         cannot {0}"
    )]
    PrivilegedMode(String),
    /// A privileged helper mounts only what its caller could read itself.
    #[error("mount source {0:?} is not readable by the caller")]
    NotReadable(PathBuf),
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

/// Declares [`SetupStep`]: each step once, with the words errors show for it.
macro_rules! setup_steps {
    ($($(#[$doc:meta])* $step:ident => $words:literal,)*) => {
        /// A step of setting up or running an environment that failed ([`Refusal::Setup`]). The
        /// core tells some apart (a failed `clone` points to disabled user namespaces, a failed
        /// overlay mount to a kernel without overlayfs in user namespaces).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum SetupStep {
            $($(#[$doc])* $step,)*
        }

        impl SetupStep {
            /// Every step, in declaration order.
            pub const ALL: &'static [SetupStep] = &[$(SetupStep::$step,)*];

            /// The step in the words errors use.
            pub fn words(self) -> &'static str {
                match self {
                    $(SetupStep::$step => $words,)*
                }
            }
        }
    };
}

setup_steps! {
    /// Creating the environment's namespaces (user namespace first).
    Clone => "clone",
    /// Leaving namespaces the process shares (`unshare`).
    Unshare => "unshare",
    /// Writing `/proc/<pid>/uid_map`, `gid_map` or `setgroups`.
    WriteIdMap => "write id map",
    /// `newuidmap`/`newgidmap` for a range of subordinate ids.
    IdMapTool => "newuidmap/newgidmap",
    /// `newuidmap`/`newgidmap` are not installed.
    IdMapToolMissing => "newuidmap not installed",
    SetHostname => "sethostname",
    LoopbackUp => "loopback up",
    /// Privileged mode: making the helper's capabilities effective for the setup.
    RaiseCapabilities => "raise capabilities",
    /// Privileged mode: dropping every capability once the setup is done.
    DropCapabilities => "drop capabilities",
    /// Mounting the environment's overlay (layers plus writable upper).
    OverlayMount => "overlay mount",
    /// The writable layer the request named was not prepared.
    Upper => "upper",
    OpenRoot => "open root",
    OpenStoreRoot => "open the store root",
    BindStoreRoot => "bind the store root",
    /// A path validated before changed before it was used.
    ValidatedPathChanged => "validated path changed",
    BindTargetOutsideRoot => "bind target outside the root",
    BindTargetInKernelFs => "bind target in a kernel file system",
    ProcReadOnlyTarget => "proc ro target",
    Mount => "mount",
    BindMount => "bind mount",
    BindReadOnly => "bind read-only",
    BindReopen => "bind reopen",
    BindRoot => "bind root",
    BindTarget => "bind target",
    DetachOldRoot => "detach old root",
    DevSymlink => "dev symlink",
    FchdirRoot => "fchdir root",
    HideCgroups => "hide cgroups",
    MakeRootRprivate => "make / rprivate",
    MkdirRoot => "mkdir root",
    MkdirUpper => "mkdir upper",
    MkdirWork => "mkdir work",
    MountDevpts => "mount devpts",
    MountProc => "mount proc",
    MountTarget => "mount target",
    OpenDev => "open dev",
    OpenStage => "open stage",
    PivotRoot => "pivot_root",
    ProcReadOnly => "proc read-only",
    ProcRoBind => "proc ro bind",
    ProcRoReopen => "proc ro reopen",
    ReopenValidatedPath => "reopen validated path",
    RootReadOnly => "root read-only",
    ScratchTmpfs => "scratch tmpfs",
    StageMode => "stage mode",
    ChdirRoot => "chdir /",
    ChdirWorkdir => "chdir to working directory",
    JoinNamespaces => "join session namespaces",
    Fork => "fork",
    Pipe => "pipe",
    Signalfd => "signalfd",
    SigProcMask => "sigprocmask",
    Subreaper => "subreaper",
    DeathSignal => "pdeathsig",
    Dumpable => "PR_SET_DUMPABLE",
    CloseDescriptors => "close inherited descriptors",
    CloseRange => "close_range",
    RedirectStdio => "redirect stdio",
    LimitFiles => "RLIMIT_NOFILE",
    LimitProcesses => "RLIMIT_NPROC",
    WaitForRelease => "wait for release",
    ReleaseInit => "release init",
    ReleaseTreeWorker => "release the tree worker",
    HelperWentAway => "helper went away",
    /// Confinement (capabilities, Landlock, seccomp, `no_new_privs`); the detail says which.
    Confine => "confine",
    SpawnWorkload => "spawn workload",
    /// A pidfd of the workload, through which the confined init signals it.
    Pidfd => "pidfd_open",
    /// Waiting for the workload's end (`wait4`).
    WaitWorkload => "wait for the workload",
    /// Waiting for the session's events (`poll`, in the helper's relay).
    WaitEvents => "wait for the session's events",
    /// The environment's init process failed without saying why.
    Workload => "workload",
    TerminalChannel => "terminal channel",
    OpenPty => "open pty",
    UnlockPty => "unlock pty",
    OpenPtySlave => "open pty slave",
    PtyWindowSize => "pty window size",
    SendPtyMaster => "send pty master",
    ReceivePtyMaster => "receive the pty master",
    Setsid => "setsid",
    ControllingTerminal => "controlling terminal",
    PtyAsStdio => "pty as stdio",
    OciConfig => "OCI config",
    OciBundleDir => "mkdir OCI bundle",
    OciConsoleSocket => "console socket",
    ExecOciRuntime => "exec the OCI runtime",
    OciRuntimeFailed => "the OCI runtime failed",
    WaitOciRuntime => "wait for the OCI runtime",
    ReadWorkloadPid => "read the workload's pid",
    WriteOciConfig => "write OCI config",
    OciRuntimeEndedEarly => "the OCI runtime ended before the terminal",
    WaitOciTerminal => "wait for the OCI runtime's terminal",
    /// `fstat` of a descriptor the helper opened.
    Fstat => "fstat",
    /// An `oci` session's `/tmp`, `/run` or `/dev/shm`, on its stage.
    OciSharedTmpfs => "mount the environment's shared tmpfs",
    /// A joining `oci` session reads the mounts of the session it joins.
    ReadOciConfig => "read the running session's OCI config",
    /// A joining `oci` session's own bundle directory.
    OciBundleTmpfs => "mount the session's bundle tmpfs",
}

impl std::fmt::Display for SetupStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.words())
    }
}

/// Frame codec error.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte cap")]
    TooLarge(u64),
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("peer closed the connection")]
    Closed,
}

fn codec() -> impl Options {
    // Fixed-int encoding and rejection of trailing bytes make the encoding
    // canonical; the limit bounds every allocation the decoder makes.
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
        .with_limit(u64::from(MAX_FRAME))
}

/// Encodes `msg` as one frame body (without the length prefix).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let body = codec()
        .serialize(msg)
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if body.len() > MAX_FRAME as usize {
        return Err(FrameError::TooLarge(body.len() as u64));
    }
    Ok(body)
}

/// Decodes one frame body. Never panics on hostile input.
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, FrameError> {
    if body.len() > MAX_FRAME as usize {
        return Err(FrameError::TooLarge(body.len() as u64));
    }
    codec()
        .deserialize(body)
        .map_err(|e| FrameError::Malformed(e.to_string()))
}

/// One whole frame (length prefix and body), for a caller that sends it itself (with a
/// descriptor attached, say).
pub fn frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let body = encode(msg)?;
    // encode() capped the length at MAX_FRAME, which fits in u32.
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge(body.len() as u64))?;
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&body);
    Ok(buf)
}

/// Writes one length-prefixed frame.
pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), FrameError> {
    w.write_all(&frame(msg)?)?;
    w.flush()?;
    Ok(())
}

/// Reads one length-prefixed frame; the length is checked against the cap
/// before any allocation.
pub fn read_frame<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> Result<T, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    read_frame_body(len, r)
}

/// Writes one frame on a Unix stream socket with a copy of `fd` attached (`SCM_RIGHTS`, on
/// the frame's first bytes); read it with [`read_frame_with_fd`]. A reader that uses
/// [`read_frame`] gets the frame and the kernel closes the descriptor.
pub fn write_frame_with_fd<T: Serialize>(
    sock: &mut (impl Write + AsFd),
    msg: &T,
    fd: BorrowedFd<'_>,
) -> Result<(), FrameError> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
    let bytes = frame(msg)?;
    let fds = [fd];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(FrameError::Io(io::Error::from(io::ErrorKind::OutOfMemory)));
    }
    let sent = loop {
        match sendmsg(
            sock.as_fd(),
            &[IoSlice::new(&bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Err(rustix::io::Errno::INTR) => {}
            other => break other.map_err(io::Error::from)?,
        }
    };
    // A blocking stream socket takes a frame this small at once; finish it should it not.
    sock.write_all(bytes.get(sent..).unwrap_or_default())?;
    sock.flush()?;
    Ok(())
}

/// Reads one frame from a Unix stream socket together with the descriptor sent with it by
/// [`write_frame_with_fd`], if any (received close-on-exec; should more arrive, all but the
/// first are closed).
pub fn read_frame_with_fd<T: for<'de> Deserialize<'de>>(
    sock: &mut (impl Read + AsFd),
) -> Result<(T, Option<OwnedFd>), FrameError> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut len = [0u8; 4];
    let mut got = 0;
    let mut fd = None;
    while got < len.len() {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(&mut len[got..])];
        let n = match recvmsg(
            sock.as_fd(),
            &mut iov,
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            other => other.map_err(io::Error::from)?.bytes,
        };
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = msg {
                for f in fds {
                    if fd.is_none() {
                        fd = Some(f);
                    }
                }
            }
        }
        if n == 0 {
            return Err(FrameError::Closed);
        }
        got += n;
    }
    Ok((read_frame_body(len, sock)?, fd))
}

/// The rest of a frame whose length prefix `len` has been read.
fn read_frame_body<T: for<'de> Deserialize<'de>>(
    len: [u8; 4],
    r: &mut impl Read,
) -> Result<T, FrameError> {
    let len = u32::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(u64::from(len)));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    decode(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setup_step_has_its_own_words_and_round_trips() {
        let mut seen = std::collections::BTreeSet::new();
        for &step in SetupStep::ALL {
            assert!(
                seen.insert(step.words()),
                "{step:?} repeats {:?}",
                step.words()
            );
            let r = Refusal::Setup {
                step,
                detail: String::new(),
                errno: 1,
            };
            assert_eq!(decode::<Refusal>(&encode(&r).unwrap()).unwrap(), r);
        }
        let r = Refusal::Setup {
            step: SetupStep::Confine,
            detail: "seccomp: x".into(),
            errno: 0,
        };
        assert_eq!(
            r.to_string(),
            "environment setup failed at confine (seccomp: x): errno 0"
        );
        assert!(monotonic_ns() > 0);
    }

    fn spec() -> RunSpec {
        RunSpec {
            store_root: "/s".into(),
            lowers: vec!["/s/layers/a".into()],
            upper: Upper::Tmpfs { size_mb: 64 },
            argv: vec!["/bin/true".into()],
            env: vec![("A".into(), "b".into())],
            cwd: "/".into(),
            hostname: "karapace-abc".into(),
            binds: vec![],
            devices: vec![],
            network: Network::Isolated,
            limits: Limits::default(),
            identity: Identity::Root,
            id_map: IdMapMode::Single,
            capabilities: Capabilities::None,
            tty: None,
            allowed_mount_prefixes: vec![],
            join: vec![],
            allow_without_landlock: false,
            oci: None,
        }
    }

    #[test]
    fn roundtrip_through_frames() {
        let msg = Request::Run(Box::new(spec()));
        let mut buf = Vec::new();
        write_frame(&mut buf, &msg).unwrap();
        let back: Request = read_frame(&mut buf.as_slice()).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        let mut buf = (MAX_FRAME + 1).to_le_bytes().to_vec();
        buf.extend_from_slice(&[0; 16]);
        let err = read_frame::<Request>(&mut buf.as_slice()).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(_)));
    }

    #[test]
    fn huge_inner_length_is_refused() {
        // A Vec length of u64::MAX inside a small frame must not allocate.
        let mut body = vec![1u8, 0, 0, 0]; // variant Run
        body.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode::<Request>(&body).is_err());
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut body = encode(&Request::Signal(15)).unwrap();
        body.push(0);
        assert!(decode::<Request>(&body).is_err());
    }

    #[test]
    fn truncated_stream_is_closed_or_error() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &Request::Signal(2)).unwrap();
        buf.truncate(buf.len() - 1);
        assert!(read_frame::<Request>(&mut buf.as_slice()).is_err());
        assert!(matches!(
            read_frame::<Request>(&mut [].as_slice()),
            Err(FrameError::Closed)
        ));
    }

    #[test]
    fn a_descriptor_travels_with_its_frame() {
        use std::os::unix::net::UnixStream;
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let (mut pipe_r, pipe_w) = std::io::pipe().unwrap();
        let started = Reply::Started {
            pid: 7,
            timings: Timings::default(),
        };
        write_frame_with_fd(&mut a, &started, pipe_w.as_fd()).unwrap();
        drop(pipe_w);
        write_frame(&mut a, &Reply::Hello(Hello { version: 1, pid: 2 })).unwrap();
        let (got, fd) = read_frame_with_fd::<Reply>(&mut b).unwrap();
        assert_eq!(got, started);
        // The received copy is the pipe's write end: what goes in comes out of the read end.
        let mut w = std::fs::File::from(fd.expect("a descriptor"));
        w.write_all(b"through").unwrap();
        drop(w);
        let mut text = String::new();
        pipe_r.read_to_string(&mut text).unwrap();
        assert_eq!(text, "through");
        // A frame without one reads the same, with none.
        let (hello, none) = read_frame_with_fd::<Reply>(&mut b).unwrap();
        assert!(matches!(hello, Reply::Hello(_)) && none.is_none());
        drop(a);
        assert!(matches!(
            read_frame_with_fd::<Reply>(&mut b),
            Err(FrameError::Closed)
        ));
    }

    #[test]
    fn wait_status_code() {
        assert_eq!(WaitStatus::Exited(3).code(), 3);
        assert_eq!(WaitStatus::Signaled(9).code(), 137);
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics_on_random_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..4096)) {
            let _ = decode::<Request>(&bytes);
            let _ = decode::<Reply>(&bytes);
            let _ = read_frame::<Request>(&mut bytes.as_slice());
        }

        #[test]
        fn decoder_survives_mutated_valid_frames(idx in 0usize..4096, val in proptest::num::u8::ANY, cut in 0usize..4096) {
            let mut body = encode(&Request::Run(Box::new(spec()))).unwrap();
            let i = idx % body.len();
            body[i] = val;
            let _ = decode::<Request>(&body);
            body.truncate(cut % (body.len() + 1));
            let _ = decode::<Request>(&body);
        }
    }
}

//! The `oci` backend's part of a session: the helper's init process has entered the user
//! namespace and a mount namespace of its own and mounted the environment's overlay (and the
//! sources of its binds) on its private stage; here it writes the OCI bundle's `config.json`
//! from the same validated request the namespace backend runs, and the command line of the OCI
//! runtime (crun, runc, youki) that runs it.
//!
//! The stage is the scratch tmpfs the namespace backend uses too, mounted over `/tmp` in the
//! init process's private mount namespace: no other process of the host sees it, so no other
//! user can pre-create, read or replace the bundle or the runtime's state directory.
//!
//! What the runtime is asked for, and what not:
//! - namespaces: mount only. The init process has made the UTS (with the hostname), IPC and,
//!   for network isolation, network namespaces (with `lo` up) as for the namespace backend, and
//!   the container shares them, so that every session of the environment does (see below). Not
//!   a user namespace (the session is already in one, where the runtime is root), not a pid
//!   namespace (the session's init process is pid 1 of one already: the workload is not pid 1,
//!   so signals reach it as in the namespace backend, and `stop` ending the init process ends
//!   everything in it), not a cgroup namespace.
//!
//! Sessions of a running environment (join.rs): a later session enters the namespaces of a
//! running session's init process, a private copy of its mount tree and a pid namespace of its
//! own, as in the namespace backend, and starts a container of its own on the same mounted
//! root ([`ROOT`]), with the mounts of the session it joined ([`joined_config`]): the same bind
//! sources on the stage, and the same `/tmp`, `/run` and `/dev/shm` ([`SHARED_TMP`] …), which
//! live on the stage for that reason. Its bundle and state are on a tmpfs of its own over
//! [`BUNDLE`].
//! - capabilities: none, or the package managers' set for `exec --root`; `noNewPrivileges`;
//!   the namespace backend's seccomp policy ([`seccomp`]).
//! - no rlimits unless the request sets them (a runtime asked to raise one the caller cannot
//!   fails); no `linux.resources`, even when the lock sets limits: the helper hides the host's
//!   cgroups from the runtime (`rootfs::hide_cgroups`), so nothing could enforce them, and runc
//!   and youki fail to start a container whose resources they cannot write (the limits are
//!   recorded and warned about as on the namespace backend).

use std::collections::HashSet;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use std::os::fd::AsFd;

use karapace_protocol::{Capabilities, Network, OciFlavour, Refusal};
use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{SFlag, fstat};
use oci_spec::runtime::{
    Arch, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder, Mount,
    MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder,
};

use crate::seccomp_policy as policy;
use crate::{Prepared, PreparedUpper, SetupStep, confine};

/// The overlay root, on the stage.
pub const ROOT: &str = "/tmp/root";
/// The environment's `/tmp`, `/run` and `/dev/shm`: tmpfs mounts on the stage, bound into every
/// session's container, so that all sessions of the environment share them.
pub const SHARED_TMP: &str = "/tmp/shared/tmp";
/// See [`SHARED_TMP`].
pub const SHARED_RUN: &str = "/tmp/shared/run";
/// See [`SHARED_TMP`].
pub const SHARED_SHM: &str = "/tmp/shared/shm";
/// Bind sources: `<SOURCES>/<n>` is the n-th policy bind's source, mounted from the
/// descriptor the helper validated (the runtime never resolves a host path of the request).
pub const SOURCES: &str = "/tmp/src";
/// Device sources, likewise.
pub const DEVICES: &str = "/tmp/dev";
/// The bundle directory: `config.json` and everything else of one session's runtime (the
/// root is [`ROOT`]). A joining session mounts a tmpfs of its own over it.
pub const BUNDLE: &str = "/tmp/bundle";
/// The size of the tmpfs a joining session mounts over [`BUNDLE`], and of the room a fresh
/// session's stage keeps for it (MiB).
pub const BUNDLE_MB: u64 = 4;
/// The runtime's state directory (`--root`).
pub const STATE: &str = "/tmp/bundle/state";
/// An interactive session's console socket (`--console-socket`): the runtime allocates the
/// workload's pty in the environment's own devpts instance, makes it the workload's
/// controlling terminal, and sends its master here; the init process passes it on to the
/// helper as the namespace backend passes its own.
pub const CONSOLE_SOCKET: &str = "/tmp/bundle/console.sock";
/// Where a detached runtime writes the workload's pid.
pub const PID_FILE: &str = "/tmp/bundle/container.pid";
/// How long the runtime may take to create the container and send the pty's master.
const CONSOLE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// `PATH` when the workload's environment has none (as the namespace backend's).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The container's id: generated here, never taken from the request (each session has a state
/// directory of its own, so one fixed id never collides).
pub const CONTAINER_ID: &str = "karapace-session";

/// The capability an `oci` session's init process keeps, permitted only, once confined: one no
/// workload is ever given (not in [`confine::PACKAGE_MANAGER_CAPS`]), so that the kernel's
/// ptrace access check keeps every workload from the init process's `/proc/<pid>/root`, `fd`,
/// `environ` and memory (the host's file system is its root) while it stays dumpable for
/// joining sessions (`init::joinable`).
pub const INIT_GUARD: caps::Capability = caps::Capability::CAP_SYS_PTRACE;

/// The validated runtime of an `oci` session.
pub struct PreparedOci {
    pub runtime: crate::Opened,
    pub flavour: OciFlavour,
}

/// The runtime's command line and environment, built before the init process forks (the
/// process that execs it allocates nothing).
pub struct Invocation {
    pub path: CString,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
}

/// How the runtime is started: `<runtime> --root <STATE> [cgroups off] run --bundle <BUNDLE>
/// <id>`. No shell; the path is the validated absolute one.
pub fn invocation(o: &PreparedOci, tty: bool) -> Result<Invocation, String> {
    let path = CString::new(o.runtime.path.as_os_str().as_encoded_bytes())
        .map_err(|_| "runtime path contains a NUL byte".to_owned())?;
    let mut args: Vec<&str> = vec!["--root", STATE];
    match o.flavour {
        // The session has no cgroup of its own to delegate; crun would otherwise try systemd
        // or cgroupfs.
        OciFlavour::Crun => args.push("--cgroup-manager=disabled"),
        // runc in a user namespace is rootless: a cgroup it cannot create (the host's
        // hierarchy is read-only in this mount namespace) is skipped.
        // Its log carries warnings about the cgroup it could not make, on every run; a fatal
        // error still reaches its stderr.
        OciFlavour::Runc => args.extend(["--log", "/dev/null"]),
        OciFlavour::Youki => {}
    }
    args.extend(["run", "--bundle", BUNDLE]);
    if detaches(o.flavour, tty) {
        args.extend(["--detach", "--pid-file", PID_FILE]);
    }
    if tty {
        args.extend(["--console-socket", CONSOLE_SOCKET]);
    }
    args.push(CONTAINER_ID);
    let mut command = vec![path.clone()];
    for a in args {
        command.push(CString::new(a).map_err(|e| e.to_string())?);
    }
    // The runtime gets no environment of the caller's: its configuration is the bundle.
    let env = vec![c"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()];
    Ok(Invocation {
        path,
        argv: command,
        env,
    })
}

fn mount(
    dst: impl Into<PathBuf>,
    typ: &str,
    src: impl Into<PathBuf>,
    options: &[&str],
) -> Result<Mount, String> {
    MountBuilder::default()
        .destination(dst)
        .typ(typ)
        .source(src)
        .options(options.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>())
        .build()
        .map_err(|e| e.to_string())
}

fn bind_mount(src: &Path, dst: &Path, readonly: bool) -> Result<Mount, String> {
    let mut options = vec!["rbind"];
    if readonly {
        // `ro` alone makes only the top mount read-only: a mount beneath the shared directory
        // (an NFS home's automounts, a FUSE mount, tracefs under /sys) would stay writable.
        // `rro`/`rnosuid`/`rnodev` apply to every mount of the tree (mount_setattr), as the
        // namespace backend's recursive remount does.
        options.extend(["ro", "rro", "nosuid", "rnosuid", "nodev", "rnodev"]);
    }
    mount(dst, "bind", src, &options)
}

/// One of the environment's tmpfs mounts on the stage ([`SHARED_TMP`] …), bound at `dst`.
fn shared_mount(src: &str, dst: &str, extra: &[&str]) -> Result<Mount, String> {
    let mut options = vec!["rbind", "nosuid", "nodev"];
    options.extend(extra);
    mount(dst, "bind", src, &options)
}

/// The tmpfs mounts the stage holds for the environment's `/tmp`, `/run` and `/dev/shm`: (where,
/// mode), each of the size the namespace backend gives them.
pub const SHARED_MOUNTS: [(&str, u32); 3] = [
    (SHARED_TMP, 0o1777),
    (SHARED_RUN, 0o755),
    (SHARED_SHM, 0o1777),
];

/// The mounts of the environment, in the order and with the flags of `rootfs::assemble`.
fn mounts(p: &Prepared) -> Result<Vec<Mount>, String> {
    let mut m = vec![
        mount("/proc", "proc", "proc", &["nosuid", "nodev", "noexec"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "noexec", "mode=0755", "size=512k"],
        )?,
        // Its own devpts instance; no gid= option: the group may not be mapped.
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ],
        )?,
        shared_mount(SHARED_SHM, "/dev/shm", &["noexec"])?,
    ];
    let source = |dir: &str, i: usize| Path::new(dir).join(i.to_string());
    for (i, d) in p.devices.iter().enumerate() {
        m.push(bind_mount(&source(DEVICES, i), &d.dst, false)?);
    }
    // A fresh sysfs needs a network namespace of the session's own; otherwise the host's.
    if p.network == Network::Isolated {
        m.push(mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "nodev", "noexec", "ro"],
        )?);
    } else {
        m.push(bind_mount(Path::new("/sys"), Path::new("/sys"), true)?);
    }
    m.push(shared_mount(SHARED_TMP, "/tmp", &[])?);
    m.push(shared_mount(SHARED_RUN, "/run", &[])?);
    for (i, b) in p.binds.iter().enumerate() {
        m.push(bind_mount(&source(SOURCES, i), &b.dst, b.readonly)?);
    }
    Ok(m)
}

fn capabilities(set: Capabilities) -> Result<HashSet<Capability>, String> {
    match set {
        Capabilities::None => Ok(HashSet::new()),
        Capabilities::PackageManager => confine::PACKAGE_MANAGER_CAPS
            .iter()
            .map(|c| {
                let name = c.to_string();
                let bare = name.strip_prefix("CAP_").unwrap_or(&name);
                Capability::from_str(bare).map_err(|_| format!("capability {name}"))
            })
            .collect(),
    }
}

fn syscall(
    names: &[&str],
    errno: i32,
    args: Vec<oci_spec::runtime::LinuxSeccompArg>,
) -> Result<LinuxSyscall, String> {
    let mut b = LinuxSyscallBuilder::default()
        .names(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(u32::try_from(errno).map_err(|e| e.to_string())?);
    if !args.is_empty() {
        b = b.args(args);
    }
    b.build().map_err(|e| e.to_string())
}

/// The namespace backend's workload policy ([`crate::seccomp_policy`], the tables its
/// embedded programs are compiled from) as `linux.seccomp`: EPERM for [`policy::DENIED`], for
/// `ioctl` [`policy::DENIED_IOCTLS`] and for `clone` with any of [`policy::CLONE_NS_FLAGS`];
/// ENOSYS for [`policy::UNSUPPORTED`]; only x86-64 (a foreign architecture's calls get
/// libseccomp's bad-architecture action, which kills). With `ignore_chown` the
/// [`policy::IGNORED_CHOWN`] family succeeds without effect, as in the namespace backend's
/// collapsed id map.
pub fn seccomp(ignore_chown: bool) -> Result<LinuxSeccomp, String> {
    let eperm = i32::from(policy::EPERM);
    let mut rules = vec![
        syscall(policy::DENIED, eperm, Vec::new())?,
        syscall(policy::UNSUPPORTED, i32::from(policy::ENOSYS), Vec::new())?,
    ];
    // The kernel reads only the low 32 bits of an ioctl request: compare those, or a request
    // with high bits set would pass the rule and still reach TIOCSTI.
    for (_, request) in policy::DENIED_IOCTLS {
        let arg = LinuxSeccompArgBuilder::default()
            .index(1usize)
            .value(0xffff_ffff_u64)
            .value_two(u64::from(*request))
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()
            .map_err(|e| e.to_string())?;
        rules.push(syscall(&["ioctl"], eperm, vec![arg])?);
    }
    // One rule per flag: a rule's argument conditions must all hold, so "any of these bits"
    // is one rule for each bit.
    for (_, flag) in policy::CLONE_NS_FLAGS {
        let bit = u64::from(*flag);
        let arg = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(bit)
            .value_two(bit)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()
            .map_err(|e| e.to_string())?;
        rules.push(syscall(&["clone"], eperm, vec![arg])?);
    }
    if ignore_chown {
        rules.push(syscall(policy::IGNORED_CHOWN, 0, Vec::new())?);
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![Arch::ScmpArchX86_64])
        .syscalls(rules)
        .build()
        .map_err(|e| e.to_string())
}

/// `config.json` of a session: root [`ROOT`], everything else from the validated request.
pub fn config(p: &Prepared) -> Result<Spec, String> {
    let err = |e: oci_spec::OciSpecError| e.to_string();
    let caps = capabilities(p.capabilities)?;
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .map_err(err)?;
    // The request's argv and environment are UTF-8 (the protocol carries them as strings, and
    // decoding refuses anything else): converted back, never altered.
    let text = |c: &CString| {
        String::from_utf8(c.as_bytes().to_vec())
            .map_err(|_| "argv or environment not UTF-8".to_owned())
    };
    let mut rlimits = Vec::new();
    for (typ, value) in [
        (PosixRlimitType::RlimitNofile, p.limits.nofile),
        (PosixRlimitType::RlimitNproc, p.limits.nproc),
    ] {
        if let Some(v) = value {
            rlimits.push(
                PosixRlimitBuilder::default()
                    .typ(typ)
                    .soft(v)
                    .hard(v)
                    .build()
                    .map_err(err)?,
            );
        }
    }
    let mut process = ProcessBuilder::default()
        .terminal(p.tty.is_some())
        // Root of the session's user namespace: the caller's own uid on the host.
        .user(
            UserBuilder::default()
                .uid(0u32)
                .gid(0u32)
                .build()
                .map_err(err)?,
        )
        .args(p.argv.iter().map(text).collect::<Result<Vec<_>, _>>()?)
        .env(p.env.iter().map(text).collect::<Result<Vec<_>, _>>()?)
        .cwd(p.cwd.clone())
        .capabilities(capabilities)
        .no_new_privileges(true);
    if !rlimits.is_empty() {
        process = process.rlimits(rlimits);
    }
    if let Some(size) = p.tty {
        process = process.console_size(
            oci_spec::runtime::BoxBuilder::default()
                .height(u64::from(size.rows))
                .width(u64::from(size.cols))
                .build()
                .map_err(err)?,
        );
    }
    // No `hostname`: the runtimes set one only in a UTS namespace of the container's own; the
    // init process has set it in the session's.
    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(PathBuf::from(ROOT))
                .readonly(matches!(p.upper, PreparedUpper::ReadOnly))
                .build()
                .map_err(err)?,
        )
        .process(process.build().map_err(err)?)
        .mounts(mounts(p)?)
        .linux(linux(p)?)
        .build()
        .map(|mut spec| {
            // oci-spec fills one in by default.
            spec.set_hostname(None);
            spec
        })
        .map_err(err)
}

/// `config.json` of a session that joins a running one: its own (process, capabilities,
/// seccomp …) with the mounts of the session it joined, read from that session's bundle before
/// this one covers it (`first`: the text of its `config.json`). Only the stage's sources and
/// the kernel file systems of [`mounts`] are accepted there: the file was written by an init
/// process of the caller's session (the workload never sees the stage), and is checked all the
/// same so that nothing but what a session mounts can reach a container.
pub fn joined_config(p: &Prepared, first: &[u8]) -> Result<Spec, String> {
    let theirs: Spec =
        serde_json::from_slice(first).map_err(|e| format!("running session's config: {e}"))?;
    let mounts = theirs.mounts().clone().unwrap_or_default();
    for m in &mounts {
        check_joined_mount(m)?;
    }
    let mut spec = config(p)?;
    spec.set_mounts(Some(mounts));
    Ok(spec)
}

/// The n-th of the stage's bind or device sources: `<dir>/<n>`, nothing else.
fn is_numbered_source(source: &Path, dir: &str) -> bool {
    source
        .strip_prefix(dir)
        .ok()
        .and_then(Path::to_str)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A mount of the running session's `config.json` that a joining session takes: one [`mounts`]
/// makes — its source exactly a source on the stage, a shared tmpfs or the host's `/sys`, or a
/// kernel file system by its own name — never with `suid` or `dev` (or their recursive forms),
/// and at an absolute destination of plain names (no `..`, which the runtime would follow).
fn check_joined_mount(m: &Mount) -> Result<(), String> {
    let typ = m.typ().as_deref().unwrap_or("");
    let source = m.source().as_deref().unwrap_or(Path::new(""));
    let shared =
        source == Path::new("/sys") || SHARED_MOUNTS.iter().any(|(d, _)| source == Path::new(d));
    let ok = match typ {
        "bind" => {
            shared || is_numbered_source(source, SOURCES) || is_numbered_source(source, DEVICES)
        }
        "proc" | "tmpfs" | "devpts" | "sysfs" => source == Path::new(typ),
        _ => false,
    };
    let options = m.options().as_deref().unwrap_or_default();
    let lifts = options
        .iter()
        .any(|o| ["suid", "dev", "rsuid", "rdev"].contains(&o.as_str()));
    let dst = m.destination();
    let plain = dst.is_absolute()
        && dst.components().all(|c| {
            matches!(
                c,
                std::path::Component::RootDir | std::path::Component::Normal(_)
            )
        });
    if ok && !lifts && plain {
        Ok(())
    } else {
        Err(format!(
            "running session's config mounts {} from {} ({typ}), which no session mounts",
            m.destination().display(),
            source.display()
        ))
    }
}

/// `linux`: namespaces, seccomp, read-only and masked paths.
fn linux(p: &Prepared) -> Result<oci_spec::runtime::Linux, String> {
    let err = |e: oci_spec::OciSpecError| e.to_string();
    // The others are the init process's (see the module's documentation).
    let namespaces = vec![
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Mount)
            .build()
            .map_err(err)?,
    ];
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .seccomp(seccomp(p.ignore_chown)?)
        .readonly_paths(vec![
            "/proc/sys".to_owned(),
            "/proc/sysrq-trigger".to_owned(),
        ])
        .masked_paths(
            [
                "/proc/kcore",
                "/proc/keys",
                "/proc/timer_list",
                "/sys/firmware",
            ]
            .map(str::to_owned)
            .to_vec(),
        );
    linux.build().map_err(err)
}

/// Writes `config.json` into [`BUNDLE`] (made by `rootfs`, 0700) and makes [`STATE`].
pub fn write_bundle(spec: &Spec) -> Result<(), crate::Step> {
    use nix::sys::stat::Mode;
    nix::unistd::mkdir(STATE, Mode::from_bits_truncate(0o700))
        .map_err(|e| crate::Step(SetupStep::OciBundleDir, e))?;
    let json =
        serde_json::to_vec(spec).map_err(|_| crate::Step(SetupStep::OciConfig, Errno::EINVAL))?;
    let file = Path::new(BUNDLE).join("config.json");
    std::fs::write(&file, json).map_err(crate::io_step(SetupStep::WriteOciConfig, 0))
}

/// Whether the workload's command exists in the root as `execvpe` would find it (the
/// workload's `PATH`, the working directory for a relative path): the runtime reports a
/// missing command only as its own failure (exit status 1), so the helper looks first and
/// refuses with the namespace backend's [`Refusal::Exec`], which the core turns into "command
/// not found" (127) or "cannot execute" (126). Resolved beneath the root, links included.
pub fn check_command(p: &Prepared) -> Result<(), Refusal> {
    use std::os::unix::ffi::OsStrExt;
    let Some(argv0) = p.argv.first() else {
        return Err(Refusal::Invalid("empty argv".into()));
    };
    let name = std::ffi::OsStr::from_bytes(argv0.as_bytes());
    let fail = |errno: Errno| Refusal::Exec {
        argv0: name.to_string_lossy().into_owned(),
        errno: errno as i32,
    };
    let root = crate::rootfs::open_dir(ROOT)
        .map_err(|e| Refusal::from(crate::Step(SetupStep::OpenRoot, e)))?;
    let candidates: Vec<PathBuf> = if argv0.as_bytes().contains(&b'/') {
        vec![p.cwd.join(name)]
    } else {
        let path = p.path_env.as_deref().unwrap_or(DEFAULT_PATH);
        path.split(':')
            .map(|d| {
                if d.is_empty() {
                    p.cwd.clone()
                } else {
                    PathBuf::from(d)
                }
            })
            .filter(|d| d.is_absolute())
            .map(|d| d.join(name))
            .collect()
    };
    let mut denied = false;
    for c in candidates {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let Ok(fd) = openat2(root.as_fd(), &c, how) else {
            continue;
        };
        match fstat(fd.as_fd()) {
            Ok(st)
                if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG
                    && st.st_mode & 0o111 != 0 =>
            {
                return Ok(());
            }
            _ => denied = true,
        }
    }
    Err(fail(if denied { Errno::EACCES } else { Errno::ENOENT }))
}

/// The listening console socket, on the stage.
pub fn console_listener() -> Result<std::os::unix::net::UnixListener, crate::Step> {
    std::os::unix::net::UnixListener::bind(CONSOLE_SOCKET)
        .map_err(crate::io_step(SetupStep::OciConsoleSocket, 0))
}

/// The pty master the runtime `child` sends to the console socket, sized `size`; gives up when
/// the runtime has ended without sending one (its own error is on the caller's stderr) or
/// after [`CONSOLE_WAIT`].
pub fn receive_console(
    listener: &std::os::unix::net::UnixListener,
    child: nix::unistd::Pid,
    size: karapace_protocol::TerminalSize,
) -> Result<std::os::fd::OwnedFd, crate::Step> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
    let deadline = std::time::Instant::now() + CONSOLE_WAIT;
    loop {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(n) if n > 0 => break,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(crate::Step(SetupStep::OciConsoleSocket, e)),
        }
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::Pid(child), flags) {
            Ok(WaitStatus::StillAlive) => {}
            _ => {
                return Err(crate::Step(SetupStep::OciRuntimeEndedEarly, Errno::EPIPE));
            }
        }
        if std::time::Instant::now() >= deadline {
            return Err(crate::Step(SetupStep::WaitOciTerminal, Errno::ETIMEDOUT));
        }
    }
    let (stream, _) = listener
        .accept()
        .map_err(crate::io_step(SetupStep::OciConsoleSocket, 0))?;
    let master = receive_fd(&stream)?;
    crate::pty::set_size(master.as_fd(), size)?;
    Ok(master)
}

/// One descriptor sent with `SCM_RIGHTS` (the runtimes send the pty's name as the data).
fn receive_fd(
    stream: &std::os::unix::net::UnixStream,
) -> Result<std::os::fd::OwnedFd, crate::Step> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut data = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut data)];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    loop {
        match recvmsg(
            stream.as_fd(),
            &mut iov,
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                return Err(crate::Step(
                    SetupStep::ReceivePtyMaster,
                    Errno::from_raw(e.raw_os_error()),
                ));
            }
        }
    }
    let mut got = None;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = msg {
            for fd in fds {
                if got.is_none() {
                    got = Some(fd);
                }
            }
        }
    }
    got.ok_or(crate::Step(SetupStep::ReceivePtyMaster, Errno::EBADMSG))
}

/// Whether the runtime is started detached, leaving the workload to the init process (see
/// [`detached_workload`]): runc accepts a console socket only when it detaches, and youki in the
/// foreground exits with a dead workload's signal number as its code (15, where the workload's
/// own `exit 15` gives the same), so only the workload's own wait status tells the two apart.
pub fn detaches(flavour: OciFlavour, tty: bool) -> bool {
    match flavour {
        OciFlavour::Crun => false,
        OciFlavour::Runc => tty,
        OciFlavour::Youki => true,
    }
}

/// A runtime that detached ([`detaches`]): waits for it to exit after starting the
/// workload, and returns the workload's pid from [`PID_FILE`]. The workload is this process's
/// child by then: it was orphaned in the session's pid namespace, whose pid 1 this is.
pub fn detached_workload(runtime: nix::unistd::Pid) -> Result<nix::unistd::Pid, crate::Step> {
    use nix::sys::wait::{WaitStatus, waitpid};
    match waitpid(runtime, None) {
        Ok(WaitStatus::Exited(_, 0)) => {}
        Ok(_) => return Err(crate::Step(SetupStep::OciRuntimeFailed, Errno::EIO)),
        Err(e) => return Err(crate::Step(SetupStep::WaitOciRuntime, e)),
    }
    let text = std::fs::read_to_string(PID_FILE)
        .map_err(|_| crate::Step(SetupStep::ReadWorkloadPid, Errno::ENOENT))?;
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| crate::Step(SetupStep::ReadWorkloadPid, Errno::EINVAL))?;
    if pid <= 1 {
        return Err(crate::Step(SetupStep::ReadWorkloadPid, Errno::EINVAL));
    }
    Ok(nix::unistd::Pid::from_raw(pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(flavour: OciFlavour) -> PreparedOci {
        let fd = nix::fcntl::open(
            "/",
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        PreparedOci {
            runtime: crate::Opened {
                fd,
                path: PathBuf::from("/usr/bin/crun"),
            },
            flavour,
        }
    }

    fn words(inv: &Invocation) -> Vec<String> {
        inv.argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_runtime_command_line_is_fixed_and_private() {
        let crun = words(&invocation(&runtime(OciFlavour::Crun), false).unwrap());
        assert_eq!(
            crun,
            [
                "/usr/bin/crun",
                "--root",
                STATE,
                "--cgroup-manager=disabled",
                "run",
                "--bundle",
                BUNDLE,
                CONTAINER_ID
            ]
        );
        let runc_tty = words(&invocation(&runtime(OciFlavour::Runc), true).unwrap());
        for w in [
            "--detach",
            "--pid-file",
            PID_FILE,
            "--console-socket",
            CONSOLE_SOCKET,
        ] {
            assert!(runc_tty.iter().any(|a| a == w), "{w}: {runc_tty:?}");
        }
        assert_eq!(runc_tty.last().map(String::as_str), Some(CONTAINER_ID));
        let youki = words(&invocation(&runtime(OciFlavour::Youki), false).unwrap());
        assert!(youki.iter().any(|a| a == "--detach"), "{youki:?}");
        assert!(!youki.iter().any(|a| a == "--console-socket"), "{youki:?}");
        // Every path the runtime is given lies on the private stage.
        for p in [
            ROOT,
            SOURCES,
            DEVICES,
            BUNDLE,
            STATE,
            CONSOLE_SOCKET,
            PID_FILE,
        ] {
            assert!(Path::new(p).starts_with(crate::rootfs::SCRATCH), "{p}");
        }
    }

    /// A plain, non-interactive request with no binds (an `oci` session's).
    fn prepared() -> Prepared {
        Prepared {
            lowers: Vec::new(),
            upper: PreparedUpper::Tmpfs { size_mb: 1 },
            binds: Vec::new(),
            devices: Vec::new(),
            argv: vec![c"true".to_owned()],
            env: Vec::new(),
            path_env: None,
            cwd: PathBuf::from("/"),
            hostname: "karapace-test".into(),
            network: Network::Isolated,
            limits: karapace_protocol::Limits::default(),
            identity: karapace_protocol::Identity::Caller,
            id_map: crate::IdMap::Single,
            ignore_chown: false,
            capabilities: Capabilities::None,
            tty: None,
            join: Vec::new(),
            landlock: true,
            oci: Some(runtime(OciFlavour::Crun)),
            mode: crate::Mode::Rootless,
        }
    }

    fn config_of_a_session() -> Spec {
        config(&prepared()).unwrap()
    }

    #[test]
    fn the_config_leaves_the_hostname_and_other_namespaces_to_the_init() {
        let spec = serde_json::to_value(config_of_a_session()).unwrap();
        assert!(spec.get("hostname").is_none(), "{spec:#}");
        assert_eq!(
            spec["linux"]["namespaces"],
            serde_json::json!([{"type": "mount"}])
        );
    }

    #[test]
    fn the_init_guard_is_never_a_workloads_capability() {
        assert!(!confine::PACKAGE_MANAGER_CAPS.contains(&INIT_GUARD));
        // CAP_SYS_PTRACE itself would let a workload inspect the init all the same.
        assert!(!confine::PACKAGE_MANAGER_CAPS.contains(&caps::Capability::CAP_SYS_PTRACE));
    }

    #[test]
    fn every_mount_a_session_makes_is_one_a_joined_session_takes() {
        let opened = || crate::Opened {
            fd: nix::fcntl::open(
                "/",
                OFlag::O_PATH | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .unwrap(),
            path: PathBuf::from("/"),
        };
        let bind = |dst: &str, readonly: bool, is_dir: bool| crate::PreparedBind {
            src: opened(),
            dst: PathBuf::from(dst),
            readonly,
            is_dir,
        };
        for network in [Network::Isolated, Network::Host] {
            let mut p = prepared();
            p.network = network;
            p.binds = vec![bind("/home/u", false, true), bind("/etc/fonts", true, true)];
            p.devices = vec![
                bind("/dev/dri", false, true),
                bind("/dev/null2", false, false),
            ];
            let spec = config(&p).unwrap();
            let mounts = spec.mounts().clone().unwrap();
            assert_eq!(mounts.len(), 11, "{mounts:?}");
            for m in &mounts {
                assert!(check_joined_mount(m).is_ok(), "{network:?}: {m:?}");
            }
        }
    }

    #[test]
    fn a_joined_session_takes_only_mounts_a_session_makes() {
        let ok = [
            mount("/proc", "proc", "proc", &[]).unwrap(),
            bind_mount(&Path::new(SOURCES).join("0"), Path::new("/home/u"), false).unwrap(),
            shared_mount(SHARED_TMP, "/tmp", &[]).unwrap(),
            bind_mount(Path::new("/sys"), Path::new("/sys"), true).unwrap(),
        ];
        for m in &ok {
            assert!(check_joined_mount(m).is_ok(), "{m:?}");
        }
        let bad = [
            bind_mount(Path::new("/etc"), Path::new("/etc"), false).unwrap(),
            bind_mount(Path::new("/tmp/src/../../etc"), Path::new("/x"), false).unwrap(),
            bind_mount(Path::new("/tmp/src/0/x"), Path::new("/x"), false).unwrap(),
            bind_mount(Path::new("/tmp/shared/tmp/x"), Path::new("/x"), false).unwrap(),
            mount("/dev", "tmpfs", "tmpfs", &["suid"]).unwrap(),
            mount("/dev", "tmpfs", "tmpfs", &["rdev"]).unwrap(),
            bind_mount(
                &Path::new(SOURCES).join("1"),
                Path::new("/home/../proc"),
                false,
            )
            .unwrap(),
            bind_mount(&Path::new(SOURCES).join("1"), Path::new("home"), false).unwrap(),
            mount("/x", "overlay", "overlay", &[]).unwrap(),
            mount("/proc", "proc", "/etc", &[]).unwrap(),
        ];
        for m in &bad {
            assert!(check_joined_mount(m).is_err(), "{m:?}");
        }
    }

    #[test]
    fn the_seccomp_section_is_the_namespace_backends_policy() {
        let json = serde_json::to_value(seccomp(false).unwrap()).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ALLOW");
        assert_eq!(
            json["architectures"],
            serde_json::json!(["SCMP_ARCH_X86_64"])
        );
        let rules = json["syscalls"].as_array().unwrap();
        let rule_of = |name: &str| {
            rules
                .iter()
                .filter(|r| r["names"].as_array().unwrap().iter().any(|n| n == name))
                .collect::<Vec<_>>()
        };
        for name in policy::DENIED {
            let r = rule_of(name);
            assert_eq!(r.len(), 1, "{name}");
            assert_eq!(r[0]["action"], "SCMP_ACT_ERRNO");
            assert_eq!(r[0]["errnoRet"], libc::EPERM);
        }
        for name in policy::UNSUPPORTED {
            assert_eq!(rule_of(name)[0]["errnoRet"], libc::ENOSYS, "{name}");
        }
        let clone = rule_of("clone");
        assert_eq!(clone.len(), policy::CLONE_NS_FLAGS.len());
        assert!(
            clone
                .iter()
                .all(|r| r["args"][0]["op"] == "SCMP_CMP_MASKED_EQ")
        );
        let ioctl = rule_of("ioctl");
        assert_eq!(ioctl.len(), 2);
        // Only the low 32 bits of the request, as the kernel reads it.
        for r in &ioctl {
            let arg = &r["args"][0];
            assert_eq!(arg["op"], "SCMP_CMP_MASKED_EQ", "{r}");
            assert_eq!(arg["value"], 0xffff_ffff_u64, "{r}");
        }
        assert!(
            ioctl
                .iter()
                .any(|r| r["args"][0]["valueTwo"] == libc::TIOCSTI)
        );
        assert!(rule_of("chown").is_empty());
        let collapsed = serde_json::to_value(seccomp(true).unwrap()).unwrap();
        let chown = collapsed["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| {
                r["names"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|n| n == "fchownat")
            })
            .cloned()
            .unwrap();
        assert_eq!(chown["errnoRet"], 0);
    }
}

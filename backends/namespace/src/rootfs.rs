//! Assembles the environment's root file system inside the new mount
//! namespace and pivots into it. Every mount target is resolved beneath the
//! new root with `RESOLVE_IN_ROOT`, so symbolic links in an (untrusted) image
//! can never redirect a mount to a host path. Sources are descriptors the
//! helper opened and validated before forking, used through
//! `/proc/self/fd/N`, so nothing is resolved twice.

use std::fmt::Write as _;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, mkdirat};

use crate::{Opened, Prepared, PreparedUpper, SetupStep, Step, sys};

/// Mount flags and options of the environment's devpts instance.
const DEVPTS_FLAGS: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC);
const DEVPTS_OPTIONS: &str = "newinstance,ptmxmode=0666,mode=0620";

/// Where the helper's scratch tmpfs is mounted inside its private mount
/// namespace (the host's directory is only covered in that namespace).
pub(crate) const SCRATCH: &str = "/tmp";

fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn open_in_root(root: BorrowedFd<'_>, rel: &Path, dir: bool) -> Result<OwnedFd, Errno> {
    let mut flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
    if dir {
        flags |= OFlag::O_DIRECTORY;
    }
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, rel, how)
}

fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

/// Opens (creating missing components as directories) `rel` beneath `root`.
fn ensure_dir(root: BorrowedFd<'_>, rel: &Path) -> Result<OwnedFd, Errno> {
    let mut prefix = PathBuf::new();
    let mut cur = open_in_root(root, Path::new("."), true)?;
    for comp in relative(rel).components() {
        prefix.push(comp);
        cur = match open_in_root(root, &prefix, true) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                match mkdirat(
                    cur.as_fd(),
                    comp.as_os_str(),
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e),
                }
                open_in_root(root, &prefix, true)?
            }
            Err(e) => return Err(e),
        };
    }
    Ok(cur)
}

/// Opens (creating it empty if missing) the file `rel` beneath `root`, as a
/// mount point for a bind-mounted file.
fn ensure_file(root: BorrowedFd<'_>, rel: &Path) -> Result<OwnedFd, Errno> {
    let rel = relative(rel);
    match open_in_root(root, &rel, false) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let parent = ensure_dir(root, rel.parent().unwrap_or(Path::new("")))?;
    let name = rel.file_name().ok_or(Errno::EINVAL)?;
    let how = OpenHow::new()
        .flags(OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC)
        .mode(Mode::from_bits_truncate(0o644))
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    match openat2(parent.as_fd(), name, how) {
        Ok(_) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e),
    }
    open_in_root(root, &rel, false)
}

struct Reopened {
    lowers: Vec<OwnedFd>,
    upper: Option<(OwnedFd, OwnedFd)>,
    binds: Vec<OwnedFd>,
    devices: Vec<OwnedFd>,
}

impl Reopened {
    /// Every validated path of `p`, re-resolved (before anything covers the paths they lie in).
    fn of(p: &Prepared) -> Result<Reopened, Step> {
        Ok(Reopened {
            lowers: p.lowers.iter().map(reopen).collect::<Result<_, _>>()?,
            upper: match &p.upper {
                PreparedUpper::Store { upper, work } => Some((reopen(upper)?, reopen(work)?)),
                _ => None,
            },
            binds: p
                .binds
                .iter()
                .map(|b| reopen(&b.src))
                .collect::<Result<_, _>>()?,
            devices: p
                .devices
                .iter()
                .map(|b| reopen(&b.src))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Re-resolves a validated path in this mount namespace (no symlinks
/// allowed) and checks it is the very inode the helper validated.
fn reopen(o: &Opened) -> Result<OwnedFd, Step> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    let fd = step(
        SetupStep::ReopenValidatedPath,
        openat2(nix::fcntl::AT_FDCWD, &o.path, how),
    )?;
    let a = step(SetupStep::Fstat, nix::sys::stat::fstat(o.fd.as_fd()))?;
    let b = step(SetupStep::Fstat, nix::sys::stat::fstat(fd.as_fd()))?;
    if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) {
        Ok(fd)
    } else {
        Err(Step(SetupStep::ValidatedPathChanged, Errno::ESTALE))
    }
}

fn step<T>(name: SetupStep, r: Result<T, Errno>) -> Result<T, Step> {
    r.map_err(|e| Step(name, e))
}

/// A recursive bind mount of `src` onto `dst`.
pub(crate) fn rbind(src: &Path, dst: &Path) -> Result<(), Errno> {
    mount(
        Some(src),
        dst,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
}

/// A tmpfs mounted at `dst`.
fn tmpfs<P: ?Sized + nix::NixPath>(dst: &P, flags: MsFlags, data: &str) -> Result<(), Errno> {
    mount(Some("tmpfs"), dst, Some("tmpfs"), flags, Some(data))
}

/// An `O_PATH` descriptor of the directory `path`.
pub(crate) fn open_dir<P: ?Sized + nix::NixPath>(path: &P) -> Result<OwnedFd, Errno> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn mkdir(path: &Path) -> Result<(), Errno> {
    nix::unistd::mkdir(path, Mode::from_bits_truncate(0o755))
}

/// Remounts the bind at `dst` beneath `root` with `attrs` (reopened: the old descriptor still
/// names the covered directory).
fn set_bind_attrs(
    root: BorrowedFd<'_>,
    dst: &Path,
    attrs: impl FnOnce(BorrowedFd<'_>) -> Result<(), Errno>,
) -> Result<(), Step> {
    let mounted = step(
        SetupStep::BindReopen,
        open_in_root(root, &relative(dst), false),
    )?;
    step(SetupStep::BindReadOnly, attrs(mounted.as_fd()))
}

/// Bind-mounts `src` (a path or `/proc/self/fd/N`) onto `dst` beneath root.
fn bind(root: BorrowedFd<'_>, src: &Path, dst: &Path, is_dir: bool, ro: bool) -> Result<(), Step> {
    let target = if is_dir {
        step(SetupStep::BindTarget, ensure_dir(root, dst))?
    } else {
        step(SetupStep::BindTarget, ensure_file(root, dst))?
    };
    step(SetupStep::BindMount, rbind(src, &fd_path(target.as_fd())))?;
    if ro {
        set_bind_attrs(root, dst, sys::make_readonly_nosuid_recursive)?;
    }
    Ok(())
}

fn mount_fs(
    root: BorrowedFd<'_>,
    dst: &str,
    fstype: &str,
    flags: MsFlags,
    data: &str,
) -> Result<(), Step> {
    mount_named(root, dst, fstype, fstype, flags, data)
}

/// The source name of an environment's `/run` tmpfs (`/proc/<pid>/mountinfo` shows it).
pub const SESSION_MARK: &str = "karapace-session";

/// The source name of an `oci` session's stage tmpfs (`/proc/<pid>/mountinfo` shows it).
pub const OCI_STAGE_MARK: &str = "karapace-oci-stage";

fn mount_named(
    root: BorrowedFd<'_>,
    dst: &str,
    source: &str,
    fstype: &str,
    flags: MsFlags,
    data: &str,
) -> Result<(), Step> {
    let target = step(SetupStep::MountTarget, ensure_dir(root, Path::new(dst)))?;
    step(
        SetupStep::Mount,
        mount(
            Some(source),
            &fd_path(target.as_fd()),
            Some(fstype),
            flags,
            Some(data),
        ),
    )
}

/// Mounts the scratch tmpfs and the overlay root; returns a descriptor of the
/// new root.
fn mount_root(p: &Prepared, fds: &Reopened) -> Result<OwnedFd, Step> {
    let scratch_mb = match p.upper {
        PreparedUpper::Tmpfs { size_mb } => size_mb.max(1),
        _ => 1,
    };
    // An OCI session's stage also holds the bundle and the runtime's state.
    let scratch_mb = if p.oci.is_some() {
        scratch_mb + crate::oci::BUNDLE_MB
    } else {
        scratch_mb
    };
    // An `oci` session's stage carries its mark as the source name: a later session's helper
    // finds the environment through it (join.rs).
    let source = if p.oci.is_some() {
        OCI_STAGE_MARK
    } else {
        "tmpfs"
    };
    step(
        SetupStep::ScratchTmpfs,
        mount(
            Some(source),
            SCRATCH,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(format!("mode=0755,size={scratch_mb}m").as_str()),
        ),
    )?;
    let scratch = Path::new(SCRATCH);
    let target = scratch.join("root");
    step(SetupStep::MkdirRoot, mkdir(&target))?;

    let lower_fds = &fds.lowers;
    let lowers: Vec<String> = lower_fds
        .iter()
        .map(|fd| fd_path(fd.as_fd()).display().to_string())
        .collect();
    let mut lowerdir = lowers.join(":");
    let (upper, work, volatile) = match (&p.upper, &fds.upper) {
        (PreparedUpper::Store { .. }, Some((u, w))) => {
            (Some(fd_path(u.as_fd())), Some(fd_path(w.as_fd())), false)
        }
        (PreparedUpper::Store { .. }, None) => return Err(Step(SetupStep::Upper, Errno::EINVAL)),
        (PreparedUpper::Tmpfs { .. }, _) => {
            let (u, w) = (scratch.join("upper"), scratch.join("work"));
            step(SetupStep::MkdirUpper, mkdir(&u))?;
            step(SetupStep::MkdirWork, mkdir(&w))?;
            (Some(u), Some(w), true)
        }
        (PreparedUpper::ReadOnly, _) => (None, None, false),
    };

    if upper.is_none() && p.lowers.len() == 1 {
        // Overlay needs two lowers without an upper; a single read-only
        // layer is just a read-only bind.
        bind_single_layer(p, lower_fds[0].as_fd(), &target)?;
    } else {
        if p.mode == crate::Mode::Privileged && upper.is_some() {
            lowerdir = confined_lowers(&lowerdir, scratch)?;
        }
        let opts = overlay_options(&lowerdir, upper.as_deref().zip(work.as_deref()), volatile);
        let kernel = crate::privilege::for_overlay(p.mode, upper.is_some(), || {
            // nodev: in the host's user namespace (the privileged mode) an overlay's superblock
            // is not nodev of itself, and a layer could hold device nodes from a file system
            // its owner mounted (FUSE, a disk image); the environment's devices are binds on /dev.
            mount(
                Some("overlay"),
                &target,
                Some("overlay"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(opts.as_str()),
            )
        });
        if let Err(e) = kernel {
            // The privileged mode never starts a program of the caller's PATH with its
            // capabilities at hand: kernel overlayfs or nothing.
            if p.mode == crate::Mode::Privileged {
                return Err(Step(SetupStep::OverlayMount, e));
            }
            fuse_overlay_fallback(&opts, &target).map_err(|_| Step(SetupStep::OverlayMount, e))?;
        }
    }
    step(SetupStep::OpenRoot, open_dir(&target))
}

/// The privileged mode's read-only layers, seen through an overlay of their own: mounted
/// read-only (no work directory) with no capability that bypasses file modes effective, so every
/// lookup, listing and read in them is checked against the caller's own rights — whatever
/// directory of another user a layer holds, now or after anything the caller moves in later.
/// The environment's overlay, whose work directory needs `CAP_DAC_OVERRIDE` in its mount
/// credentials (`privilege::for_overlay`), takes this one as its only lower layer, so those
/// credentials never reach the layers themselves. An empty directory at the bottom makes one
/// layer a valid overlay too. Returns the new `lowerdir`.
fn confined_lowers(lowerdir: &str, scratch: &Path) -> Result<String, Step> {
    let (merged, empty) = (scratch.join("lower"), scratch.join("empty"));
    for dir in [&merged, &empty] {
        step(SetupStep::MkdirRoot, mkdir(dir))?;
    }
    let opts = overlay_options(&format!("{lowerdir}:{}", empty.display()), None, false);
    step(
        SetupStep::OverlayMount,
        mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(opts.as_str()),
        ),
    )?;
    Ok(merged.display().to_string())
}

/// The root of a read-only environment of one layer: a read-only, `nosuid` bind of it (and
/// `nodev` in the privileged mode, as the overlay root is).
fn bind_single_layer(p: &Prepared, layer: BorrowedFd<'_>, target: &Path) -> Result<(), Step> {
    step(SetupStep::BindRoot, rbind(&fd_path(layer), target))?;
    let fd = step(
        SetupStep::OpenRoot,
        nix::fcntl::open(target, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()),
    )?;
    step(
        SetupStep::RootReadOnly,
        sys::make_readonly_nosuid_recursive(fd.as_fd()),
    )?;
    if p.mode == crate::Mode::Privileged {
        step(
            SetupStep::RootReadOnly,
            sys::make_nosuid_recursive(fd.as_fd(), false),
        )?;
    }
    Ok(())
}

/// Mount options of the overlay root: `lowerdir` is the `:`-joined lower
/// paths, top-most first.
fn overlay_options(lowerdir: &str, upper_work: Option<(&Path, &Path)>, volatile: bool) -> String {
    let mut opts = format!("lowerdir={lowerdir}");
    if let Some((u, w)) = upper_work {
        let _ = write!(opts, ",upperdir={},workdir={}", u.display(), w.display());
    }
    opts.push_str(",userxattr");
    if volatile {
        opts.push_str(",volatile");
    }
    opts
}

/// Older kernels refuse overlayfs in a user namespace: fall back to
/// fuse-overlayfs. Descriptors are close-on-exec, so the paths are rewritten
/// from `/proc/self/fd` to this process's own `/proc/<pid>/fd`.
fn fuse_overlay_fallback(opts: &str, target: &Path) -> Result<(), Errno> {
    let me = std::fs::read_link("/proc/self").map_err(|_| Errno::ENOENT)?;
    let opts = opts
        .replace("/proc/self/", &format!("/proc/{}/", me.display()))
        .replace(",userxattr", "")
        .replace(",volatile", "")
        + ",nosuid";
    let status = std::process::Command::new("fuse-overlayfs")
        .arg("-o")
        .arg(opts)
        .arg(target)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|_| Errno::ENOENT)?;
    if status.success() {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}

/// Makes every mount of this (new) mount namespace private: nothing done here reaches the
/// host's namespace, nothing of the host's propagates in.
pub fn make_private() -> Result<(), Step> {
    step(
        SetupStep::MakeRootRprivate,
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        ),
    )
}

/// Step 3 of the setup order: all mounts of the new root, in one readable
/// sequence. Returns the root.
#[allow(clippy::too_many_lines)]
pub fn assemble(p: &Prepared) -> Result<OwnedFd, Step> {
    make_private()?;
    // Re-resolve every validated path before the scratch tmpfs covers /tmp.
    let fds = Reopened::of(p)?;
    let root = mount_root(p, &fds)?;
    let r = root.as_fd();
    let nsnx = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;

    mount_proc(r)?;

    // A minimal /dev: bind host nodes (device nodes created in a user
    // namespace would be unusable: its mounts are nodev).
    mount_fs(
        r,
        "dev",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        "mode=0755,size=512k",
    )?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let host = Path::new("/dev").join(node);
        let inside = Path::new("dev").join(node);
        bind(r, &host, &inside, false, false)?;
        harden_bind(p, r, &inside, true)?;
    }
    let dev = step(SetupStep::OpenDev, open_in_root(r, Path::new("dev"), true))?;
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        step(
            SetupStep::DevSymlink,
            nix::unistd::symlinkat(to, dev.as_fd(), link),
        )?;
    }
    // A devpts instance of the environment's own (`newinstance`): the workload sees and opens
    // only the ptys allocated in it, never the host's (nor, with a terminal, the caller's:
    // an interactive session's workload gets a pty of this instance, see `pty.rs`).
    step(
        SetupStep::DevSymlink,
        nix::unistd::symlinkat("pts/ptmx", dev.as_fd(), "ptmx"),
    )?;
    mount_fs(r, "dev/pts", "devpts", DEVPTS_FLAGS, DEVPTS_OPTIONS)?;
    let tmpfs_mb = p.limits.tmpfs_mb.unwrap_or(1024);
    mount_fs(
        r,
        "dev/shm",
        "tmpfs",
        nsnx,
        &format!("mode=1777,size={tmpfs_mb}m"),
    )?;
    for (d, fd) in p.devices.iter().zip(&fds.devices) {
        bind(r, &fd_path(fd.as_fd()), &d.dst, d.is_dir, false)?;
        harden_bind(p, r, &d.dst, true)?;
    }

    // Read-only /sys: a fresh sysfs when we own the network namespace (so
    // /sys/class/net shows ours), otherwise a bind of the host's.
    if p.network == karapace_protocol::Network::Isolated {
        mount_fs(r, "sys", "sysfs", nsnx | MsFlags::MS_RDONLY, "")?;
    } else {
        bind(r, Path::new("/sys"), Path::new("sys"), true, true)?;
    }

    // Private /tmp and /run: the host's are never shared.
    mount_fs(
        r,
        "tmp",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        &format!("mode=1777,size={tmpfs_mb}m"),
    )?;
    // /run's source names it a karapace session: only a process that may mount can make one,
    // which the privileged mode's joins insist on (join.rs).
    mount_named(
        r,
        "run",
        SESSION_MARK,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        &format!("mode=0755,size={tmpfs_mb}m"),
    )?;

    // Policy binds (home, display and audio sockets, fonts, manifest mounts).
    for (b, fd) in p.binds.iter().zip(&fds.binds) {
        refuse_kernel_target(r, &b.dst, b.is_dir)?;
        bind(r, &fd_path(fd.as_fd()), &b.dst, b.is_dir, b.readonly)?;
        harden_bind(p, r, &b.dst, false)?;
    }
    Ok(root)
}

/// The privileged mode: a bind of a host path is `nosuid` and, unless it is a device the
/// request asked for, `nodev`, whatever the host's mount says. (The workload's
/// `no_new_privs` already ignores set-user-ID bits; this keeps even a process that escaped it
/// from using them, and device nodes out of shared directories. In the rootless mode the
/// user namespace makes both meaningless.)
fn harden_bind(p: &Prepared, root: BorrowedFd<'_>, dst: &Path, devices: bool) -> Result<(), Step> {
    if p.mode != crate::Mode::Privileged {
        return Ok(());
    }
    set_bind_attrs(root, dst, |fd| sys::make_nosuid_recursive(fd, devices))
}

/// An `oci`-backend session's stage (see `oci.rs`): the overlay root at [`oci::ROOT`], each
/// bind and device source mounted (from the descriptor the helper validated) at
/// `<oci::SOURCES>/<n>` and `<oci::DEVICES>/<n>`, a `/proc` of the session's pid namespace
/// (runtimes read their children's `/proc/<pid>`), and the host's cgroups out of the runtime's
/// reach. The runtime mounts the rest from `config.json`.
pub fn assemble_oci(p: &Prepared) -> Result<(), Step> {
    use crate::oci;
    make_private()?;
    let fds = Reopened::of(p)?;
    if let Some(o) = &p.oci {
        reopen(&o.runtime)?;
    }
    let root = mount_root(p, &fds)?;
    // Only this session's processes ever see the stage; keep it to its owner all the same.
    step(
        SetupStep::StageMode,
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            SCRATCH,
            Mode::from_bits_truncate(0o700),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        ),
    )?;
    let stage = step(SetupStep::OpenStage, open_dir(SCRATCH))?;
    let s = stage.as_fd();
    let rel = |abs: &str| PathBuf::from(abs.trim_start_matches(SCRATCH).trim_start_matches('/'));
    for (i, (b, fd)) in p.binds.iter().zip(&fds.binds).enumerate() {
        // The target as the runtime will resolve it inside the root: never in a kernel file
        // system (a link in a layer could lead there).
        refuse_kernel_target(root.as_fd(), &b.dst, b.is_dir)?;
        let at = rel(oci::SOURCES).join(i.to_string());
        bind(s, &fd_path(fd.as_fd()), &at, b.is_dir, false)?;
    }
    for (i, (d, fd)) in p.devices.iter().zip(&fds.devices).enumerate() {
        let at = rel(oci::DEVICES).join(i.to_string());
        bind(s, &fd_path(fd.as_fd()), &at, d.is_dir, false)?;
    }
    let size_mb = p.limits.tmpfs_mb.unwrap_or(1024);
    for (dir, mode) in oci::SHARED_MOUNTS {
        let at = step(SetupStep::OciSharedTmpfs, ensure_dir(s, &rel(dir)))?;
        let data = format!("mode={mode:o},size={size_mb}m");
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        step(
            SetupStep::OciSharedTmpfs,
            tmpfs(&fd_path(at.as_fd()), flags, &data),
        )?;
    }
    step(
        SetupStep::OciBundleDir,
        nix::unistd::mkdir(oci::BUNDLE, Mode::from_bits_truncate(0o700)),
    )?;
    mount_proc_here()?;
    hide_cgroups()
}

/// A joining `oci` session's policy bind targets, taken from the running session's
/// `config.json`, checked as [`assemble_oci`] checks a fresh session's: the running sessions'
/// workloads may have changed the root since (a directory swapped for a link into `/dev`). The
/// runtime resolves them once more when it mounts: a workload that races that can only move a
/// host directory it already has onto a kernel path of the new container.
pub fn refuse_joined_kernel_targets(spec: &oci_spec::runtime::Spec) -> Result<(), Step> {
    use crate::oci;
    let root = step(SetupStep::OpenRoot, open_dir(oci::ROOT))?;
    for m in spec.mounts().iter().flatten() {
        let Some(source) = m.source() else {
            continue;
        };
        if m.typ().as_deref() != Some("bind") || !source.starts_with(oci::SOURCES) {
            continue;
        }
        let is_dir = std::fs::symlink_metadata(source).is_ok_and(|st| st.is_dir());
        refuse_kernel_target(root.as_fd(), m.destination(), is_dir)?;
    }
    Ok(())
}

/// Whether the OCI runtime's path names, in this mount namespace, the file the helper checked.
pub fn check_runtime(o: &crate::oci::PreparedOci) -> Result<(), Step> {
    reopen(&o.runtime).map(drop)
}

/// The stage of an `oci` session that joined a running one (join.rs): a `/proc` of its own pid
/// namespace, and a private tmpfs over the bundle directory of the session it joined, for its
/// own bundle and runtime state. Returns the `config.json` it covered.
pub fn joined_oci_stage() -> Result<Vec<u8>, Step> {
    use crate::oci;
    remount_proc()?;
    let theirs = std::path::Path::new(oci::BUNDLE).join("config.json");
    let config = std::fs::read(theirs).map_err(crate::io_step(SetupStep::ReadOciConfig, 0))?;
    let data = format!("mode=0700,size={}m", oci::BUNDLE_MB);
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    step(SetupStep::OciBundleTmpfs, tmpfs(oci::BUNDLE, flags, &data))?;
    Ok(config)
}

/// The host's cgroup hierarchy, read-only in this mount namespace: the session has no cgroup
/// of its own, and a runtime must not create any on the host (as the host's root it could).
/// On a hybrid host the unified (v2) hierarchy is put at `/sys/fs/cgroup`, so runtimes see
/// cgroup v2 (crun refuses hybrid set-ups even with its cgroup manager disabled; rootless runc
/// skips a v2 cgroup it cannot create, but not a v1 `cpuset`).
fn hide_cgroups() -> Result<(), Step> {
    let is_v2 = |p: &str| {
        nix::sys::statfs::statfs(p)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
    };
    let base = "/sys/fs/cgroup";
    let source = if is_v2(base) {
        base
    } else if is_v2("/sys/fs/cgroup/unified") {
        "/sys/fs/cgroup/unified"
    } else {
        // cgroup v1 only (or none): an empty read-only tmpfs.
        if std::fs::metadata(base).is_err() {
            return Ok(());
        }
        let flags =
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        step(SetupStep::HideCgroups, tmpfs(base, flags, "size=4k"))?;
        return Ok(());
    };
    step(
        SetupStep::HideCgroups,
        mount(
            Some(source),
            base,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        ),
    )?;
    let fd = step(
        SetupStep::HideCgroups,
        nix::fcntl::open(base, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()),
    )?;
    step(
        SetupStep::HideCgroups,
        sys::make_readonly_nosuid_recursive(fd.as_fd()),
    )
}

/// A policy bind's target, as resolved inside the new root (the image's symlinks followed), must
/// not land in `/proc`, `/sys` or `/dev`: the helper checks the target as written, but a link
/// in a layer (`opt/devlink -> /dev`) could move it there.
fn refuse_kernel_target(r: BorrowedFd<'_>, dst: &Path, is_dir: bool) -> Result<(), Step> {
    let target = if is_dir {
        step(SetupStep::BindTarget, ensure_dir(r, dst))?
    } else {
        step(SetupStep::BindTarget, ensure_file(r, dst))?
    };
    let root = step(SetupStep::BindTarget, nix::fcntl::readlink(&fd_path(r)))?;
    let resolved = step(
        SetupStep::BindTarget,
        nix::fcntl::readlink(&fd_path(target.as_fd())),
    )?;
    let inside = Path::new(&resolved)
        .strip_prefix(Path::new(&root))
        .map_err(|_| Step(SetupStep::BindTargetOutsideRoot, Errno::EXDEV))?;
    match inside.components().next() {
        Some(std::path::Component::Normal(first))
            if ["proc", "sys", "dev"].iter().any(|k| first == *k) =>
        {
            Err(Step(SetupStep::BindTargetInKernelFs, Errno::EPERM))
        }
        _ => Ok(()),
    }
}

/// `/proc` for the current pid namespace, with /proc/sys and
/// /proc/sysrq-trigger read-only.
fn mount_proc(r: BorrowedFd<'_>) -> Result<(), Step> {
    let nsnx = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_fs(r, "proc", "proc", nsnx, "")?;
    proc_read_only(r)
}

fn proc_read_only(r: BorrowedFd<'_>) -> Result<(), Step> {
    for ro in ["proc/sys", "proc/sysrq-trigger"] {
        let fd = match open_in_root(r, Path::new(ro), false) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue, // not configured in this kernel
            Err(e) => return Err(Step(SetupStep::ProcReadOnlyTarget, e)),
        };
        let path = fd_path(fd.as_fd());
        step(SetupStep::ProcRoBind, rbind(&path, &path))?;
        let again = step(
            SetupStep::ProcRoReopen,
            open_in_root(r, Path::new(ro), false),
        )?;
        step(
            SetupStep::ProcReadOnly,
            sys::make_readonly_nosuid_recursive(again.as_fd()),
        )?;
    }
    Ok(())
}

/// A procfs of the calling process's pid namespace at `/proc` of its current root (nosuid,
/// nodev, noexec).
fn mount_proc_here() -> Result<(), Step> {
    step(
        SetupStep::MountProc,
        mount(
            Some("proc"),
            "/proc",
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        ),
    )
}

/// A joined session's `/proc` (and its working directory, `/`): mounted over the one of the session it
/// joined (that one shows the other session's pid namespace). The kernel
/// only allows a new procfs where a fully visible one exists, so the old
/// mount stays underneath, covered.
pub fn remount_proc() -> Result<(), Step> {
    // `/proc/self` of the covered procfs names nothing in this pid namespace,
    // so the mount target cannot be a `/proc/self/fd` path here; `/proc` is
    // a mount point, which no process can rename or replace with a link.
    mount_proc_here()?;
    let root = step(SetupStep::OpenRoot, open_dir("/"))?;
    proc_read_only(root.as_fd())?;
    step(SetupStep::ChdirRoot, nix::unistd::chdir("/"))
}

/// An interactive joined session's `/dev/pts`: a devpts instance of its own, mounted over the
/// joined session's (in this session's private copy of the mount tree), so that it sees and
/// opens no other session's ptys. `/dev/ptmx` is a symbolic link to `pts/ptmx`, so it names
/// the new instance's multiplexer.
pub fn remount_devpts() -> Result<(), Step> {
    step(
        SetupStep::MountDevpts,
        mount(
            Some("devpts"),
            "/dev/pts",
            Some("devpts"),
            DEVPTS_FLAGS,
            Some(DEVPTS_OPTIONS),
        ),
    )
}

/// Step 4: `pivot_root` into the new root and detach the old one.
pub fn pivot(root: &OwnedFd) -> Result<(), Step> {
    step(SetupStep::FchdirRoot, nix::unistd::fchdir(root.as_fd()))?;
    step(SetupStep::PivotRoot, nix::unistd::pivot_root(".", "."))?;
    step(SetupStep::DetachOldRoot, umount2(".", MntFlags::MNT_DETACH))?;
    step(SetupStep::ChdirRoot, nix::unistd::chdir("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::process::Command;

    /// Set by the outer test for the inner one.
    const DIR_ENV: &str = "KARAPACE_FUSE_TEST_DIR";

    fn fuse_usable() -> bool {
        let tool = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("fuse-overlayfs").is_file()));
        tool && std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .is_ok()
    }

    /// The fallback for kernels that refuse overlayfs in a user namespace,
    /// exercised for real: this test re-runs `fuse_fallback_inner` in a new
    /// user and mount namespace (`unshare -Urm`; a multi-threaded test
    /// process cannot unshare a user namespace itself), where it mounts two
    /// lower layers and an upper directory — named through `/proc/self/fd`
    /// exactly as the init process names them — with `fuse-overlayfs`.
    /// Needs `fuse-overlayfs` and a usable `/dev/fuse`; skipped without them
    /// unless `KARAPACE_TEST_FUSE=1` (set by scripts/test-all) makes their
    /// absence a failure.
    #[test]
    fn fuse_overlayfs_fallback_mounts_the_same_layers() {
        if !fuse_usable() {
            assert!(
                std::env::var_os("KARAPACE_TEST_FUSE").is_none_or(|v| v != "1"),
                "KARAPACE_TEST_FUSE=1 but fuse-overlayfs or /dev/fuse is not usable"
            );
            eprintln!("skipped: fuse-overlayfs or /dev/fuse not usable");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["bottom/etc", "top/etc", "upper", "work", "merged"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::write(d.join("bottom/etc/os"), "bottom").unwrap();
        std::fs::write(d.join("bottom/etc/only-bottom"), "b").unwrap();
        std::fs::write(d.join("top/etc/os"), "top").unwrap();
        let exe = std::env::current_exe().unwrap();
        let out = Command::new("unshare")
            .args(["-Urm", "--"])
            .arg(&exe)
            .args(["--exact", "rootfs::tests::fuse_fallback_inner", "--ignored"])
            .env(DIR_ENV, d)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "inner test did not run: {text}");
        // Writes through the merged view landed in the upper directory only.
        assert_eq!(
            std::fs::read_to_string(d.join("upper/etc/new")).unwrap(),
            "written"
        );
        assert!(!d.join("top/etc/new").exists() && !d.join("bottom/etc/new").exists());
    }

    #[test]
    #[ignore = "run by fuse_overlayfs_fallback_mounts_the_same_layers in its own namespaces"]
    fn fuse_fallback_inner() {
        let d = PathBuf::from(std::env::var_os(DIR_ENV).expect("run by the outer test"));
        let open = |sub: &str| {
            nix::fcntl::open(
                &d.join(sub),
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .unwrap()
        };
        let (top, bottom, upper, work) = (open("top"), open("bottom"), open("upper"), open("work"));
        let lowerdir = format!(
            "{}:{}",
            fd_path(top.as_fd()).display(),
            fd_path(bottom.as_fd()).display()
        );
        let (u, w) = (fd_path(upper.as_fd()), fd_path(work.as_fd()));
        let opts = overlay_options(&lowerdir, Some((&u, &w)), false);
        let merged = d.join("merged");
        fuse_overlay_fallback(&opts, &merged).expect("fuse-overlayfs mounts");
        let os = std::fs::read_to_string(merged.join("etc/os"));
        let bottom_only = std::fs::read_to_string(merged.join("etc/only-bottom"));
        let wrote = std::fs::write(merged.join("etc/new"), "written");
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let options = mountinfo
            .lines()
            .find(|l| l.split(' ').nth(4) == merged.to_str())
            .map(str::to_owned);
        // Unmount before asserting, so a failure leaves no FUSE daemon behind.
        let _ = umount2(&merged, MntFlags::MNT_DETACH);
        assert_eq!(os.unwrap(), "top", "the top layer wins");
        assert_eq!(bottom_only.unwrap(), "b");
        wrote.unwrap();
        let options = options.expect("the merged mount is in mountinfo");
        assert!(
            options
                .split(' ')
                .nth(5)
                .is_some_and(|o| o.split(',').any(|f| f == "nosuid")),
            "{options}"
        );
    }
}

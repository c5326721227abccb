//! Turns a decoded `RunSpec` into a `Prepared` request: every limit checked,
//! every path opened with `openat2` beneath its allowed root with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, so the kernel — not a string
//! comparison — decides whether a path escapes. The opened descriptors are
//! what the backend mounts, so nothing can be swapped in between.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use karapace_backend_namespace::oci::PreparedOci;
use karapace_backend_namespace::{
    IdMap, Mode, Opened, Prepared, PreparedBind, PreparedUpper, Step, landlock_decision,
};
use karapace_protocol::{
    IdMapMode, Identity, Refusal, RunSpec, SetupStep, Upper, limits, oci_runtime_fault,
};
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{SFlag, fstat};

pub(crate) fn check_len(what: &str, got: usize, max: usize) -> Result<(), Refusal> {
    if got > max {
        Err(Refusal::TooLarge {
            what: what.into(),
            got: got as u64,
            max: max as u64,
        })
    } else {
        Ok(())
    }
}

/// Absolute, with only normal components (no `.`, `..`, or repeated roots).
pub(crate) fn normalized(p: &Path) -> Result<(), Refusal> {
    check_len("path", p.as_os_str().len(), limits::MAX_STRING)?;
    let mut comps = p.components();
    let ok = comps.next() == Some(Component::RootDir)
        && comps.all(|c| matches!(c, Component::Normal(_)))
        && !p.as_os_str().as_bytes().contains(&0);
    if ok {
        Ok(())
    } else {
        Err(Refusal::NotNormalized(p.to_path_buf()))
    }
}

fn first_component(p: &Path) -> Option<&std::ffi::OsStr> {
    p.components().find_map(|c| match c {
        Component::Normal(n) => Some(n),
        _ => None,
    })
}

pub(crate) fn open_err(path: &Path, e: Errno) -> Refusal {
    match e {
        Errno::ELOOP => Refusal::Symlink(path.to_path_buf()),
        Errno::EXDEV => Refusal::OutsideStore(path.to_path_buf()),
        e => Refusal::Open {
            path: path.to_path_buf(),
            errno: e as i32,
        },
    }
}

fn how(dir: bool, resolve: ResolveFlag) -> OpenHow {
    let mut flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
    if dir {
        flags |= OFlag::O_DIRECTORY;
    }
    OpenHow::new().flags(flags).resolve(resolve)
}

/// Opens an absolute host path with no symbolic link anywhere along it.
pub(crate) fn open_absolute(p: &Path, dir: bool) -> Result<OwnedFd, Refusal> {
    normalized(p)?;
    openat2(AT_FDCWD, p, how(dir, ResolveFlag::RESOLVE_NO_SYMLINKS)).map_err(|e| open_err(p, e))
}

/// Opens `p` beneath the already opened `base` (whose path is `base_path`).
pub(crate) fn open_beneath(
    base: &OwnedFd,
    base_path: &Path,
    p: &Path,
    dir: bool,
) -> Result<OwnedFd, Refusal> {
    let rel = p
        .strip_prefix(base_path)
        .map_err(|_| Refusal::OutsideStore(p.to_path_buf()))?;
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let resolve = ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS;
    openat2(base.as_fd(), rel, how(dir, resolve)).map_err(|e| open_err(p, e))
}

/// Whether `fd` is a file of type `kind` (`S_IFDIR`, `S_IFCHR`).
fn is_type(fd: &OwnedFd, kind: SFlag) -> Result<bool, Refusal> {
    let st = fstat(fd.as_fd()).map_err(|e| Step(SetupStep::Fstat, e))?;
    Ok(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == kind)
}

/// Kernel filesystems never accepted as mount sources or targets.
fn kernel_path(p: &Path) -> bool {
    matches!(
        first_component(p).and_then(|c| c.to_str()),
        Some("proc" | "sys" | "dev")
    ) || first_component(p).is_none()
}

fn device_allowed(p: &Path) -> bool {
    let names: Vec<_> = p
        .components()
        .skip(1)
        .filter_map(|c| c.as_os_str().to_str())
        .collect();
    matches!(names.as_slice(), ["dev", "dri" | "snd", ..])
        || matches!(names.as_slice(), ["dev", n] if n.starts_with("nvidia"))
}

fn cstring(what: &str, s: &str) -> Result<CString, Refusal> {
    check_len(what, s.len(), limits::MAX_STRING)?;
    CString::new(s).map_err(|_| Refusal::Invalid(format!("{what} contains a NUL byte")))
}

fn check_hostname(h: &str) -> Result<(), Refusal> {
    check_len("hostname", h.len(), limits::MAX_HOSTNAME)?;
    let ok = !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !h.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(Refusal::Invalid(format!("hostname {h:?}")))
    }
}

/// Validates and opens everything `spec` refers to (one linear checklist,
/// deliberately kept in one place for auditing). `landlock_abi` is the kernel's (`None`: no
/// Landlock), which a request must allow explicitly.
#[allow(clippy::too_many_lines)]
pub fn prepare(
    spec: RunSpec,
    uid: u32,
    gid: u32,
    landlock_abi: Option<i32>,
    mode: Mode,
) -> Result<Prepared, Refusal> {
    let landlock = landlock_decision(landlock_abi, spec.allow_without_landlock)?;
    if mode == Mode::Privileged {
        if spec.id_map == IdMapMode::Full {
            return Err(Refusal::PrivilegedMode(
                "keep files of other owners (every file of an environment is the caller's)".into(),
            ));
        }
        if spec.oci.is_some() {
            return Err(Refusal::PrivilegedMode("start an OCI runtime".into()));
        }
    }
    check_len("lowers", spec.lowers.len(), limits::MAX_LOWERS)?;
    check_len("argv", spec.argv.len(), limits::MAX_ARGV)?;
    check_len("env", spec.env.len(), limits::MAX_ENV)?;
    check_len("binds", spec.binds.len(), limits::MAX_BINDS)?;
    check_len("devices", spec.devices.len(), limits::MAX_DEVICES)?;
    check_len("sessions to join", spec.join.len(), limits::MAX_JOIN)?;
    check_len(
        "mount prefixes",
        spec.allowed_mount_prefixes.len(),
        limits::MAX_BINDS,
    )?;
    let max_mb = usize::try_from(limits::MAX_TMPFS_MB).unwrap_or(usize::MAX);
    let mb = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    if let Some(t) = spec.limits.tmpfs_mb {
        check_len("tmpfs size (MiB)", mb(t), max_mb)?;
    }
    if let Upper::Tmpfs { size_mb } = spec.upper {
        check_len("throwaway upper (MiB)", mb(size_mb), max_mb)?;
    }
    if spec.lowers.is_empty() {
        return Err(Refusal::Invalid("no lower layer".into()));
    }
    if spec.argv.is_empty() {
        return Err(Refusal::Invalid("empty argv".into()));
    }
    // Joining shares a running session's overlay: only sessions of a stored
    // environment ever join one. A root session (`exec --root`) may, into a session whose
    // user namespace has the id maps it would have written itself (checked when joining).
    if !spec.join.is_empty() && !matches!(spec.upper, Upper::Store { .. }) {
        return Err(Refusal::Invalid(
            "only sessions of a stored environment can join another session".into(),
        ));
    }
    check_hostname(&spec.hostname)?;
    normalized(&spec.cwd)?;

    // The store root: canonical, symlink-free and owned by the caller.
    let root = open_absolute(&spec.store_root, true)?;
    let st = fstat(root.as_fd()).map_err(|e| open_err(&spec.store_root, e))?;
    if st.st_uid != uid {
        return Err(Refusal::NotOwner(spec.store_root));
    }
    // The privileged mode's writable layer and work directory must hold only the caller's
    // directories, on the store's file system (owned_tree.rs; `Some(repair)`, for the work
    // directory `true`). Its read-only layers need no such walk: they are mounted behind an
    // overlay of their own without the capability that makes the walk necessary
    // (backends/namespace/src/rootfs.rs, `confined_lowers`).
    let store = |p: &Path, walk: Option<bool>| -> Result<Opened, Refusal> {
        normalized(p)?;
        let fd = open_beneath(&root, &spec.store_root, p, true)?;
        if let (Mode::Privileged, Some(repair)) = (mode, walk) {
            crate::owned_tree::check(&fd, p, uid, st.st_dev, repair)?;
        }
        Ok(Opened {
            fd,
            path: p.to_path_buf(),
        })
    };
    let lowers = spec
        .lowers
        .iter()
        .map(|p| store(p, None))
        .collect::<Result<Vec<_>, _>>()?;
    let upper = match &spec.upper {
        Upper::Store { upper, work } => PreparedUpper::Store {
            upper: store(upper, Some(false))?,
            work: store(work, Some(true))?,
        },
        Upper::Tmpfs { size_mb } => PreparedUpper::Tmpfs { size_mb: *size_mb },
        Upper::ReadOnly => PreparedUpper::ReadOnly,
    };

    // Bind sources must lie beneath one of the policy's prefixes.
    let mut prefixes = Vec::new();
    for q in &spec.allowed_mount_prefixes {
        if kernel_path(q) {
            return Err(Refusal::MountNotAllowed(q.clone()));
        }
        prefixes.push((q.clone(), open_absolute(q, true)?));
    }
    let mut binds = Vec::new();
    for b in &spec.binds {
        normalized(&b.src)?;
        normalized(&b.dst)?;
        if kernel_path(&b.src) {
            return Err(Refusal::MountNotAllowed(b.src.clone()));
        }
        if kernel_path(&b.dst) {
            return Err(Refusal::TargetNotAllowed(b.dst.clone()));
        }
        let Some((qp, qfd)) = prefixes.iter().find(|(q, _)| b.src.starts_with(q)) else {
            return Err(Refusal::MountNotAllowed(b.src.clone()));
        };
        let src = open_beneath(qfd, qp, &b.src, false).map_err(|e| match e {
            Refusal::OutsideStore(p) => Refusal::MountNotAllowed(p),
            e => e,
        })?;
        let is_dir = is_type(&src, SFlag::S_IFDIR)?;
        readable_by_caller(mode, &src, is_dir, &b.src)?;
        let src = Opened {
            fd: src,
            path: b.src.clone(),
        };
        binds.push(PreparedBind {
            src,
            dst: b.dst.clone(),
            readonly: b.readonly,
            is_dir,
        });
    }
    let mut devices = Vec::new();
    for d in &spec.devices {
        normalized(d)?;
        if !device_allowed(d) {
            return Err(Refusal::DeviceNotAllowed(d.clone()));
        }
        let src = open_absolute(d, false)?;
        let is_dir = is_type(&src, SFlag::S_IFDIR)?;
        if !is_dir && !is_type(&src, SFlag::S_IFCHR)? {
            return Err(Refusal::DeviceNotAllowed(d.clone()));
        }
        readable_by_caller(mode, &src, is_dir, d)?;
        let src = Opened {
            fd: src,
            path: d.clone(),
        };
        devices.push(PreparedBind {
            src,
            dst: d.clone(),
            readonly: false,
            is_dir,
        });
    }

    let argv = spec
        .argv
        .iter()
        .map(|a| cstring("argument", a))
        .collect::<Result<Vec<_>, _>>()?;
    let mut env = Vec::new();
    let mut path_env = None;
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') {
            return Err(Refusal::Invalid(format!("environment variable name {k:?}")));
        }
        if k == "PATH" {
            path_env = Some(v.clone());
        }
        env.push(cstring("environment entry", &format!("{k}={v}"))?);
    }
    let (id_map, ignore_chown) = id_maps(spec.id_map, spec.identity, uid, gid)?;
    let oci = match &spec.oci {
        None => None,
        Some(r) => Some(PreparedOci {
            runtime: oci_runtime(&r.path, uid)?,
            flavour: r.flavour,
        }),
    };
    Ok(Prepared {
        lowers,
        upper,
        binds,
        devices,
        argv,
        env,
        path_env,
        cwd: spec.cwd,
        hostname: spec.hostname,
        network: spec.network,
        limits: spec.limits,
        identity: spec.identity,
        id_map,
        ignore_chown,
        capabilities: spec.capabilities,
        tty: spec.tty,
        join: spec.join,
        landlock,
        oci,
        mode,
    })
}

/// A privileged helper's mounts would lend the caller its own reach: a source is mounted
/// only if the caller could read it (and search it, a directory) itself. The check is the
/// kernel's, on the opened file, with the caller's ids (this process has no capability
/// effective, and none that bypasses file permissions at all). `O_PATH` opened it with search
/// rights on the path alone.
fn readable_by_caller(mode: Mode, fd: &OwnedFd, is_dir: bool, path: &Path) -> Result<(), Refusal> {
    if mode != Mode::Privileged {
        return Ok(());
    }
    let mut wanted = nix::unistd::AccessFlags::R_OK;
    if is_dir {
        wanted |= nix::unistd::AccessFlags::X_OK;
    }
    nix::unistd::faccessat(
        fd.as_fd(),
        "",
        wanted,
        nix::fcntl::AtFlags::AT_EACCESS | nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .map_err(|_| Refusal::NotReadable(path.to_path_buf()))
}

/// The OCI runtime's executable: an absolute path without symbolic links to a regular,
/// executable file that only root or the caller can have written (it runs with every
/// capability of the session's user namespace).
fn oci_runtime(path: &Path, uid: u32) -> Result<Opened, Refusal> {
    let fd = open_absolute(path, false)?;
    let st = fstat(fd.as_fd()).map_err(|e| open_err(path, e))?;
    let bad = |why: &str| Refusal::Invalid(format!("OCI runtime {}: {why}", path.display()));
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(bad("not a regular file"));
    }
    if st.st_mode & 0o111 == 0 {
        return Err(bad("not executable"));
    }
    if let Some(fault) = oci_runtime_fault(st.st_mode, st.st_uid, uid, false) {
        return Err(bad(fault));
    }
    // And every directory above it (see `oci_runtime_fault`).
    for dir in path.ancestors().skip(1) {
        let d = nix::sys::stat::lstat(dir).map_err(|e| open_err(dir, e))?;
        if let Some(fault) = oci_runtime_fault(d.st_mode, d.st_uid, uid, true) {
            return Err(bad(&format!("its directory {} {fault}", dir.display())));
        }
    }
    Ok(Opened {
        fd,
        path: path.to_path_buf(),
    })
}

/// The id maps of a request, and whether `chown` is to be skipped ([`IdMapMode::Collapsed`]).
/// In full maps the caller is root inside: a request to run as the caller's own uid can only
/// have them when the caller is root.
fn id_maps(
    mode: IdMapMode,
    identity: Identity,
    uid: u32,
    gid: u32,
) -> Result<(IdMap, bool), Refusal> {
    match (mode, identity) {
        (IdMapMode::Single, _) => Ok((IdMap::Single, false)),
        (IdMapMode::Collapsed, Identity::Root) => Ok((IdMap::Single, true)),
        (IdMapMode::Full, Identity::Root) => Ok((IdMap::full(uid, gid)?, false)),
        (IdMapMode::Full, Identity::Caller) if uid == 0 => Ok((IdMap::full(uid, gid)?, false)),
        (mode, identity) => Err(Refusal::Invalid(format!(
            "id maps {mode:?} cannot run a workload as {identity:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization() {
        assert!(normalized(Path::new("/a/b")).is_ok());
        assert!(normalized(Path::new("a/b")).is_err());
        assert!(normalized(Path::new("/a/../b")).is_err());
        assert!(normalized(Path::new("/a/./b")).is_ok()); // Path drops interior "."
    }

    #[test]
    fn devices() {
        assert!(device_allowed(Path::new("/dev/dri")));
        assert!(device_allowed(Path::new("/dev/snd/controlC0")));
        assert!(device_allowed(Path::new("/dev/nvidia0")));
        assert!(!device_allowed(Path::new("/dev/sda")));
        assert!(!device_allowed(Path::new("/dev/mem")));
        assert!(!device_allowed(Path::new("/etc/dri")));
    }

    #[test]
    fn oci_runtime_must_be_a_private_executable_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let uid = nix::unistd::getuid().as_raw();
        let file = |name: &str, mode: u32| {
            let p = base.join(name);
            std::fs::write(&p, "#!/bin/true\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        assert!(oci_runtime(&file("ok", 0o755), uid).is_ok());
        for (name, mode) in [
            ("group-writable", 0o775),
            ("others-writable", 0o757),
            ("plain", 0o644),
        ] {
            assert!(oci_runtime(&file(name, mode), uid).is_err(), "{name}");
        }
        // Owned by someone who is neither root nor the caller (root can give a file away).
        if uid == 0 {
            let theirs = file("theirs", 0o755);
            nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(12_345)), None).unwrap();
            assert!(oci_runtime(&theirs, uid).is_err(), "another user's");
        }
        assert!(oci_runtime(&base, uid).is_err(), "a directory");
        let link = base.join("link");
        std::os::unix::fs::symlink(base.join("ok"), &link).unwrap();
        assert!(oci_runtime(&link, uid).is_err(), "a symbolic link");
        assert!(oci_runtime(Path::new("relative/crun"), uid).is_err());
        // A directory above it that others can write to (not sticky): a binary could be
        // renamed over the checked one before it is exec'd.
        let open_dir = base.join("open");
        std::fs::create_dir(&open_dir).unwrap();
        std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let inside = open_dir.join("crun");
        std::fs::write(&inside, "#!/bin/true\n").unwrap();
        std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(
            oci_runtime(&inside, uid).is_err(),
            "in a world-writable directory"
        );
        std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(oci_runtime(&inside, uid).is_ok(), "in a sticky directory");
        assert!(
            oci_runtime(Path::new("/usr/bin/crun"), uid).is_ok()
                || !Path::new("/usr/bin/crun").exists()
        );
    }

    #[test]
    fn kernel_paths() {
        assert!(kernel_path(Path::new("/proc/1")));
        assert!(kernel_path(Path::new("/")));
        assert!(!kernel_path(Path::new("/home/u")));
    }
}

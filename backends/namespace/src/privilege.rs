//! The helper's two modes. **Rootless** (the default): every namespace of an environment
//! hangs off a user namespace of the caller's, so the helper needs no privilege at all.
//! **Privileged**, for hosts that refuse unprivileged user namespaces: the helper is installed
//! with the file capabilities [`NEEDED`] (`scripts/install-privileged-helper`) and creates the
//! mount, pid, UTS, IPC and network namespaces without a user namespace, for one caller, whose
//! uid it keeps throughout. docs/security-model.md §3 lists what it trusts and why.
//!
//! The mode is decided by the helper itself, first thing, from what the kernel gave it — never
//! from anything its caller says.

use caps::{CapSet, Capability, CapsHashSet};
use nix::errno::Errno;

use crate::sys;

/// Which of the two modes this helper process runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Rootless,
    Privileged,
}

/// The capabilities of a privileged helper, and the only ones it keeps: `CAP_SYS_ADMIN`
/// creates the namespaces and mounts the environment (and joins a running one's),
/// `CAP_SYS_CHROOT` is what `setns` into a mount namespace asks for besides,
/// `CAP_NET_ADMIN` brings the loopback interface of an isolated network namespace up,
/// `CAP_DAC_OVERRIDE` is effective for the overlay mount alone ([`for_overlay`]) and
/// `CAP_SETPCAP` empties the bounding set before the workload starts ([`drop_all`]).
pub const NEEDED: [Capability; 5] = [
    Capability::CAP_SYS_ADMIN,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_NET_ADMIN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_SETPCAP,
];

/// The file capabilities `scripts/install-privileged-helper` sets: [`NEEDED`], permitted only.
pub use karapace_protocol::PRIVILEGED_FILE_CAPABILITIES as FILE_CAPABILITIES;

/// Why a helper cannot run at all.
#[derive(Debug, thiserror::Error)]
pub enum ModeError {
    #[error(
        "karapace-helper runs set-user-ID or set-group-ID (real and effective ids differ): \
         that is not a supported installation; install it with file capabilities instead \
         (scripts/install-privileged-helper)"
    )]
    SetId,
    #[error(
        "karapace-helper was installed with the capabilities {have}, without {missing}; \
         the privileged mode needs exactly {FILE_CAPABILITIES} (scripts/install-privileged-helper)"
    )]
    MissingCapabilities { have: String, missing: String },
    #[error(
        "karapace-helper holds file capabilities but cannot tell whether this kernel allows \
         unprivileged user namespaces (the probe failed: {0}); not starting"
    )]
    Probe(Errno),
    #[error("capabilities: {0}")]
    Caps(String),
}

fn caps_err(set: &str, e: &caps::errors::CapsError) -> ModeError {
    ModeError::Caps(format!("{set}: {e}"))
}

fn names(set: &CapsHashSet) -> String {
    let mut v: Vec<String> = set.iter().map(|c| c.to_string().to_lowercase()).collect();
    v.sort();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(",")
    }
}

/// Decides this process's mode and leaves it with only what that mode needs:
///
/// * no capability in the permitted set (the ordinary install), or a caller that is root: the
///   rootless mode, nothing changes;
/// * capabilities from the file (a privileged install): none stays effective; when this kernel
///   lets unprivileged processes create user namespaces after all, every capability is dropped
///   and the mode is rootless (the same environments, no privilege used); otherwise the
///   permitted set is cut down to [`NEEDED`] and the mode is privileged.
///
/// A set-user-ID or set-group-ID install is refused. Must run single-threaded, first thing.
pub fn enter_mode() -> Result<Mode, ModeError> {
    let uids = nix::unistd::getresuid().map_err(|e| ModeError::Caps(e.to_string()))?;
    let gids = nix::unistd::getresgid().map_err(|e| ModeError::Caps(e.to_string()))?;
    if uids.real != uids.effective
        || uids.real != uids.saved
        || gids.real != gids.effective
        || gids.real != gids.saved
    {
        return Err(ModeError::SetId);
    }
    let permitted = caps::read(None, CapSet::Permitted).map_err(|e| caps_err("Permitted", &e))?;
    if permitted.is_empty() || uids.real.is_root() {
        return Ok(Mode::Rootless);
    }
    caps::clear(None, CapSet::Effective).map_err(|e| caps_err("Effective", &e))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| caps_err("Ambient", &e))?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| caps_err("Inheritable", &e))?;
    let refused = sys::probe_user_namespace()
        .and_then(|refused| match refused {
            None => Ok(None),
            Some(errno) => host_forbids(errno, &HostSettings::read()).map(Some),
        })
        .map_err(|e| {
            let _ = caps::clear(None, CapSet::Permitted);
            ModeError::Probe(e)
        })?;
    if refused.is_none() {
        caps::clear(None, CapSet::Permitted).map_err(|e| caps_err("Permitted", &e))?;
        return Ok(Mode::Rootless);
    }
    let needed: CapsHashSet = NEEDED.into_iter().collect();
    let missing: CapsHashSet = needed.difference(&permitted).copied().collect();
    if !missing.is_empty() {
        let have = names(&permitted);
        caps::clear(None, CapSet::Permitted).map_err(|e| caps_err("Permitted", &e))?;
        return Err(ModeError::MissingCapabilities {
            have,
            missing: names(&missing),
        });
    }
    caps::set(None, CapSet::Permitted, &needed).map_err(|e| caps_err("Permitted", &e))?;
    Ok(Mode::Privileged)
}

/// The host's settings that forbid unprivileged user namespaces (`None`: not present).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostSettings {
    /// `user.max_user_namespaces`.
    pub max_user_namespaces: Option<i64>,
    /// `kernel.unprivileged_userns_clone` (Debian's and others' patch).
    pub unprivileged_userns_clone: Option<i64>,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu).
    pub apparmor_restrict: Option<i64>,
}

impl HostSettings {
    fn read() -> HostSettings {
        let number = |path: &str| {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|t| t.trim().parse().ok())
        };
        HostSettings {
            max_user_namespaces: number("/proc/sys/user/max_user_namespaces"),
            unprivileged_userns_clone: number("/proc/sys/kernel/unprivileged_userns_clone"),
            apparmor_restrict: number("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
        }
    }
}

/// Whether the kernel's refusal of the probe's user namespace (`errno`) is the host's policy
/// — then `Ok(errno)`, and the privileged mode is right — or something a caller can bring
/// about on a host that allows user namespaces (a quota of namespaces it filled itself:
/// `ENOSPC` with a limit above 0; `EAGAIN` from its `RLIMIT_NPROC`; `EPERM` in a chroot) —
/// then `Err`, and the helper does not start: a caller cannot choose the privileged mode.
pub fn host_forbids(errno: Errno, host: &HostSettings) -> Result<Errno, Errno> {
    let policy = match errno {
        Errno::ENOSPC => host.max_user_namespaces == Some(0),
        Errno::EPERM | Errno::EACCES => {
            host.max_user_namespaces == Some(0)
                || host.unprivileged_userns_clone == Some(0)
                || host.apparmor_restrict == Some(1)
        }
        _ => false,
    };
    if policy { Ok(errno) } else { Err(errno) }
}

/// Sanitises a privileged helper's process before it reads anything of its caller's, as a
/// set-user-ID program must: descriptors 0–2 open and nothing above them, no core dumps (the
/// process is not dumpable either), default signal dispositions, an empty environment (the
/// dynamic loader already ignored `LD_PRELOAD` and its kind: a process that gained
/// capabilities runs in secure-execution mode).
///
/// # Safety
/// Call it single-threaded, first thing in `main`: no object may own a descriptor above 2.
pub unsafe fn sanitize_process() -> Result<(), Errno> {
    sys::stdio_open()?;
    // SAFETY: forwarded from the caller.
    unsafe { sys::close_from_3()? };
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)?;
    sys::reset_signal_dispositions();
    // SAFETY: single-threaded, as the caller guarantees.
    unsafe { sys::clear_environment() };
    Ok(())
}

/// Makes `CAP_SYS_ADMIN`, `CAP_SYS_CHROOT` and `CAP_NET_ADMIN` effective (a privileged
/// helper's setup steps).
pub fn raise() -> Result<(), Errno> {
    let permitted = caps::read(None, CapSet::Permitted).map_err(|_| Errno::EPERM)?;
    let wanted: CapsHashSet = [
        Capability::CAP_SYS_ADMIN,
        Capability::CAP_SYS_CHROOT,
        Capability::CAP_NET_ADMIN,
    ]
    .into_iter()
    .filter(|c| permitted.contains(c))
    .collect();
    caps::set(None, CapSet::Effective, &wanted).map_err(|_| Errno::EPERM)
}

/// Runs `mount` (the overlay's) with `CAP_DAC_OVERRIDE` effective in the privileged mode when the
/// overlay has a writable layer (`work_dir`). Overlayfs creates its `work/work` directory with
/// mode 0 and goes on working in it with the credentials the mount was made with: a mounter
/// that cannot bypass file modes gets `EACCES`. Those credentials must then never reach a
/// directory the caller could not: the read-only layers are confined behind an overlay of their
/// own mounted without it (`rootfs::confined_lowers`), and the writable layer and the work
/// directory hold only the caller's directories (checked by the helper before the mount,
/// `helper/src/owned_tree.rs`; docs/security-model.md §3 says what is left).
pub fn for_overlay<T>(
    mode: Mode,
    work_dir: bool,
    mount: impl FnOnce() -> Result<T, Errno>,
) -> Result<T, Errno> {
    if mode != Mode::Privileged || !work_dir {
        return mount();
    }
    caps::raise(None, CapSet::Effective, Capability::CAP_DAC_OVERRIDE).map_err(|_| Errno::EPERM)?;
    let mounted = mount();
    caps::drop(None, CapSet::Effective, Capability::CAP_DAC_OVERRIDE).map_err(|_| Errno::EPERM)?;
    mounted
}

/// Makes no capability effective (they stay permitted).
pub fn lower() -> Result<(), Errno> {
    caps::clear(None, CapSet::Effective).map_err(|_| Errno::EPERM)
}

/// Drops every capability for good: the bounding set (with `CAP_SETPCAP`, so nothing this
/// process or its children execute can regain one, `no_new_privs` or not), then effective,
/// permitted, inheritable and ambient.
pub fn drop_all() -> Result<(), Errno> {
    let permitted = caps::read(None, CapSet::Permitted).map_err(|_| Errno::EPERM)?;
    if permitted.contains(&Capability::CAP_SETPCAP) {
        caps::raise(None, CapSet::Effective, Capability::CAP_SETPCAP).map_err(|_| Errno::EPERM)?;
        for cap in caps::all() {
            caps::drop(None, CapSet::Bounding, cap).map_err(|_| Errno::EPERM)?;
        }
    }
    for set in [
        CapSet::Effective,
        CapSet::Permitted,
        CapSet::Inheritable,
        CapSet::Ambient,
    ] {
        caps::clear(None, set).map_err(|_| Errno::EPERM)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_capabilities_are_exactly_the_needed_ones() {
        let (list, flags) = FILE_CAPABILITIES.split_once('+').unwrap();
        assert_eq!(flags, "p");
        let named: Vec<String> = list.split(',').map(str::to_owned).collect();
        let needed: CapsHashSet = NEEDED.into_iter().collect();
        assert_eq!(named.join(","), names(&needed));
    }

    #[test]
    fn only_the_hosts_own_settings_make_a_refused_probe_privileged() {
        let none = HostSettings::default();
        let zero_max = HostSettings {
            max_user_namespaces: Some(0),
            ..none
        };
        let debian = HostSettings {
            max_user_namespaces: Some(15_000),
            unprivileged_userns_clone: Some(0),
            ..none
        };
        let ubuntu = HostSettings {
            max_user_namespaces: Some(15_000),
            apparmor_restrict: Some(1),
            ..none
        };
        let open = HostSettings {
            max_user_namespaces: Some(15_000),
            unprivileged_userns_clone: Some(1),
            apparmor_restrict: Some(0),
        };
        assert_eq!(host_forbids(Errno::ENOSPC, &zero_max), Ok(Errno::ENOSPC));
        assert_eq!(host_forbids(Errno::EPERM, &debian), Ok(Errno::EPERM));
        assert_eq!(host_forbids(Errno::EACCES, &ubuntu), Ok(Errno::EACCES));
        // A quota the caller filled, a limit of its own, a chroot: not the host's policy.
        assert_eq!(host_forbids(Errno::ENOSPC, &open), Err(Errno::ENOSPC));
        assert_eq!(host_forbids(Errno::ENOSPC, &debian), Err(Errno::ENOSPC));
        assert_eq!(host_forbids(Errno::EAGAIN, &zero_max), Err(Errno::EAGAIN));
        assert_eq!(host_forbids(Errno::EPERM, &open), Err(Errno::EPERM));
        assert_eq!(host_forbids(Errno::ENOMEM, &none), Err(Errno::ENOMEM));
    }

    #[test]
    fn an_unprivileged_process_stays_rootless() {
        if nix::unistd::geteuid().is_root() {
            return;
        }
        assert_eq!(enter_mode().unwrap(), Mode::Rootless);
    }
}

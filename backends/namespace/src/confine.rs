//! Self-confinement: capabilities, Landlock and seccomp, for the workload and
//! for the helper's own long-lived processes.

use std::path::{Path, PathBuf};

use karapace_protocol::Refusal;
use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope,
};

/// Newest Landlock ABI we know; older kernels get the best-effort subset.
const LANDLOCK_ABI: ABI = ABI::V6;

#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("seccomp: {0}")]
    Seccomp(String),
    #[error("landlock: {0}")]
    Landlock(String),
    #[error("capabilities: {0}")]
    Caps(String),
    #[error("no_new_privs: {0}")]
    NoNewPrivs(nix::errno::Errno),
}

/// The finished seccomp programs (`WORKLOAD`, `CONTROL`, `IGNORE_CHOWN`, `CLAIM_ROOT`), compiled for the
/// target architecture by build.rs from the policy in `seccomp/src/policy.rs`
/// ([`crate::seccomp_policy`]): nothing is compiled or allocated here, only installed.
#[allow(clippy::all, clippy::pedantic)] // generated
mod filters {
    include!(concat!(env!("OUT_DIR"), "/seccomp_filters.rs"));
}

fn install(program: &[seccompiler::sock_filter]) -> Result<(), ConfineError> {
    seccompiler::apply_filter(program).map_err(|e| ConfineError::Seccomp(e.to_string()))
}

/// Installs a seccomp filter on the calling thread (it sets `no_new_privs` first): the
/// workload's deny-list, or with `control` the allowlist of the helper's control and init
/// processes (docs/security-model.md, §6).
pub fn apply_seccomp(control: bool) -> Result<(), ConfineError> {
    install(if control {
        filters::CONTROL
    } else {
        filters::WORKLOAD
    })
}

/// Capabilities kept by [`karapace_protocol::Capabilities::PackageManager`].
pub const PACKAGE_MANAGER_CAPS: [caps::Capability; 10] = {
    use caps::Capability as C;
    [
        C::CAP_CHOWN,
        C::CAP_DAC_OVERRIDE,
        C::CAP_FOWNER,
        C::CAP_FSETID,
        C::CAP_SETUID,
        C::CAP_SETGID,
        C::CAP_SETFCAP,
        C::CAP_KILL,
        C::CAP_NET_BIND_SERVICE,
        C::CAP_AUDIT_WRITE,
    ]
};

/// Drops every capability not in `keep`: bounding set first (so nothing can
/// be regained across execve), then ambient and inheritable (emptied), then
/// effective and permitted (reduced to `keep`). With `no_new_privs` set later,
/// execve can only keep `keep ∩ bounding`.
pub fn drop_capabilities(keep: &[caps::Capability]) -> Result<(), ConfineError> {
    use caps::{CapSet, Capability, CapsHashSet};
    let err = |set: &str, e: caps::errors::CapsError| ConfineError::Caps(format!("{set}: {e}"));
    // Shrinking the bounding set needs CAP_SETPCAP; an unprivileged helper
    // process has an empty permitted set anyway, and no_new_privs keeps
    // execve from granting anything.
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        for cap in caps::all() {
            if !keep.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap).map_err(|e| err("Bounding", e))?;
            }
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| err("Ambient", e))?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| err("Inheritable", e))?;
    let permitted = caps::read(None, CapSet::Permitted).map_err(|e| err("Permitted", e))?;
    let kept: CapsHashSet = keep
        .iter()
        .copied()
        .filter(|c| permitted.contains(c))
        .collect();
    caps::set(None, CapSet::Effective, &kept).map_err(|e| err("Effective", e))?;
    caps::set(None, CapSet::Permitted, &kept).map_err(|e| err("Permitted", e))?;
    Ok(())
}

pub fn set_no_new_privs() -> Result<(), ConfineError> {
    nix::sys::prctl::set_no_new_privs().map_err(ConfineError::NoNewPrivs)
}

fn ll(e: impl std::fmt::Display) -> ConfineError {
    ConfineError::Landlock(e.to_string())
}

/// A best-effort ruleset that handles every file-system right and `scope`.
fn ruleset(
    scope: impl Into<landlock::BitFlags<Scope>>,
) -> Result<landlock::RulesetCreated, ConfineError> {
    Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))
        .map_err(ll)?
        .scope(scope)
        .map_err(ll)?
        .create()
        .map_err(ll)
}

/// Whether a request's processes are confined by Landlock, given the kernel's Landlock ABI
/// (`None`: no Landlock) and whether the request allows running without it. Without Landlock a
/// workload is confined by namespaces, capabilities, `no_new_privs` and seccomp only, so that
/// needs the user's explicit opt-out; the refusal names it.
pub fn landlock_decision(abi: Option<i32>, allow_without: bool) -> Result<bool, Refusal> {
    match abi {
        Some(v) if v >= 1 => Ok(true),
        _ if allow_without => Ok(false),
        _ => Err(Refusal::LandlockUnavailable),
    }
}

/// Applies `ruleset`, and refuses a kernel that accepted it without enforcing anything (the
/// probe said it has Landlock; best-effort mode would otherwise hide the difference).
fn restrict(ruleset: landlock::RulesetCreated) -> Result<(), ConfineError> {
    let status = ruleset.restrict_self().map_err(ll)?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err(ll("the kernel enforces no Landlock ruleset"));
    }
    Ok(())
}

/// Landlock for the workload: read and execute everywhere below `/`, full
/// access only beneath `writable`. Called after `pivot_root`, while the process
/// still holds `CAP_SYS_ADMIN` in its user namespace (`no_new_privs` comes later,
/// in the order of the architecture document). Signals and abstract unix
/// sockets are scoped to the environment where the kernel supports it.
pub fn landlock_workload(writable: &[PathBuf]) -> Result<(), ConfineError> {
    let abi = LANDLOCK_ABI;
    let mut rs = ruleset(Scope::from_all(abi))?.no_new_privs(false);
    rs = rs
        .add_rule(PathBeneath::new(
            PathFd::new("/").map_err(ll)?,
            AccessFs::from_read(abi),
        ))
        .map_err(ll)?;
    for path in writable {
        let Ok(fd) = PathFd::new(path) else {
            continue; // optional path absent in this image
        };
        // For a file (a device node) the crate narrows this to the file rights
        // (best-effort mode) after its own fstat: no second check here.
        rs = rs
            .add_rule(PathBeneath::new(fd, AccessFs::from_all(abi)))
            .map_err(ll)?;
    }
    restrict(rs)
}

/// Landlock for the helper's tree worker: every file-system right beneath `root` (the store),
/// none anywhere else.
pub fn landlock_beneath(root: &Path) -> Result<(), ConfineError> {
    let abi = LANDLOCK_ABI;
    let rs = ruleset(Scope::from_all(abi))?
        .add_rule(PathBeneath::new(
            PathFd::new(root).map_err(ll)?,
            AccessFs::from_all(abi),
        ))
        .map_err(ll)?;
    restrict(rs)
}

/// A second seccomp filter for build steps of [`karapace_protocol::IdMapMode::Collapsed`]:
/// `chown`, `fchown`, `lchown` and `fchownat` return success without doing anything. Every
/// id but the caller's is unmapped there, so a real change of owner could only fail
/// (`EINVAL`) and abort the package manager; skipping it leaves every file the caller's,
/// which is what that mode promises. Stacked on the workload's filter (the kernel applies
/// the stricter verdict: an errno, here 0, over "allow").
pub fn ignore_chown() -> Result<(), ConfineError> {
    install(filters::IGNORE_CHOWN)
}

/// A third seccomp filter for a privileged-mode session as root (build steps, `exec --root`):
/// no user namespace exists to make the caller root, so the id queries answer 0 and the id
/// changes succeed without effect ([`crate::seccomp_policy::CLAIMED_ROOT_IDS`]). The process
/// keeps the caller's uid and no capability; it only looks like root to itself.
pub fn claim_root() -> Result<(), ConfineError> {
    install(filters::CLAIM_ROOT)
}

/// Landlock for the helper's control and init processes: every filesystem
/// access right handled, none granted.
pub fn landlock_deny_all() -> Result<(), ConfineError> {
    restrict(ruleset(Scope::AbstractUnixSocket)?)
}

/// Writable paths of a workload: each top-level entry of the root except the
/// kernel filesystems, a handful of device nodes, and the process's own
/// /proc directory.
pub fn workload_writable(extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/") {
        for entry in rd.flatten() {
            let name = entry.file_name();
            if matches!(name.to_str(), Some("proc" | "sys" | "dev")) {
                continue;
            }
            // A top-level symlink (`/bin` → `usr/bin` on merged-/usr systems) needs no rule:
            // access through it is checked on its target, which lies beneath another
            // top-level entry (writable, or one of the kernel file systems above).
            if entry.file_type().is_ok_and(|t| t.is_symlink()) {
                continue;
            }
            out.push(Path::new("/").join(name));
        }
    }
    for dev in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx",
    ] {
        out.push(Path::new("/dev").join(dev));
    }
    out.push(PathBuf::from("/proc/self"));
    out.extend(extra.iter().cloned());
    out
}

/// Confinement of a long-lived helper process that no longer mounts anything; Landlock only
/// when the request's processes get it ([`landlock_decision`]). `guard`, if any, stays in the
/// permitted set only (never effective): it keeps processes that lack it from inspecting this
/// one (an `oci` session's init, see `init::joinable`).
pub fn confine_control(
    landlock: bool,
    guard: Option<caps::Capability>,
) -> Result<(), ConfineError> {
    if landlock {
        landlock_deny_all()?;
    }
    let kept: Vec<caps::Capability> = guard.into_iter().collect();
    drop_capabilities(&kept)?;
    caps::clear(None, caps::CapSet::Effective)
        .map_err(|e| ConfineError::Caps(format!("Effective: {e}")))?;
    if let Some(cap) = guard
        && !caps::has_cap(None, caps::CapSet::Permitted, cap).unwrap_or(false)
    {
        return Err(ConfineError::Caps(format!("{cap} is not permitted")));
    }
    set_no_new_privs()?;
    apply_seccomp(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    use karapace_seccomp::Insn;
    use karapace_seccomp::bpf::emulate::{Data, run};

    fn embedded(program: &[seccompiler::sock_filter]) -> Vec<Insn> {
        program
            .iter()
            .map(|i| Insn {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect()
    }

    /// The programs karapace-seccomp's tests check are the ones this crate installs.
    #[test]
    fn the_embedded_programs_are_the_compiled_policy() {
        let compiled = karapace_seccomp::Programs::for_arch(std::env::consts::ARCH).unwrap();
        assert_eq!(embedded(filters::WORKLOAD), compiled.workload);
        assert_eq!(embedded(filters::CONTROL), compiled.control);
        assert_eq!(embedded(filters::IGNORE_CHOWN), compiled.ignore_chown);
        assert_eq!(embedded(filters::CLAIM_ROOT), compiled.claim_root);
    }

    /// The embedded programs answer this target's own system-call numbers (libc's), not
    /// another architecture's.
    #[test]
    fn the_embedded_programs_speak_this_targets_numbers() {
        let answer = |program, nr: i64, args: [u64; 6]| {
            let data = Data {
                nr: u32::try_from(nr).unwrap(),
                arch: 0xC000_003E, // AUDIT_ARCH_X86_64
                args,
            };
            run(&embedded(program), &data).0
        };
        let allow = libc::SECCOMP_RET_ALLOW;
        let errno = |e: i32| libc::SECCOMP_RET_ERRNO | e.cast_unsigned();
        let none = [0; 6];
        for nr in [libc::SYS_mount, libc::SYS_kexec_load, libc::SYS_bpf] {
            assert_eq!(
                answer(filters::WORKLOAD, nr, none),
                errno(libc::EPERM),
                "{nr}"
            );
        }
        assert_eq!(
            answer(filters::WORKLOAD, libc::SYS_clone3, none),
            errno(libc::ENOSYS)
        );
        let tiocsti = [0, libc::TIOCSTI, 0, 0, 0, 0];
        assert_eq!(
            answer(filters::WORKLOAD, libc::SYS_ioctl, tiocsti),
            errno(libc::EPERM)
        );
        let newuser = [
            u64::from(libc::CLONE_NEWUSER.cast_unsigned()),
            0,
            0,
            0,
            0,
            0,
        ];
        assert_eq!(
            answer(filters::WORKLOAD, libc::SYS_clone, newuser),
            errno(libc::EPERM)
        );
        for nr in [libc::SYS_read, libc::SYS_openat, libc::SYS_execve] {
            assert_eq!(answer(filters::WORKLOAD, nr, none), allow, "{nr}");
        }
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_sendmsg,
            libc::SYS_poll,
            libc::SYS_wait4,
            libc::SYS_pidfd_send_signal,
            libc::SYS_signalfd4,
            libc::SYS_exit_group,
        ] {
            assert_eq!(answer(filters::CONTROL, nr, none), allow, "{nr}");
        }
        for nr in [
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_socket,
            libc::SYS_kill,
            libc::SYS_tgkill,
            libc::SYS_ptrace,
            libc::SYS_clone,
            libc::SYS_ioctl,
        ] {
            assert_eq!(
                answer(filters::CONTROL, nr, none),
                errno(libc::EPERM),
                "{nr}"
            );
        }
        assert_eq!(
            answer(filters::IGNORE_CHOWN, libc::SYS_fchownat, none),
            errno(0)
        );
    }

    /// The control filter on a real kernel, in a forked child: what its list lacks fails with
    /// EPERM, what it has still works.
    #[test]
    fn the_control_filter_refuses_what_its_list_lacks() {
        // SAFETY: the child calls only async-signal-safe functions (prctl, seccomp, socket,
        // getpid, _exit; `install` allocates nothing) and ends in `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let code = if install(filters::CONTROL).is_err() {
                10
            } else {
                // SAFETY: plain system calls on no memory of ours.
                let (sock, err, me) = unsafe {
                    let sock = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                    let err = *libc::__errno_location();
                    (sock, err, libc::getpid())
                };
                if sock != -1 || err != libc::EPERM {
                    11
                } else if me <= 0 {
                    12
                } else {
                    0
                }
            };
            // SAFETY: ends the forked child at once.
            unsafe { libc::_exit(code) }
        }
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 0)
        );
    }

    #[test]
    fn landlock_is_required_unless_the_request_allows_running_without_it() {
        // A kernel with Landlock (whatever its ABI): always applied, the opt-out changes nothing.
        for abi in [1, 6, 7] {
            assert_eq!(landlock_decision(Some(abi), false), Ok(true));
            assert_eq!(landlock_decision(Some(abi), true), Ok(true));
        }
        // No Landlock (the probe's `None`; a nonsensical version counts as none): refused,
        // naming both opt-outs, unless the request allows it.
        for abi in [None, Some(0), Some(-1)] {
            let refusal = landlock_decision(abi, false).unwrap_err();
            assert_eq!(refusal, Refusal::LandlockUnavailable);
            let text = refusal.to_string();
            assert!(
                text.contains("allow_without_landlock = true")
                    && text.contains("--allow-without-landlock"),
                "{text}"
            );
            assert_eq!(landlock_decision(abi, true), Ok(false));
        }
    }
}

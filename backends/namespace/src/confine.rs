//! Self-confinement: capabilities, Landlock and seccomp, for the workload and
//! for the helper's own long-lived processes.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, Scope,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

/// Newest Landlock ABI we know; older kernels get the best-effort subset.
const LANDLOCK_ABI: ABI = ABI::V6;

/// `open_tree_attr(2)` (Linux 6.15), not yet in the libc crate.
const SYS_OPEN_TREE_ATTR: i64 = 467;

/// System calls refused with EPERM for every workload (see
/// docs/security-model.md for the reasoning behind each group).
pub const DENIED: &[(&str, i64)] = &[
    // kernel replacement and modules
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    // kernel attack surface with a long CVE history
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    // kernel keyrings are not namespaced
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    // file handles bypass path-based checks
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    // clocks are not namespaced
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("settimeofday", libc::SYS_settimeofday),
    ("adjtimex", libc::SYS_adjtimex),
    // host administration
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("acct", libc::SYS_acct),
    ("syslog", libc::SYS_syslog),
    ("quotactl", libc::SYS_quotactl),
    ("quotactl_fd", libc::SYS_quotactl_fd),
    ("vhangup", libc::SYS_vhangup),
    ("iopl", libc::SYS_iopl),
    ("ioperm", libc::SYS_ioperm),
    ("uselib", libc::SYS_uselib),
    // mount table and namespaces (old and new mount API)
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("open_tree_attr", SYS_OPEN_TREE_ATTR),
    ("mount_setattr", libc::SYS_mount_setattr),
];

/// Extra calls refused to the helper's own control and init processes, which
/// only relay messages, signals and exit statuses once confined.
pub const DENIED_CONTROL: &[(&str, i64)] = &[
    ("execve", libc::SYS_execve),
    ("execveat", libc::SYS_execveat),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("socket", libc::SYS_socket),
    ("socketpair", libc::SYS_socketpair),
    ("connect", libc::SYS_connect),
    ("bind", libc::SYS_bind),
    ("listen", libc::SYS_listen),
    ("fork", libc::SYS_fork),
    ("vfork", libc::SYS_vfork),
    ("clone", libc::SYS_clone),
];

/// Namespace-creating `clone` flags refused to the workload.
const CLONE_NS_FLAGS: &[i32] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWTIME,
];

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

fn eq(arg: u8, value: u64) -> Result<SeccompCondition, ConfineError> {
    // Dword compares only the low 32 bits, which is what the kernel uses for
    // an ioctl request number: high garbage bits cannot sneak past.
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
        .map_err(|e| ConfineError::Seccomp(e.to_string()))
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, ConfineError> {
    SeccompRule::new(conds).map_err(|e| ConfineError::Seccomp(e.to_string()))
}

/// The EPERM filter. `control` adds [`DENIED_CONTROL`] and refuses every clone.
pub fn eperm_filter(control: bool) -> Result<BpfProgram, ConfineError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (_, nr) in DENIED {
        rules.insert(*nr, vec![]);
    }
    // Terminal injection: TIOCSTI pushes input into the controlling
    // terminal; TIOCLINUX can do the same on virtual consoles.
    rules.insert(
        libc::SYS_ioctl,
        vec![
            rule(vec![eq(1, libc::TIOCSTI)?])?,
            rule(vec![eq(1, libc::TIOCLINUX)?])?,
        ],
    );
    if control {
        for (_, nr) in DENIED_CONTROL {
            rules.insert(*nr, vec![]);
        }
    } else {
        let mut clone_rules = Vec::new();
        for flag in CLONE_NS_FLAGS {
            let bits = u64::from(flag.cast_unsigned());
            clone_rules.push(rule(vec![
                SeccompCondition::new(
                    0,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::MaskedEq(bits),
                    bits,
                )
                .map_err(|e| ConfineError::Seccomp(e.to_string()))?,
            ])?);
        }
        rules.insert(libc::SYS_clone, clone_rules);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM.cast_unsigned()),
        TargetArch::x86_64,
    )
    .map_err(|e| ConfineError::Seccomp(e.to_string()))?;
    BpfProgram::try_from(filter).map_err(|e| ConfineError::Seccomp(e.to_string()))
}

const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}
fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// A hand-written prelude run before the EPERM filter: ENOSYS for `clone3`
/// (its flags live in memory a filter cannot read; libc then falls back to
/// `clone`, whose flags the EPERM filter checks) and for the whole x32
/// syscall range, which would otherwise reach the same kernel entry points
/// under different numbers. Every other call falls through to the next
/// instruction, the first of the EPERM filter (which loads what it needs
/// itself and kills foreign architectures).
fn enosys_prelude() -> Vec<sock_filter> {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const JGE_K: u16 = 0x35;
    const RET_K: u16 = 0x06;
    let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS.cast_unsigned();
    vec![
        stmt(LD_W_ABS, 4),                    // 0: seccomp_data.arch
        jump(JEQ_K, AUDIT_ARCH_X86_64, 0, 4), // 1: other arches → 6
        stmt(LD_W_ABS, 0),                    // 2: seccomp_data.nr
        jump(JGE_K, X32_SYSCALL_BIT, 1, 0),   // 3: x32 → 5
        jump(JEQ_K, u32::try_from(libc::SYS_clone3).unwrap_or(435), 0, 1), // 4: → 5 / 6
        stmt(RET_K, enosys),                  // 5
    ] // 6: the EPERM filter
}

/// The complete filter: one program, so the kernel runs (and JIT-compiles)
/// a single filter per system call.
pub fn filter(control: bool) -> Result<BpfProgram, ConfineError> {
    let mut prog = enosys_prelude();
    prog.extend(eperm_filter(control)?);
    Ok(prog)
}

/// Both filters, compiled once in the helper before it forks, so the init
/// and workload processes inherit them instead of compiling their own.
static FILTERS: std::sync::OnceLock<Result<(BpfProgram, BpfProgram), String>> =
    std::sync::OnceLock::new();

fn filters() -> Result<&'static (BpfProgram, BpfProgram), ConfineError> {
    FILTERS
        .get_or_init(|| {
            Ok((
                filter(false).map_err(|e| e.to_string())?,
                filter(true).map_err(|e| e.to_string())?,
            ))
        })
        .as_ref()
        .map_err(|e| ConfineError::Seccomp(e.clone()))
}

/// Compiles the filters now (see [`FILTERS`]).
pub fn precompile() -> Result<(), ConfineError> {
    filters().map(|_| ())
}

/// Installs the seccomp filter on the calling thread (needs `no_new_privs`).
pub fn apply_seccomp(control: bool) -> Result<(), ConfineError> {
    let (workload, ctl) = filters()?;
    let prog = if control { ctl } else { workload };
    seccompiler::apply_filter(prog).map_err(|e| ConfineError::Seccomp(e.to_string()))
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

/// Landlock for the workload: read and execute everywhere below `/`, full
/// access only beneath `writable`. Called after `pivot_root`, while the process
/// still holds `CAP_SYS_ADMIN` in its user namespace (`no_new_privs` comes later,
/// in the order of the architecture document). Signals and abstract unix
/// sockets are scoped to the environment where the kernel supports it.
pub fn landlock_workload(writable: &[PathBuf]) -> Result<(), ConfineError> {
    let abi = LANDLOCK_ABI;
    let mut rs = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(ll)?
        .scope(Scope::from_all(abi))
        .map_err(ll)?
        .create()
        .map_err(ll)?
        .no_new_privs(false);
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
        // fstat of the open descriptor: no second path walk.
        let is_dir = nix::sys::stat::fstat(fd.as_fd()).is_ok_and(|st| {
            nix::sys::stat::SFlag::from_bits_truncate(st.st_mode) & nix::sys::stat::SFlag::S_IFMT
                == nix::sys::stat::SFlag::S_IFDIR
        });
        let access = if is_dir {
            AccessFs::from_all(abi)
        } else {
            AccessFs::from_file(abi)
        };
        rs = rs.add_rule(PathBeneath::new(fd, access)).map_err(ll)?;
    }
    rs.restrict_self().map_err(ll)?;
    Ok(())
}

/// Landlock for the helper's control and init processes: every filesystem
/// access right handled, none granted.
pub fn landlock_deny_all() -> Result<(), ConfineError> {
    let abi = LANDLOCK_ABI;
    Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(ll)?
        .scope(Scope::AbstractUnixSocket)
        .map_err(ll)?
        .create()
        .map_err(ll)?
        .restrict_self()
        .map_err(ll)?;
    Ok(())
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

/// Confinement of a long-lived helper process that no longer mounts anything.
pub fn confine_control() -> Result<(), ConfineError> {
    landlock_deny_all()?;
    drop_capabilities(&[])?;
    set_no_new_privs()?;
    apply_seccomp(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile_and_stay_small() {
        let w = eperm_filter(false).unwrap();
        let c = eperm_filter(true).unwrap();
        assert!(w.len() < 512 && c.len() < 512, "{} {}", w.len(), c.len());
        assert_eq!(enosys_prelude().len(), 6);
        assert_eq!(filter(false).unwrap().len(), w.len() + 6);
    }

    #[test]
    fn denied_lists_have_no_duplicates() {
        let mut nrs: Vec<i64> = DENIED
            .iter()
            .chain(DENIED_CONTROL)
            .map(|(_, n)| *n)
            .collect();
        let before = nrs.len();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(nrs.len(), before);
    }
}

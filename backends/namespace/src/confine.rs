//! Self-confinement: capabilities, Landlock and seccomp, for the workload and
//! for the helper's own long-lived processes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use karapace_protocol::Refusal;
use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope,
};
use seccompiler::BpfProgram;

use crate::bpf::{self, Rule, Verdict};

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

/// System calls answered ENOSYS, as if this kernel did not have them: `clone3` (its flags live
/// in memory a filter cannot read; libc then falls back to `clone`, whose flags are checked) and
/// `io_uring` (its rings submit file-system and network operations that no seccomp filter sees,
/// and it has a long CVE history; programs fall back to ordinary system calls on ENOSYS).
pub const UNSUPPORTED: &[(&str, i64)] = &[
    ("clone3", libc::SYS_clone3),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
];

/// Namespace-creating `clone` flags refused to the workload.
pub(crate) const CLONE_NS_FLAGS: &[i32] = &[
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

/// The seccomp policy: ENOSYS for [`UNSUPPORTED`] and for the whole x32 range
/// (the same kernel entry points under other numbers); EPERM for [`DENIED`], for `ioctl` `TIOCSTI`/`TIOCLINUX`,
/// and for `clone` with namespace flags; foreign architectures are killed.
/// `control` adds [`DENIED_CONTROL`] and refuses every `clone`.
pub fn policy(control: bool) -> Result<bpf::Policy, ConfineError> {
    let nr = |n: i64| u32::try_from(n).map_err(|_| ConfineError::Seccomp(format!("syscall {n}")));
    let eperm = Verdict::Errno(u16::try_from(libc::EPERM).unwrap_or(1));
    let enosys = Verdict::Errno(u16::try_from(libc::ENOSYS).unwrap_or(38));
    let mut rules = BTreeMap::new();
    for (_, n) in DENIED {
        rules.insert(nr(*n)?, Rule::Always(eperm));
    }
    for (_, n) in UNSUPPORTED {
        rules.insert(nr(*n)?, Rule::Always(enosys));
    }
    // Terminal injection: TIOCSTI pushes input into the controlling
    // terminal; TIOCLINUX can do the same on virtual consoles.
    rules.insert(
        nr(libc::SYS_ioctl)?,
        Rule::ArgIn {
            arg: 1,
            values: [libc::TIOCSTI, libc::TIOCLINUX]
                .iter()
                .map(|r| {
                    u32::try_from(*r).map_err(|_| ConfineError::Seccomp(format!("ioctl {r:#x}")))
                })
                .collect::<Result<_, _>>()?,
            verdict: eperm,
        },
    );
    if control {
        for (_, n) in DENIED_CONTROL {
            rules.insert(nr(*n)?, Rule::Always(eperm));
        }
    } else {
        let mask = CLONE_NS_FLAGS
            .iter()
            .fold(0u32, |m, f| m | f.cast_unsigned());
        rules.insert(
            nr(libc::SYS_clone)?,
            Rule::ArgAnyBit {
                arg: 0,
                mask,
                verdict: eperm,
            },
        );
    }
    Ok(bpf::Policy {
        arch: AUDIT_ARCH_X86_64,
        foreign_arch: Verdict::KillProcess,
        high_range: Some((X32_SYSCALL_BIT, enosys)),
        rules,
    })
}

const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;

/// The complete filter: one program, so the kernel runs (and JIT-compiles)
/// a single filter per system call.
pub fn filter(control: bool) -> Result<BpfProgram, ConfineError> {
    bpf::compile(&policy(control)?).map_err(|e| ConfineError::Seccomp(e.to_string()))
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
    let rs = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(ll)?
        .scope(Scope::from_all(abi))
        .map_err(ll)?
        .create()
        .map_err(ll)?
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
    let nr = |n: i64| u32::try_from(n).map_err(|_| ConfineError::Seccomp(format!("syscall {n}")));
    let mut rules = BTreeMap::new();
    for n in [
        libc::SYS_chown,
        libc::SYS_fchown,
        libc::SYS_lchown,
        libc::SYS_fchownat,
    ] {
        rules.insert(nr(n)?, Rule::Always(Verdict::Errno(0)));
    }
    let program = bpf::compile(&bpf::Policy {
        arch: AUDIT_ARCH_X86_64,
        foreign_arch: Verdict::KillProcess,
        high_range: None,
        rules,
    })
    .map_err(|e| ConfineError::Seccomp(e.to_string()))?;
    seccompiler::apply_filter(&program).map_err(|e| ConfineError::Seccomp(e.to_string()))
}

/// Landlock for the helper's control and init processes: every filesystem
/// access right handled, none granted.
pub fn landlock_deny_all() -> Result<(), ConfineError> {
    let abi = LANDLOCK_ABI;
    restrict(
        Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(AccessFs::from_all(abi))
            .map_err(ll)?
            .scope(Scope::AbstractUnixSocket)
            .map_err(ll)?
            .create()
            .map_err(ll)?,
    )
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
/// when the request's processes get it ([`landlock_decision`]).
pub fn confine_control(landlock: bool) -> Result<(), ConfineError> {
    if landlock {
        landlock_deny_all()?;
    }
    drop_capabilities(&[])?;
    set_no_new_privs()?;
    apply_seccomp(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::bpf::emulate::{Data, run};
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch, sock_filter,
    };

    /// The same policy written the straightforward way, with seccompiler's
    /// linear filter behind a hand-written ENOSYS prelude (what this backend
    /// shipped before the search-tree generator): the reference the
    /// generated programs must agree with on every input.
    fn reference(control: bool) -> Vec<sock_filter> {
        let eq = |arg: u8, v: u64| {
            SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, v).unwrap()
        };
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for (_, nr) in DENIED {
            rules.insert(*nr, vec![]);
        }
        rules.insert(
            libc::SYS_ioctl,
            vec![
                SeccompRule::new(vec![eq(1, libc::TIOCSTI)]).unwrap(),
                SeccompRule::new(vec![eq(1, libc::TIOCLINUX)]).unwrap(),
            ],
        );
        if control {
            for (_, nr) in DENIED_CONTROL {
                rules.insert(*nr, vec![]);
            }
        } else {
            let clone = CLONE_NS_FLAGS
                .iter()
                .map(|f| {
                    let bits = u64::from(f.cast_unsigned());
                    let c = SeccompCondition::new(
                        0,
                        SeccompCmpArgLen::Qword,
                        SeccompCmpOp::MaskedEq(bits),
                        bits,
                    )
                    .unwrap();
                    SeccompRule::new(vec![c]).unwrap()
                })
                .collect();
            rules.insert(libc::SYS_clone, clone);
        }
        let linear: Vec<sock_filter> = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM.cast_unsigned()),
            TargetArch::x86_64,
        )
        .unwrap()
        .try_into()
        .unwrap();
        let s = |code, k| sock_filter {
            code,
            jt: 0,
            jf: 0,
            k,
        };
        let j = |code, k, jt, jf| sock_filter { code, jt, jf, k };
        let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS.cast_unsigned();
        // Foreign architectures go straight to the linear filter (which kills them); x32 and
        // each call of UNSUPPORTED jump to the ENOSYS return right after the last test.
        let n = u8::try_from(UNSUPPORTED.len()).unwrap();
        let mut prog = vec![
            s(0x20, 4),
            j(0x15, AUDIT_ARCH_X86_64, 0, 3 + n),
            s(0x20, 0),
            j(0x35, X32_SYSCALL_BIT, n, 0),
        ];
        for (i, (_, nr)) in (0u8..).zip(UNSUPPORTED) {
            let last = i + 1 == n;
            let nr = u32::try_from(*nr).unwrap();
            prog.push(j(0x15, nr, n - 1 - i, u8::from(last)));
        }
        prog.push(s(0x06, enosys));
        prog.extend(linear);
        prog
    }

    /// Inputs: every syscall number up to 600 and a spread of x32 and
    /// out-of-range numbers, each with argument vectors that hit or miss
    /// the argument rules (including high garbage bits), on three
    /// architectures.
    fn inputs() -> Vec<Data> {
        let mut nrs: Vec<u32> = (0..600).collect();
        nrs.extend([
            0x4000_0000,
            0x4000_0001,
            0x4000_0038,
            0x4000_00a5,
            0x7fff_ffff,
            u32::MAX,
        ]);
        let mut args: Vec<[u64; 6]> = vec![[0; 6], [u64::MAX; 6]];
        for req in [libc::TIOCSTI, libc::TIOCLINUX, libc::TIOCGWINSZ] {
            args.push([0, req, 0, 0, 0, 0]);
            args.push([0, req | 0xffff_ffff_0000_0000, 0, 0, 0, 0]);
        }
        for f in CLONE_NS_FLAGS {
            let f = u64::from(f.cast_unsigned());
            args.push([f | u64::from(libc::SIGCHLD.cast_unsigned()), 0, 0, 0, 0, 0]);
        }
        args.push([0x0120_0011, 0, 0, 0, 0, 0]); // fork()'s flags
        args.push([0xffff_ffff_0000_0011, 0, 0, 0, 0, 0]);
        let mut out = Vec::new();
        for arch in [AUDIT_ARCH_X86_64, 0x4000_0003, 0xC000_00B7] {
            for nr in &nrs {
                for a in &args {
                    out.push(Data {
                        nr: *nr,
                        arch,
                        args: *a,
                    });
                }
            }
        }
        out
    }

    #[test]
    fn generated_filters_agree_with_the_linear_reference() {
        for control in [false, true] {
            let ours = filter(control).unwrap();
            let theirs = reference(control);
            let (mut worst_ours, mut worst_theirs) = (0, 0);
            for d in inputs() {
                let (a, sa) = run(&ours, &d);
                let (b, sb) = run(&theirs, &d);
                assert_eq!(a, b, "control={control} {d:?}");
                worst_ours = worst_ours.max(sa);
                worst_theirs = worst_theirs.max(sb);
            }
            // The point of the search tree: short paths for every call.
            assert!(worst_ours <= 16, "{worst_ours}");
            assert!(
                worst_ours * 4 < worst_theirs,
                "{worst_ours} vs {worst_theirs}"
            );
        }
    }

    #[test]
    fn denied_calls_get_eperm_and_ordinary_calls_pass() {
        let prog = filter(false).unwrap();
        let call = |nr: i64| {
            run(
                &prog,
                &Data {
                    nr: u32::try_from(nr).unwrap(),
                    arch: AUDIT_ARCH_X86_64,
                    args: [0; 6],
                },
            )
            .0
        };
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM.cast_unsigned();
        for (name, nr) in DENIED {
            assert_eq!(call(*nr), eperm, "{name}");
        }
        for nr in [
            libc::SYS_read,
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_ptrace,
        ] {
            assert_eq!(call(nr), libc::SECCOMP_RET_ALLOW, "{nr}");
        }
        for (name, nr) in UNSUPPORTED {
            assert_eq!(
                call(*nr),
                libc::SECCOMP_RET_ERRNO | libc::ENOSYS.cast_unsigned(),
                "{name}"
            );
        }
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

    #[test]
    fn denied_lists_have_no_duplicates() {
        let mut nrs: Vec<i64> = DENIED
            .iter()
            .chain(DENIED_CONTROL)
            .chain(UNSUPPORTED)
            .map(|(_, n)| *n)
            .collect();
        let before = nrs.len();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(nrs.len(), before);
    }
}

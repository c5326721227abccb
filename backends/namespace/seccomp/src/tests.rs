//! The compiled programs checked by running them: against the same policies written the
//! straightforward way with seccompiler, for every system-call number and the argument rules.

use std::collections::BTreeMap;

use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch, sock_filter,
};

use crate::bpf::emulate::{Data, run};
use crate::{Arch, Error, Insn, Programs, policy, syscalls};

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const ALLOW: u32 = 0x7fff_0000;
const EPERM: u32 = 0x0005_0000 | 1;
const ENOSYS: u32 = 0x0005_0000 | 0x26; // 38

fn x86_64() -> Arch {
    Arch::of("x86_64").unwrap()
}

fn nr(name: &str) -> i64 {
    i64::from(x86_64().nr(name).unwrap())
}

/// seccompiler's linear filter behind a hand-written ENOSYS prelude for the other ABI's range
/// and `unsupported` (what this backend shipped before the search-tree generator).
fn with_prelude(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
    unsupported: &[&str],
) -> Vec<Insn> {
    let linear: Vec<sock_filter> = SeccompFilter::new(rules, mismatch, matched, TargetArch::x86_64)
        .unwrap()
        .try_into()
        .unwrap();
    let j = |code, k, jt, jf| Insn { code, jt, jf, k };
    let s = |code, k| j(code, k, 0, 0);
    // Foreign architectures go straight to the linear filter (which kills them); the other
    // ABI's range and each call of `unsupported` jump to the ENOSYS return after the last test.
    let n = u8::try_from(unsupported.len()).unwrap();
    let mut prog = vec![
        s(0x20, 4),
        j(0x15, AUDIT_ARCH_X86_64, 0, 3 + n),
        s(0x20, 0),
        j(0x35, X32_SYSCALL_BIT, n, u8::from(n == 0)),
    ];
    for (i, name) in (0u8..).zip(unsupported) {
        let last = i + 1 == n;
        prog.push(j(
            0x15,
            x86_64().nr(name).unwrap(),
            n - 1 - i,
            u8::from(last),
        ));
    }
    prog.push(s(0x06, ENOSYS));
    prog.extend(linear.into_iter().map(|i| Insn {
        code: i.code,
        jt: i.jt,
        jf: i.jf,
        k: i.k,
    }));
    prog
}

fn cond(arg: u8, len: SeccompCmpArgLen, op: SeccompCmpOp, v: u64) -> SeccompRule {
    SeccompRule::new(vec![SeccompCondition::new(arg, len, op, v).unwrap()]).unwrap()
}

/// The workload's policy: EPERM when a rule matches, allowed otherwise.
fn workload_reference() -> Vec<Insn> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for name in policy::DENIED {
        rules.insert(nr(name), vec![]);
    }
    let ioctls = policy::DENIED_IOCTLS
        .iter()
        .map(|(_, r)| cond(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, u64::from(*r)))
        .collect();
    rules.insert(nr("ioctl"), ioctls);
    let clone = policy::CLONE_NS_FLAGS
        .iter()
        .map(|(_, f)| {
            let bit = u64::from(*f);
            cond(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(bit), bit)
        })
        .collect();
    rules.insert(nr("clone"), clone);
    with_prelude(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(u32::from(policy::EPERM)),
        policy::UNSUPPORTED,
    )
}

/// The control allowlist: allowed when a rule matches, EPERM otherwise.
fn control_reference() -> Vec<Insn> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for name in policy::CONTROL_ALLOWED {
        rules.insert(nr(name), vec![]);
    }
    for name in policy::CONTROL_NO_EXEC_MEMORY {
        let exec = u64::from(policy::PROT_EXEC);
        let no_exec = cond(2, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(exec), 0);
        rules.insert(nr(name), vec![no_exec]);
    }
    for rule in policy::CONTROL_ARGUMENTS {
        let allowed = rule
            .allowed
            .iter()
            .map(|(_, v)| {
                let v = u64::from(*v);
                cond(rule.arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, v)
            })
            .collect();
        rules.insert(nr(rule.call), allowed);
    }
    with_prelude(
        rules,
        SeccompAction::Errno(u32::from(policy::EPERM)),
        SeccompAction::Allow,
        &[],
    )
}

/// Every syscall number up to 600 and a spread of x32 and out-of-range numbers, each with
/// argument vectors that hit or miss the argument rules (including high garbage bits), on
/// three architectures.
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
    let tiocgwinsz = 0x5413;
    for req in policy::DENIED_IOCTLS
        .iter()
        .map(|(_, r)| u64::from(*r))
        .chain([tiocgwinsz])
    {
        args.push([0, req, 0, 0, 0, 0]);
        args.push([0, req | 0xffff_ffff_0000_0000, 0, 0, 0, 0]);
    }
    for (_, f) in policy::CLONE_NS_FLAGS {
        args.push([u64::from(*f) | 0x11, 0, 0, 0, 0, 0]); // | SIGCHLD
    }
    args.push([0x0120_0011, 0, 0, 0, 0, 0]); // fork()'s flags
    args.push([0xffff_ffff_0000_0011, 0, 0, 0, 0, 0]);
    // mmap/mprotect protections (third argument) and prctl options (first).
    for prot in [0x1, 0x3, 0x4, 0x5, 0x7, 0xffff_ffff_0000_0003] {
        args.push([0, 0, prot, 0, 0, 0]);
    }
    for option in [15, 4, 22, 38, 0xffff_ffff_0000_000f] {
        args.push([option, 0, 0, 0, 0, 0]);
    }
    // fcntl commands (second argument): F_GETFD, F_SETFL, F_DUPFD_CLOEXEC, F_SETLK.
    for cmd in [1, 4, 1030, 6, 0xffff_ffff_0000_0001] {
        args.push([3, cmd, 0, 0, 0, 0]);
    }
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

fn agree(ours: &[Insn], theirs: &[Insn], what: &str) -> (usize, usize) {
    let (mut worst_ours, mut worst_theirs) = (0, 0);
    for d in inputs() {
        let (a, sa) = run(ours, &d);
        let (b, sb) = run(theirs, &d);
        assert_eq!(a, b, "{what} {d:?}");
        worst_ours = worst_ours.max(sa);
        worst_theirs = worst_theirs.max(sb);
    }
    (worst_ours, worst_theirs)
}

#[test]
fn the_workload_program_agrees_with_the_linear_reference() {
    let ours = Programs::for_arch("x86_64").unwrap().workload;
    let (worst_ours, worst_theirs) = agree(&ours, &workload_reference(), "workload");
    // The point of the search tree: short paths for every call.
    assert!(worst_ours <= 16, "{worst_ours}");
    assert!(
        worst_ours * 4 < worst_theirs,
        "{worst_ours} vs {worst_theirs}"
    );
}

#[test]
fn the_control_program_agrees_with_the_linear_reference() {
    let ours = Programs::for_arch("x86_64").unwrap().control;
    let (worst_ours, worst_theirs) = agree(&ours, &control_reference(), "control");
    assert!(worst_ours <= 16, "{worst_ours}");
    assert!(
        worst_ours * 2 < worst_theirs,
        "{worst_ours} vs {worst_theirs}"
    );
}

fn call(prog: &[Insn], nr: i64, args: [u64; 6]) -> u32 {
    let data = Data {
        nr: u32::try_from(nr).unwrap(),
        arch: AUDIT_ARCH_X86_64,
        args,
    };
    run(prog, &data).0
}

#[test]
fn denied_calls_get_eperm_and_ordinary_calls_pass() {
    let prog = Programs::for_arch("x86_64").unwrap().workload;
    for name in policy::DENIED {
        assert_eq!(call(&prog, nr(name), [0; 6]), EPERM, "{name}");
    }
    for name in policy::UNSUPPORTED {
        assert_eq!(call(&prog, nr(name), [0; 6]), ENOSYS, "{name}");
    }
    for nr in [59, 101, 257, 0] {
        // execve, ptrace, openat, read
        assert_eq!(call(&prog, nr, [0; 6]), ALLOW, "{nr}");
    }
}

#[test]
fn the_control_process_gets_its_list_and_nothing_else() {
    let prog = Programs::for_arch("x86_64").unwrap().control;
    let special = ["prctl", "fcntl"];
    for name in policy::CONTROL_ALLOWED {
        if !special.contains(name) {
            assert_eq!(call(&prog, nr(name), [0; 6]), ALLOW, "{name}");
        }
    }
    // execve, execveat, openat, socket, connect, ptrace, clone, fork, setuid, ioctl
    for nr in [59, 322, 257, 41, 42, 101, 56, 57, 105, 16] {
        assert_eq!(call(&prog, nr, [0; 6]), EPERM, "{nr}");
    }
    // The workload's ENOSYS calls are just refused here; x32 numbers still get ENOSYS.
    assert_eq!(call(&prog, nr("clone3"), [0; 6]), EPERM);
    assert_eq!(call(&prog, 0x4000_0000, [0; 6]), ENOSYS);
    let protection = |p| [0, 4096, p, 0x22, u64::MAX, 0];
    assert_eq!(call(&prog, nr("mmap"), protection(0x3)), ALLOW);
    assert_eq!(call(&prog, nr("mmap"), protection(0x7)), EPERM);
    assert_eq!(call(&prog, nr("mprotect"), protection(0x5)), EPERM);
    assert_eq!(call(&prog, nr("prctl"), [15, 0, 0, 0, 0, 0]), ALLOW);
    // PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS
    assert_eq!(call(&prog, nr("prctl"), [4, 1, 0, 0, 0, 0]), EPERM);
    assert_eq!(call(&prog, nr("prctl"), [38, 1, 0, 0, 0, 0]), EPERM);
    assert_eq!(call(&prog, nr("fcntl"), [3, 1, 0, 0, 0, 0]), ALLOW);
    // F_DUPFD_CLOEXEC, F_SETLK
    assert_eq!(call(&prog, nr("fcntl"), [3, 1030, 0, 0, 0, 0]), EPERM);
    assert_eq!(call(&prog, nr("fcntl"), [3, 6, 0, 0, 0, 0]), EPERM);
}

#[test]
fn ignore_chown_answers_success_for_the_chown_family_only() {
    let prog = Programs::for_arch("x86_64").unwrap().ignore_chown;
    for name in policy::IGNORED_CHOWN {
        assert_eq!(call(&prog, nr(name), [0; 6]), 0x0005_0000, "{name}");
    }
    for nr in [0, 59, 90, 268] {
        // read, execve, chmod, fchmodat
        assert_eq!(call(&prog, nr, [0; 6]), ALLOW, "{nr}");
    }
}

#[test]
fn claim_root_answers_zero_for_the_id_calls_only() {
    let prog = Programs::for_arch("x86_64").unwrap().claim_root;
    for name in policy::CLAIMED_ROOT_IDS {
        assert_eq!(call(&prog, nr(name), [0; 6]), 0x0005_0000, "{name}");
    }
    for nr in [0, 59, 92, 118] {
        // read, execve, chown, getresuid
        assert_eq!(call(&prog, nr, [0; 6]), ALLOW, "{nr}");
    }
}

#[test]
#[cfg(target_arch = "x86_64")]
fn the_x86_64_table_has_the_kernels_numbers() {
    for ((name, ours), (_, libc)) in syscalls::X86_64.iter().zip(syscalls::X86_64_LIBC) {
        assert_eq!(i64::from(*ours), *libc, "{name}");
    }
    for (name, value) in policy::DENIED_IOCTLS {
        let libc = match *name {
            "TIOCSTI" => libc::TIOCSTI,
            "TIOCLINUX" => libc::TIOCLINUX,
            other => panic!("{other}"),
        };
        assert_eq!(u64::from(*value), libc, "{name}");
    }
    let flags: Vec<u32> = [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWCGROUP,
        libc::CLONE_NEWTIME,
    ]
    .iter()
    .map(|f| f.cast_unsigned())
    .collect();
    let ours: Vec<u32> = policy::CLONE_NS_FLAGS.iter().map(|(_, f)| *f).collect();
    assert_eq!(ours, flags);
    for rule in policy::CONTROL_ARGUMENTS {
        let name = rule.call;
        for (constant, value) in rule.allowed {
            let libc = match *constant {
                "PR_SET_NAME" => libc::PR_SET_NAME,
                "F_GETFD" => libc::F_GETFD,
                "F_SETFD" => libc::F_SETFD,
                "F_GETFL" => libc::F_GETFL,
                "F_SETFL" => libc::F_SETFL,
                other => panic!("{name}: {other}"),
            };
            assert_eq!(*value, libc.cast_unsigned(), "{name} {constant}");
        }
    }
    assert_eq!(policy::PROT_EXEC, libc::PROT_EXEC.cast_unsigned());
    assert_eq!(i32::from(policy::EPERM), libc::EPERM);
    assert_eq!(i32::from(policy::ENOSYS), libc::ENOSYS);
}

#[test]
fn every_name_is_listed_once() {
    for list in [
        policy::DENIED,
        policy::UNSUPPORTED,
        policy::IGNORED_CHOWN,
        policy::CLAIMED_ROOT_IDS,
        policy::CONTROL_ALLOWED,
    ] {
        let mut names = list.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), list.len(), "{list:?}");
    }
    let mut workload: Vec<&str> = policy::DENIED
        .iter()
        .chain(policy::UNSUPPORTED)
        .copied()
        .collect();
    workload.extend(["ioctl", "clone"]);
    let before = workload.len();
    workload.sort_unstable();
    workload.dedup();
    assert_eq!(workload.len(), before);
    let mut table: Vec<u32> = syscalls::X86_64.iter().map(|(_, n)| *n).collect();
    table.sort_unstable();
    table.dedup();
    assert_eq!(table.len(), syscalls::X86_64.len());
}

#[test]
fn other_architectures_and_unknown_names_are_build_errors() {
    assert_eq!(
        Programs::for_arch("aarch64"),
        Err(Error::UnsupportedArch("aarch64".into()))
    );
    assert_eq!(
        x86_64().nr("execve"),
        Err(Error::UnknownSyscall("execve".into(), "x86_64"))
    );
}

#[test]
fn the_generated_source_holds_every_instruction() {
    let p = Programs::for_arch("x86_64").unwrap();
    let src = p.rust_source();
    let insns = src.matches("seccompiler::sock_filter {").count();
    assert_eq!(
        insns,
        p.workload.len() + p.control.len() + p.ignore_chown.len() + p.claim_root.len()
    );
    assert!(src.contains("pub static IGNORE_CHOWN"));
}

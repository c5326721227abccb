//! The seccomp policies of the namespace backend, as data: system-call names and the few
//! argument values the rules look at. This one file is the definition: the build script of
//! `karapace-backend-namespace` compiles it (through `karapace-seccomp`) into the programs the
//! helper installs, the OCI backend writes the same tables as `linux.seccomp`, and the tests of
//! both crates check the programs against it. It holds data only (no dependencies), so the
//! privileged runtime includes it without the compiler.
//!
//! docs/security-model.md gives the reasoning behind each group.

/// System calls refused with EPERM to every workload.
pub const DENIED: &[&str] = &[
    // kernel replacement and modules
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    // kernel attack surface with a long CVE history
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "lookup_dcookie",
    // kernel keyrings are not namespaced
    "keyctl",
    "add_key",
    "request_key",
    // file handles bypass path-based checks
    "open_by_handle_at",
    "name_to_handle_at",
    // clocks are not namespaced
    "clock_settime",
    "clock_adjtime",
    "settimeofday",
    "adjtimex",
    // host administration
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "syslog",
    "quotactl",
    "quotactl_fd",
    "vhangup",
    "iopl",
    "ioperm",
    "uselib",
    // mount table and namespaces (old and new mount API)
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "open_tree_attr",
    "mount_setattr",
];

/// System calls answered ENOSYS to the workload, as if this kernel did not have them: `clone3`
/// (its flags live in memory a filter cannot read; libc then falls back to `clone`, whose flags
/// are checked) and `io_uring` (its rings submit file-system and network operations that no
/// seccomp filter sees, and it has a long CVE history; programs fall back to ordinary system
/// calls on ENOSYS).
pub const UNSUPPORTED: &[&str] = &[
    "clone3",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
];

/// `ioctl` requests (second argument, low 32 bits: the kernel reads no more) refused to the
/// workload with EPERM: terminal injection. `TIOCSTI` pushes input into the controlling
/// terminal; `TIOCLINUX` can do the same on virtual consoles.
pub const DENIED_IOCTLS: &[(&str, u32)] = &[("TIOCSTI", 0x5412), ("TIOCLINUX", 0x541C)];

/// Namespace-creating `clone` flags (first argument, low 32 bits): a `clone` with any of them
/// is refused to the workload with EPERM.
pub const CLONE_NS_FLAGS: &[(&str, u32)] = &[
    ("CLONE_NEWNS", 0x0002_0000),
    ("CLONE_NEWUSER", 0x1000_0000),
    ("CLONE_NEWPID", 0x2000_0000),
    ("CLONE_NEWNET", 0x4000_0000),
    ("CLONE_NEWUTS", 0x0400_0000),
    ("CLONE_NEWIPC", 0x0800_0000),
    ("CLONE_NEWCGROUP", 0x0200_0000),
    ("CLONE_NEWTIME", 0x0000_0080),
];

/// The `chown` family, which succeeds without effect for build steps of a collapsed id map
/// (a second filter, stacked on the workload's).
pub const IGNORED_CHOWN: &[&str] = &["chown", "fchown", "lchown", "fchownat"];

/// Root's ids, claimed for a privileged-mode build step (no user namespace exists there, so
/// the step runs as the caller, without a capability): the id queries answer 0 and the id
/// changes succeed without effect (a third filter, stacked with the two above). Package
/// managers that check for root or switch to root then run; the kernel still sees the caller.
/// `getresuid`/`getresgid` fill memory and cannot be answered this way: they tell the truth.
pub const CLAIMED_ROOT_IDS: &[&str] = &[
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setfsuid",
    "setfsgid",
    "setgroups",
];

/// The only system calls of the helper's control process and of the environment's init
/// process once they have confined themselves; every other call fails with EPERM. From then
/// on both only relay: they read frames, signals and exit statuses, write frames, deliver
/// signals and exit.
pub const CONTROL_ALLOWED: &[&str] = &[
    // The relay itself: frames from the init process's pipe and the core's socket, the
    // signalfd of relayed signals (created after confinement by the control process), the
    // reports to the core (an interactive session's pty master goes with `Started` as
    // SCM_RIGHTS), waiting for all of them at once, closing descriptors once done.
    "read",
    "readv",
    "recvfrom",
    "recvmsg",
    "write",
    "writev",
    "sendto",
    "sendmsg",
    "poll",
    "ppoll",
    "signalfd4",
    "close",
    // Descriptor flags only (see CONTROL_ARGUMENTS): the standard library checks that a
    // descriptor is open (`F_GETFD`) before it closes it in debug builds.
    "fcntl",
    // Delivering relayed signals to the environment's init process (control) or workload
    // (init) through the pidfd each opened before confining — never `kill` or `tgkill`, which
    // could reach any process of the user — and collecting exit statuses.
    "pidfd_send_signal",
    "wait4",
    "waitid",
    // The allocator (`mmap` and `mprotect` without PROT_EXEC only, see
    // CONTROL_NO_EXEC_MEMORY) and the standard library's implicit calls: locks (`futex`),
    // hash-map keys (`getrandom`), the monotonic clock of the reports' timings when the vDSO
    // falls back to the system call, a system call interrupted by a stop signal
    // (`restart_syscall`).
    "brk",
    "mmap",
    "mprotect",
    "munmap",
    "mremap",
    "madvise",
    "futex",
    "getrandom",
    "clock_gettime",
    "restart_syscall",
    // Signals and panics: returning from a handler, the standard library's stack-overflow
    // handler (alternate stack, resetting the handler). `abort` cannot raise SIGABRT here
    // (`tgkill` is refused): the C library then ends the process by other means.
    "rt_sigreturn",
    "rt_sigaction",
    "rt_sigprocmask",
    "sigaltstack",
    "getpid",
    "gettid",
    // The init process renames itself before its last report (`PR_SET_NAME` only, see
    // CONTROL_ARGUMENTS).
    "prctl",
    // Leaving.
    "exit",
    "exit_group",
];

/// Calls of [`CONTROL_ALLOWED`] allowed only with one of the listed values in one argument
/// (low 32 bits); other values get EPERM: `prctl` only to set the process's name, `fcntl`
/// only to read and set descriptor and status flags (no duplicating, locking, leases, owners or
/// pipe sizes).
pub const CONTROL_ARGUMENTS: &[ArgumentRule] = &[
    ArgumentRule {
        call: "prctl",
        arg: 0,
        allowed: &[("PR_SET_NAME", 15)],
    },
    ArgumentRule {
        call: "fcntl",
        arg: 1,
        allowed: &[
            ("F_GETFD", 1),
            ("F_SETFD", 2),
            ("F_GETFL", 3),
            ("F_SETFL", 4),
        ],
    },
];

/// A call allowed only with one of `allowed` (named constants) in argument `arg`.
pub struct ArgumentRule {
    pub call: &'static str,
    pub arg: u8,
    pub allowed: &'static [(&'static str, u32)],
}

/// Calls of [`CONTROL_ALLOWED`] refused with EPERM when their protection argument (the third)
/// asks for executable memory (`PROT_EXEC`): the control and init processes never map code
/// once confined, so code smuggled into them cannot make itself executable.
pub const CONTROL_NO_EXEC_MEMORY: &[&str] = &["mmap", "mprotect"];

/// `PROT_EXEC`.
pub const PROT_EXEC: u32 = 0x4;

/// `EPERM` and `ENOSYS`, the errors the policies answer.
pub const EPERM: u16 = 1;
pub const ENOSYS: u16 = 38;

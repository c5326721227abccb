//! System-call numbers of the target architectures, for the names the policies use. A name
//! missing here is a build error of the backend (`Error::UnknownSyscall`), never a silently
//! missing rule.

/// One table per architecture from `name = number, libc constant;` lines: the numbers are the
/// target's (from the kernel's `syscall_64.tbl`, never the build host's headers); the libc
/// constants only feed a test that checks the numbers on a host of that architecture.
macro_rules! table {
    ($(#[$doc:meta])* $table:ident, $check:ident: $($name:ident = $nr:literal, $libc:expr;)*) => {
        $(#[$doc])*
        pub const $table: &[(&str, u32)] = &[$((stringify!($name), $nr)),*];
        /// The host's libc numbers of the same names.
        #[cfg(test)]
        pub(crate) const $check: &[(&str, i64)] = &[$((stringify!($name), $libc)),*];
    };
}

table! {
    /// `x86_64` (the 64-bit ABI; x32 numbers are refused as a range).
    X86_64, X86_64_LIBC:
    read = 0, libc::SYS_read;
    write = 1, libc::SYS_write;
    close = 3, libc::SYS_close;
    poll = 7, libc::SYS_poll;
    mmap = 9, libc::SYS_mmap;
    mprotect = 10, libc::SYS_mprotect;
    munmap = 11, libc::SYS_munmap;
    brk = 12, libc::SYS_brk;
    rt_sigaction = 13, libc::SYS_rt_sigaction;
    rt_sigprocmask = 14, libc::SYS_rt_sigprocmask;
    rt_sigreturn = 15, libc::SYS_rt_sigreturn;
    ioctl = 16, libc::SYS_ioctl;
    readv = 19, libc::SYS_readv;
    writev = 20, libc::SYS_writev;
    mremap = 25, libc::SYS_mremap;
    madvise = 28, libc::SYS_madvise;
    getpid = 39, libc::SYS_getpid;
    sendto = 44, libc::SYS_sendto;
    recvfrom = 45, libc::SYS_recvfrom;
    sendmsg = 46, libc::SYS_sendmsg;
    recvmsg = 47, libc::SYS_recvmsg;
    clone = 56, libc::SYS_clone;
    exit = 60, libc::SYS_exit;
    wait4 = 61, libc::SYS_wait4;
    kill = 62, libc::SYS_kill;
    fcntl = 72, libc::SYS_fcntl;
    chown = 92, libc::SYS_chown;
    fchown = 93, libc::SYS_fchown;
    lchown = 94, libc::SYS_lchown;
    getuid = 102, libc::SYS_getuid;
    syslog = 103, libc::SYS_syslog;
    getgid = 104, libc::SYS_getgid;
    setuid = 105, libc::SYS_setuid;
    setgid = 106, libc::SYS_setgid;
    geteuid = 107, libc::SYS_geteuid;
    getegid = 108, libc::SYS_getegid;
    setreuid = 113, libc::SYS_setreuid;
    setregid = 114, libc::SYS_setregid;
    setgroups = 116, libc::SYS_setgroups;
    setresuid = 117, libc::SYS_setresuid;
    setresgid = 119, libc::SYS_setresgid;
    setfsuid = 122, libc::SYS_setfsuid;
    setfsgid = 123, libc::SYS_setfsgid;
    sigaltstack = 131, libc::SYS_sigaltstack;
    uselib = 134, libc::SYS_uselib;
    vhangup = 153, libc::SYS_vhangup;
    pivot_root = 155, libc::SYS_pivot_root;
    prctl = 157, libc::SYS_prctl;
    adjtimex = 159, libc::SYS_adjtimex;
    chroot = 161, libc::SYS_chroot;
    acct = 163, libc::SYS_acct;
    settimeofday = 164, libc::SYS_settimeofday;
    mount = 165, libc::SYS_mount;
    umount2 = 166, libc::SYS_umount2;
    swapon = 167, libc::SYS_swapon;
    swapoff = 168, libc::SYS_swapoff;
    reboot = 169, libc::SYS_reboot;
    iopl = 172, libc::SYS_iopl;
    ioperm = 173, libc::SYS_ioperm;
    init_module = 175, libc::SYS_init_module;
    delete_module = 176, libc::SYS_delete_module;
    quotactl = 179, libc::SYS_quotactl;
    gettid = 186, libc::SYS_gettid;
    futex = 202, libc::SYS_futex;
    lookup_dcookie = 212, libc::SYS_lookup_dcookie;
    restart_syscall = 219, libc::SYS_restart_syscall;
    clock_settime = 227, libc::SYS_clock_settime;
    clock_gettime = 228, libc::SYS_clock_gettime;
    exit_group = 231, libc::SYS_exit_group;
    tgkill = 234, libc::SYS_tgkill;
    kexec_load = 246, libc::SYS_kexec_load;
    waitid = 247, libc::SYS_waitid;
    add_key = 248, libc::SYS_add_key;
    request_key = 249, libc::SYS_request_key;
    keyctl = 250, libc::SYS_keyctl;
    fchownat = 260, libc::SYS_fchownat;
    ppoll = 271, libc::SYS_ppoll;
    unshare = 272, libc::SYS_unshare;
    signalfd4 = 289, libc::SYS_signalfd4;
    perf_event_open = 298, libc::SYS_perf_event_open;
    name_to_handle_at = 303, libc::SYS_name_to_handle_at;
    open_by_handle_at = 304, libc::SYS_open_by_handle_at;
    clock_adjtime = 305, libc::SYS_clock_adjtime;
    setns = 308, libc::SYS_setns;
    finit_module = 313, libc::SYS_finit_module;
    getrandom = 318, libc::SYS_getrandom;
    kexec_file_load = 320, libc::SYS_kexec_file_load;
    bpf = 321, libc::SYS_bpf;
    userfaultfd = 323, libc::SYS_userfaultfd;
    pidfd_send_signal = 424, libc::SYS_pidfd_send_signal;
    io_uring_setup = 425, libc::SYS_io_uring_setup;
    io_uring_enter = 426, libc::SYS_io_uring_enter;
    io_uring_register = 427, libc::SYS_io_uring_register;
    open_tree = 428, libc::SYS_open_tree;
    move_mount = 429, libc::SYS_move_mount;
    fsopen = 430, libc::SYS_fsopen;
    fsconfig = 431, libc::SYS_fsconfig;
    fsmount = 432, libc::SYS_fsmount;
    fspick = 433, libc::SYS_fspick;
    clone3 = 435, libc::SYS_clone3;
    mount_setattr = 442, libc::SYS_mount_setattr;
    quotactl_fd = 443, libc::SYS_quotactl_fd;
    open_tree_attr = 467, 467 /* not in libc yet */;
}

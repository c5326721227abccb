//! Test probe run *inside* an environment by the helper's integration tests:
//! attempts each forbidden operation and prints `name=errno` (0 = allowed).

fn errno_of(ret: libc::c_long) -> i32 {
    if ret == -1 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    } else {
        0
    }
}

fn main() {
    let none = std::ptr::null::<libc::c_void>();
    let tmpfs = c"tmpfs";
    let tmp = c"/tmp";
    let byte = b'x';
    // SAFETY: every call passes valid pointers or NULL; the probe only
    // reports the error numbers the kernel (or the seccomp filter) returns.
    let results = unsafe {
        [
            (
                "mount",
                errno_of(libc::syscall(
                    libc::SYS_mount,
                    tmpfs.as_ptr(),
                    tmp.as_ptr(),
                    tmpfs.as_ptr(),
                    0,
                    none,
                )),
            ),
            (
                "unshare_mnt",
                errno_of(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWNS)),
            ),
            (
                "unshare_user",
                errno_of(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER)),
            ),
            (
                "keyctl",
                errno_of(libc::syscall(libc::SYS_keyctl, 0, -1, 0)),
            ),
            (
                "add_key",
                errno_of(libc::syscall(libc::SYS_add_key, none, none, none, 0, 0)),
            ),
            ("bpf", errno_of(libc::syscall(libc::SYS_bpf, 0, none, 0))),
            (
                "perf_event_open",
                errno_of(libc::syscall(libc::SYS_perf_event_open, none, 0, -1, -1, 0)),
            ),
            (
                "tiocsti",
                errno_of(libc::c_long::from(libc::ioctl(
                    0,
                    libc::TIOCSTI,
                    &raw const byte,
                ))),
            ),
            (
                "tiocsti_hibits",
                errno_of(libc::syscall(
                    libc::SYS_ioctl,
                    0,
                    0xffff_ffff_0000_0000u64 | libc::TIOCSTI,
                    &raw const byte,
                )),
            ),
            ("clone3", errno_of(libc::syscall(libc::SYS_clone3, none, 0))),
            // Allowed, these would fail with EFAULT (NULL parameters) or EBADF (fd -1).
            (
                "io_uring_setup",
                errno_of(libc::syscall(libc::SYS_io_uring_setup, 1, none)),
            ),
            (
                "io_uring_enter",
                errno_of(libc::syscall(
                    libc::SYS_io_uring_enter,
                    -1,
                    0,
                    0,
                    0,
                    none,
                    0,
                )),
            ),
            (
                "io_uring_register",
                errno_of(libc::syscall(libc::SYS_io_uring_register, -1, 0, none, 0)),
            ),
            (
                "fsopen",
                errno_of(libc::syscall(libc::SYS_fsopen, tmpfs.as_ptr(), 0)),
            ),
            (
                "open_tree",
                errno_of(libc::syscall(libc::SYS_open_tree, -100, tmp.as_ptr(), 0)),
            ),
            (
                "settimeofday",
                errno_of(libc::syscall(libc::SYS_settimeofday, none, none)),
            ),
            (
                "userfaultfd",
                errno_of(libc::syscall(libc::SYS_userfaultfd, 0)),
            ),
            ("getpid", errno_of(libc::syscall(libc::SYS_getpid))),
        ]
    };
    for (name, e) in results {
        println!("{name}={e}");
    }
}

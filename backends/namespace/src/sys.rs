//! Thin wrappers over the few system calls nix does not cover. Every
//! `unsafe` operation of the backend lives in this file; elsewhere only calls
//! of its `unsafe fn`s, each with a SAFETY comment (init.rs, join.rs, and
//! privilege.rs's start-up sanitising).

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::unistd::Pid;

/// Result of [`clone_into_namespaces`].
pub enum Forked {
    Parent(Pid),
    Child,
}

/// `clone(2)` with `CLONE_NEWPID`, and `CLONE_NEWUSER` when `user` (the rootless mode; the
/// privileged helper creates no user namespace): the single-syscall form of
/// `unshare(CLONE_NEWUSER | CLONE_NEWPID)` followed by `fork()`, so the child
/// is directly pid 1 of the new pid namespace and owned by the new user
/// namespace. No stack is passed: like `fork`, the child continues on a
/// copy-on-write copy of the caller's stack (with its guard page).
pub fn clone_into_namespaces(user: bool) -> Result<Forked, Errno> {
    let mut flags = libc::CLONE_NEWPID | libc::SIGCHLD;
    if user {
        flags |= libc::CLONE_NEWUSER;
    }
    raw_clone(flags)
}

fn raw_clone(flags: libc::c_int) -> Result<Forked, Errno> {
    // SAFETY: the raw clone syscall without CLONE_VM and with a NULL stack
    // behaves like fork(2). The helper is single-threaded when it calls this
    // (no other thread can hold the allocator or stdio locks), and glibc ≥ 2.25
    // keeps no pid cache that could go stale in the child.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::c_ulong::try_from(flags).unwrap_or(0),
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
            0usize,
        )
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(
            i32::try_from(pid).map_err(|_| Errno::EOVERFLOW)?,
        ))),
    }
}

/// Whether this process could create a user namespace without a capability: a child is
/// cloned into one and exits at once. `Ok(None)`: it could; `Ok(Some(errno))`: the kernel
/// refused the namespace with `errno` (what that means is the caller's to decide, with the
/// host's settings); `Err`: the probe itself failed (a child that did not exit cleanly). The
/// caller must be single-threaded, with no capability effective (one would let it create a
/// user namespace where unprivileged processes may not).
pub fn probe_user_namespace() -> Result<Option<Errno>, Errno> {
    match raw_clone(libc::CLONE_NEWUSER | libc::SIGCHLD) {
        Ok(Forked::Child) => exit_now(0),
        Ok(Forked::Parent(pid)) => match nix::sys::wait::waitpid(pid, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(None),
            Ok(_) => Err(Errno::ECHILD),
            Err(e) => Err(e),
        },
        Err(e) => Ok(Some(e)),
    }
}

/// Makes descriptors 0, 1 and 2 open (on /dev/null where one is closed), so nothing this
/// process opens later becomes someone's stdin, stdout or stderr by accident: a privileged
/// helper started with stderr closed would otherwise write its messages into whatever file
/// got descriptor 2.
pub fn stdio_open() -> Result<(), Errno> {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only reads the descriptor's flags.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
            continue;
        }
        // Opened without O_CLOEXEC: the lowest free descriptor is `fd` itself, kept for good.
        let null = nix::fcntl::open(
            "/dev/null",
            nix::fcntl::OFlag::O_RDWR,
            nix::sys::stat::Mode::empty(),
        )?;
        let got = null.as_raw_fd();
        std::mem::forget(null);
        if got != fd {
            return Err(Errno::EBADF);
        }
    }
    Ok(())
}

/// Closes every descriptor from 3 upwards: what the caller of a privileged helper left open
/// (a directory it cannot open itself, a socket) is never the helper's to use.
///
/// # Safety
/// No object of the process may own a descriptor above 2 (call it first thing in `main`).
pub unsafe fn close_from_3() -> Result<(), Errno> {
    // SAFETY: the caller guarantees that no Rust object owns a descriptor from 3 upwards.
    let ret = unsafe { libc::close_range(3, u32::MAX, 0) };
    Errno::result(ret).map(drop)
}

/// Clears this process's environment (a privileged helper uses nothing of its caller's).
///
/// # Safety
/// The process must be single-threaded (nothing may read the environment meanwhile).
pub unsafe fn clear_environment() {
    for (key, _) in std::env::vars_os() {
        // SAFETY: single-threaded, as the caller guarantees.
        unsafe { std::env::remove_var(key) };
    }
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
const AT_RECURSIVE: libc::c_int = 0x8000;

/// Makes the mount tree rooted at `fd` read-only and `nosuid`, recursively,
/// without clearing any other (possibly locked) mount flag.
pub fn make_readonly_nosuid_recursive(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    set_mount_attrs_recursive(fd, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID)
}

/// Makes the mount tree rooted at `fd` `nosuid` and, unless `devices`, `nodev`, recursively
/// (the privileged mode's binds: a host path never lends the environment a set-user-ID
/// program or a device node it did not ask for).
pub fn make_nosuid_recursive(fd: BorrowedFd<'_>, devices: bool) -> Result<(), Errno> {
    let nodev = if devices { 0 } else { MOUNT_ATTR_NODEV };
    set_mount_attrs_recursive(fd, MOUNT_ATTR_NOSUID | nodev)
}

fn set_mount_attrs_recursive(fd: BorrowedFd<'_>, attrs: u64) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = c"";
    // SAFETY: `attr` is a valid, fully initialised `struct mount_attr` that
    // outlives the call and whose size is passed; `empty` is a valid C string;
    // the fd is borrowed, so it stays open for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH | AT_RECURSIVE,
            std::ptr::from_ref(&attr),
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(ret).map(drop)
}

/// Brings the loopback interface of the current network namespace up.
pub fn loopback_up() -> Result<(), Errno> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = libc::c_char::try_from(*src).unwrap_or(0);
    }
    // SAFETY: SIOCGIFFLAGS reads into `req`, a valid ifreq with a NUL-terminated name.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &raw mut req) } < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel filled the flags member of the union just above.
    unsafe {
        req.ifr_ifru.ifru_flags |= i16::try_from(libc::IFF_UP).unwrap_or(1);
    }
    // SAFETY: SIOCSIFFLAGS reads `req`, which is valid and initialised.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &raw const req) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Points stdin and stdout at /dev/null (the helper's side of a tree job lets go of the tar
/// streams once its worker holds them).
pub fn stdio_to_null() -> Result<(), Errno> {
    let null = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    for target in [0, 1] {
        // SAFETY: dup2 onto 0 and 1 replaces this process's stdin and stdout; no Rust object
        // owns those two descriptors (std's stdio handles only borrow them).
        if unsafe { libc::dup2(null.as_raw_fd(), target) } == -1 {
            return Err(Errno::last());
        }
    }
    Ok(())
}

/// Marks every descriptor from 3 upwards close-on-exec, so nothing the helper
/// holds (sockets, store directories) leaks into the workload.
pub fn cloexec_from_3() -> Result<(), Errno> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on the
    // descriptors; it does not invalidate any Rust-owned fd.
    let ret = unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC.cast_signed()) };
    Errno::result(ret).map(drop)
}

/// Closes every descriptor of this process except those in `keep`.
///
/// # Safety
/// Objects that own a closed descriptor (an `OwnedFd`, a `File`, a socket) must never be used or
/// dropped afterwards: their number may name another descriptor by then. The init and middle
/// processes that call this never return to such an object; they leave through [`exit_now`].
pub unsafe fn close_all_except(keep: &[RawFd]) -> Result<(), Errno> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|fd| u32::try_from(*fd).ok())
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first = 0u32;
    for kept in keep.iter().copied().chain(std::iter::once(u32::MAX)) {
        if kept > first {
            let last = if kept == u32::MAX { u32::MAX } else { kept - 1 };
            // SAFETY: close_range(2) only closes descriptors; the caller vouches that nothing
            // uses them afterwards (see `# Safety`).
            if unsafe { libc::close_range(first, last, 0) } == -1 {
                return Err(Errno::last());
            }
        }
        first = kept.saturating_add(1);
    }
    Ok(())
}

/// The Landlock ABI version of the running kernel, `None` when it has no Landlock (not built in,
/// or not enabled with `lsm=`).
pub fn landlock_abi() -> Option<i32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a NULL attribute pointer, size 0 and the VERSION flag the kernel only returns
    // the ABI version (or an error); it reads and writes no memory of ours.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    i32::try_from(ret).ok().filter(|v| *v >= 1)
}

/// Restores default dispositions for every catchable signal (the helper
/// ignores some, and ignored dispositions survive execve).
pub fn reset_signal_dispositions() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no code in signal context.
        let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    }
}

/// `fork(2)` for single-threaded processes (the helper, the join middle process).
pub fn fork() -> Result<Forked, Errno> {
    // SAFETY: only single-threaded processes call this (the helper before it starts any
    // thread, the join middle process), so the child cannot inherit a lock held by another
    // thread.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

/// Stack of a child started by [`spawn_vfork`]: the workload's confinement (Landlock rules,
/// capabilities, seccomp) and `execve` need a few tens of KiB; only touched pages cost memory.
const VFORK_STACK: usize = 256 * 1024;

/// The child's entry point: runs the closure that [`spawn_vfork`] passed, then exits.
extern "C" fn vfork_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points to the `&mut dyn FnMut() -> i32` on `spawn_vfork`'s stack frame,
    // which stays alive and untouched: that thread is suspended until this process has
    // called execve or exited (CLONE_VFORK).
    let child = unsafe { &mut *arg.cast::<&mut dyn FnMut() -> i32>() };
    exit_now(child())
}

/// Starts `child` in a new process that shares this process's memory until it calls
/// `execve` or exits, this process being suspended meanwhile (`CLONE_VM | CLONE_VFORK`,
/// what `posix_spawn` does). It saves what `fork` costs a process with a Rust runtime: the
/// copy of the page tables and the copy-on-write faults on both sides afterwards (≈ 0.2 ms
/// per session on a small VM). `child` runs on its own stack (with a guard page) with every
/// signal blocked, and either calls `execve` or returns its exit code. File descriptors, the
/// working directory, credentials, resource limits and signal dispositions are the child's
/// own copies, as after `fork`.
///
/// # Safety
/// The caller must be single-threaded (no other thread may run on the shared memory, or hold
/// a lock the child could need). `child` must not free or move memory the caller still uses,
/// must not leave shared state describing per-process resources (say, a lazily opened
/// descriptor cached in a static), and must reset the signal dispositions it inherits before
/// it unblocks signals (a handler would otherwise run on the caller's memory and alternate
/// stack). If the child dies before `execve` (a panic aborts it; a signal can kill it in the
/// middle of an allocation), the caller's heap may be left inconsistent: only a caller that
/// treats that as the end of its own useful life may accept it.
pub unsafe fn spawn_vfork(child: &mut dyn FnMut() -> i32) -> Result<Pid, Errno> {
    use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    // SAFETY: a fresh private anonymous mapping; the result is checked before use.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            VFORK_STACK + page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(Errno::last());
    }
    // SAFETY: `base` is the start of the mapping made above, at least one page long.
    let guarded = unsafe { libc::mprotect(base, page, libc::PROT_NONE) };
    let result = if guarded == 0 {
        // Blocked in the child too until it has reset the dispositions: no handler of this
        // process may run on the shared memory.
        let mut old = SigSet::empty();
        let blocked = sigprocmask(
            SigmaskHow::SIG_SETMASK,
            Some(&SigSet::all()),
            Some(&mut old),
        );
        let mut arg: &mut dyn FnMut() -> i32 = child;
        // SAFETY: the stack top is the end of our mapping (page-aligned, the guard page at its
        // bottom); `arg` outlives the child's use of it because CLONE_VFORK keeps this thread
        // suspended until the child has exec'd or exited; the caller guarantees that no other
        // thread runs meanwhile and what `child` may do (see `# Safety`).
        let ret = unsafe {
            libc::clone(
                vfork_child,
                base.cast::<u8>().add(VFORK_STACK + page).cast(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                std::ptr::from_mut(&mut arg).cast(),
            )
        };
        let spawned = if ret == -1 {
            Err(Errno::last())
        } else {
            Ok(Pid::from_raw(ret))
        };
        if blocked.is_ok() {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
        }
        spawned
    } else {
        Err(Errno::last())
    };
    // SAFETY: the child no longer runs on this stack (it exec'd or exited), and nothing else
    // refers to the mapping.
    unsafe { libc::munmap(base, VFORK_STACK + page) };
    result
}

/// `execve(2)`; returns only on failure.
pub fn execve(path: &CString, argv: &[CString], env: &[CString]) -> Errno {
    match nix::unistd::execve(path, argv, env) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

/// Exits immediately without running destructors or atexit handlers (used
/// in forked and cloned children, which must not flush the parent's buffers twice).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it never returns.
    unsafe { libc::_exit(code) }
}

/// `pidfd_open(2)`: a descriptor that pins process `pid`.
pub fn pidfd_open(pid: i32) -> Result<std::os::fd::OwnedFd, Errno> {
    let pid = rustix::process::Pid::from_raw(pid).ok_or(Errno::ESRCH)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(|e| Errno::from_raw(e.raw_os_error()))
}

/// Sends `sig` to the process `pidfd` pins (`pidfd_send_signal(2)`). The confined control and
/// init processes signal only this way: their allowlist has no `kill`, so they cannot reach any
/// process they were not given a descriptor of, and a recycled pid is never the target.
pub fn signal(pidfd: BorrowedFd<'_>, sig: nix::sys::signal::Signal) -> Result<(), Errno> {
    let sig = rustix::process::Signal::from_named_raw(sig as i32).ok_or(Errno::EINVAL)?;
    rustix::process::pidfd_send_signal(pidfd, sig).map_err(|e| Errno::from_raw(e.raw_os_error()))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use nix::sys::wait::{WaitStatus, waitpid};

    use super::spawn_vfork;

    // The closures below neither allocate nor lock: the test harness runs other tests on
    // other threads, which `spawn_vfork`'s single-thread contract otherwise excludes.

    #[test]
    fn the_child_shares_memory_and_the_caller_waits_for_its_exit() {
        let seen = AtomicU32::new(0);
        // SAFETY: the child only stores to an atomic of this frame and returns.
        let pid = unsafe {
            spawn_vfork(&mut || {
                seen.store(std::process::id(), Ordering::SeqCst);
                7
            })
        }
        .unwrap();
        // Written by the child, in its own process, before this thread resumed.
        let child = seen.load(Ordering::SeqCst);
        assert_eq!(i32::try_from(child).unwrap(), pid.as_raw());
        assert_ne!(child, std::process::id());
        assert_eq!(waitpid(pid, None).unwrap(), WaitStatus::Exited(pid, 7));
    }

    #[test]
    fn the_caller_resumes_once_the_child_has_exec_d() {
        let path = c"/bin/sh";
        let argv = [
            c"sh".as_ptr(),
            c"-c".as_ptr(),
            c"exit 5".as_ptr(),
            std::ptr::null(),
        ];
        let mut child = || {
            // SAFETY: NUL-terminated strings and a NULL-terminated argv, all alive here.
            unsafe { libc::execv(path.as_ptr(), argv.as_ptr()) };
            127
        };
        // SAFETY: the child only calls execv (and returns if it fails).
        let pid = unsafe { spawn_vfork(&mut child) }.unwrap();
        assert_eq!(waitpid(pid, None).unwrap(), WaitStatus::Exited(pid, 5));
    }

    #[test]
    fn close_all_except_keeps_exactly_the_listed_descriptors() {
        // In a child: closing descriptors of the test harness's process would break it.
        // SAFETY: the child only calls open, close_range, fcntl and _exit (no allocation, no
        // lock another thread could hold).
        let child = match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                // SAFETY: plain open(2) calls of a NUL-terminated path.
                let fds: [i32; 4] = std::array::from_fn(|_| unsafe {
                    libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY)
                });
                let keep = [0, 1, 2, fds[1], fds[3]];
                // SAFETY: nothing in this child uses the closed descriptors afterwards.
                let closed = unsafe { super::close_all_except(&keep) };
                // SAFETY: F_GETFD only asks whether the descriptor is open.
                let open = |fd: i32| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
                let ok = closed.is_ok()
                    && fds.iter().all(|fd| *fd > 2)
                    && !open(fds[0])
                    && open(fds[1])
                    && !open(fds[2])
                    && open(fds[3])
                    && !open(fds[3] + 1)
                    && open(2);
                super::exit_now(i32::from(!ok))
            }
            nix::unistd::ForkResult::Parent { child } => child,
        };
        assert_eq!(waitpid(child, None).unwrap(), WaitStatus::Exited(child, 0));
    }

    /// Recursion without end; `black_box` keeps the frames (and their stack use) real.
    fn recurse(depth: u64) -> u64 {
        let frame = std::hint::black_box([depth; 64]);
        if depth == u64::MAX {
            return 0;
        }
        frame[0] + recurse(std::hint::black_box(depth + 1))
    }

    #[test]
    fn a_child_that_overflows_its_stack_dies_on_the_guard_page() {
        // SAFETY: the child touches only its own stack until the guard page stops it.
        let pid =
            unsafe { spawn_vfork(&mut || i32::try_from(recurse(0) & 0x7f).unwrap_or(1)) }.unwrap();
        assert_eq!(
            waitpid(pid, None).unwrap(),
            WaitStatus::Signaled(pid, nix::sys::signal::Signal::SIGSEGV, false)
        );
    }
}

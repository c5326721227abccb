//! The workload process: resource limits, working directory, then steps 5
//! to 8 of the setup order (Landlock, capabilities, `no_new_privs`, seccomp,
//! execve).

use std::ffi::CString;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use karapace_protocol::{Refusal, encode};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};

use crate::{Prepared, SetupStep, Step, confine, pty, sys};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Longest text a refusal from the workload's process carries: the init process is
/// suspended until this process exits and cannot read the pipe meanwhile, so the whole reason
/// must fit in the pipe at once (`PIPE_BUF`, 4096 bytes, is the least a pipe holds).
const MAX_REASON: usize = 1024;

/// Runs in the workload's process, started by [`sys::spawn_vfork`]: either `execve`
/// succeeds, or the reason is written to `exec_w` and 127 is returned as the exit code.
/// Nothing here may free what the init process owns (the memory is shared until `execve`).
/// `tty`: the slave of an interactive session's pty, which becomes the controlling terminal
/// and the standard descriptors.
pub fn exec(p: &Prepared, exec_w: BorrowedFd<'_>, tty: Option<BorrowedFd<'_>>) -> i32 {
    let refusal = match prepare(p, tty) {
        Ok(()) => exec_search(p),
        Err(r) => r,
    };
    if let Ok(bytes) = encode(&bounded(refusal)) {
        // One write of less than PIPE_BUF bytes to an empty pipe: it never blocks.
        let _ = nix::unistd::write(exec_w, &bytes);
    }
    127
}

/// Runs in the process of an `oci`-backend session's runtime, started like a workload: the
/// runtime confines the workload itself from the bundle (it needs its capabilities in the
/// session's namespaces to do so), so this only restores the signal state and execs it.
pub fn exec_runtime(
    r: &crate::oci::Invocation,
    exec_w: BorrowedFd<'_>,
    tty: Option<BorrowedFd<'_>>,
) -> i32 {
    sys::reset_signal_dispositions();
    let refusal = match sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| Refusal::from(Step(SetupStep::SigProcMask, e)))
        .and_then(|()| match tty {
            Some(slave) => pty::take_terminal(slave).map_err(Refusal::from),
            None => Ok(()),
        }) {
        Ok(()) => Refusal::Setup {
            step: SetupStep::ExecOciRuntime,
            detail: String::new(),
            errno: sys::execve(&r.path, &r.argv, &r.env) as i32,
        },
        Err(e) => e,
    };
    if let Ok(bytes) = encode(&bounded(refusal)) {
        let _ = nix::unistd::write(exec_w, &bytes);
    }
    127
}

/// `r` with its text cut to [`MAX_REASON`] bytes (a command name can be 128 KiB long).
fn bounded(r: Refusal) -> Refusal {
    fn cut(mut s: String) -> String {
        if s.len() > MAX_REASON {
            let mut end = MAX_REASON;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s.push('…');
        }
        s
    }
    match r {
        Refusal::Exec { argv0, errno } => Refusal::Exec {
            argv0: cut(argv0),
            errno,
        },
        Refusal::Setup {
            step,
            detail,
            errno,
        } => Refusal::Setup {
            step,
            detail: cut(detail),
            errno,
        },
        Refusal::Invalid(why) => Refusal::Invalid(cut(why)),
        other => other,
    }
}

fn confine_err(what: &str, e: &confine::ConfineError) -> Refusal {
    Refusal::Setup {
        step: SetupStep::Confine,
        detail: format!("{what}: {e}"),
        errno: 0,
    }
}

fn prepare(p: &Prepared, tty: Option<BorrowedFd<'_>>) -> Result<(), Refusal> {
    sys::reset_signal_dispositions();
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| Step(SetupStep::SigProcMask, e))?;
    if let Some(slave) = tty {
        pty::take_terminal(slave)?;
    }
    set_limits(p)?;
    nix::unistd::chdir(&p.cwd).map_err(|e| Step(SetupStep::ChdirWorkdir, e))?;

    let extra: Vec<_> = p
        .binds
        .iter()
        .filter(|b| !b.readonly)
        .chain(p.devices.iter())
        .map(|b| b.dst.clone())
        .collect();
    if p.mode == crate::Mode::Privileged {
        // No capability is left here (the init dropped them all): Landlock asks for
        // no_new_privs first, which changes nothing else before the execve.
        confine::set_no_new_privs().map_err(|e| confine_err("no_new_privs", &e))?;
    }
    if p.landlock {
        confine::landlock_workload(&confine::workload_writable(&extra))
            .map_err(|e| confine_err("landlock", &e))?;
    }
    // A privileged helper's capabilities are the host's: its workloads keep none, ever.
    let keep: &[caps::Capability] = match p.capabilities {
        _ if p.mode == crate::Mode::Privileged => &[],
        karapace_protocol::Capabilities::None => &[],
        karapace_protocol::Capabilities::PackageManager => &confine::PACKAGE_MANAGER_CAPS,
    };
    confine::drop_capabilities(keep).map_err(|e| confine_err("capabilities", &e))?;
    confine::set_no_new_privs().map_err(|e| confine_err("no_new_privs", &e))?;
    confine::apply_seccomp(false).map_err(|e| confine_err("seccomp", &e))?;
    if p.ignore_chown {
        confine::ignore_chown().map_err(|e| confine_err("seccomp", &e))?;
    }
    if p.mode == crate::Mode::Privileged && p.identity == karapace_protocol::Identity::Root {
        confine::claim_root().map_err(|e| confine_err("seccomp", &e))?;
    }
    sys::cloexec_from_3().map_err(|e| Step(SetupStep::CloseRange, e))?;
    Ok(())
}

fn set_limits(p: &Prepared) -> Result<(), Refusal> {
    use nix::sys::resource::{Resource, setrlimit};
    if let Some(n) = p.limits.nofile {
        setrlimit(Resource::RLIMIT_NOFILE, n, n).map_err(|e| Step(SetupStep::LimitFiles, e))?;
    }
    if let Some(n) = p.limits.nproc {
        setrlimit(Resource::RLIMIT_NPROC, n, n).map_err(|e| Step(SetupStep::LimitProcesses, e))?;
    }
    Ok(())
}

/// `execvpe` semantics, but with the workload's `PATH`, not the helper's.
fn exec_search(p: &Prepared) -> Refusal {
    let Some(argv0) = p.argv.first() else {
        return Refusal::Invalid("empty argv".into());
    };
    let name = argv0.as_bytes();
    let fail = |errno: Errno| Refusal::Exec {
        argv0: String::from_utf8_lossy(name).into_owned(),
        errno: errno as i32,
    };
    if name.contains(&b'/') {
        return fail(sys::execve(argv0, &p.argv, &p.env));
    }
    let path = p.path_env.as_deref().unwrap_or(DEFAULT_PATH);
    let mut seen_eacces = false;
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let mut full = Path::new(dir).as_os_str().as_bytes().to_vec();
        full.push(b'/');
        full.extend_from_slice(name);
        let Ok(full) = CString::new(full) else {
            continue;
        };
        match sys::execve(&full, &p.argv, &p.env) {
            Errno::ENOENT | Errno::ENOTDIR => {}
            Errno::EACCES => seen_eacces = true,
            other => return fail(other),
        }
    }
    fail(if seen_eacces {
        Errno::EACCES
    } else {
        Errno::ENOENT
    })
}

#[cfg(test)]
mod tests {
    use karapace_protocol::{Refusal, SetupStep, encode};

    use super::{Errno, MAX_REASON, bounded};

    #[test]
    fn a_refusal_from_the_workload_always_fits_in_a_pipe_at_once() {
        let long = "é".repeat(70_000);
        for r in [
            Refusal::Exec {
                argv0: long.clone(),
                errno: Errno::ENAMETOOLONG as i32,
            },
            Refusal::Setup {
                step: SetupStep::Confine,
                detail: long.clone(),
                errno: Errno::EPERM as i32,
            },
            Refusal::Invalid(long.clone()),
        ] {
            let bytes = encode(&bounded(r)).unwrap();
            assert!(bytes.len() < 4096, "{} bytes", bytes.len());
        }
        let short = Refusal::Exec {
            argv0: "/bin/nope".into(),
            errno: Errno::ENOENT as i32,
        };
        assert_eq!(bounded(short.clone()), short);
        let Refusal::Exec { argv0, .. } = bounded(Refusal::Exec {
            argv0: long,
            errno: Errno::ENAMETOOLONG as i32,
        }) else {
            unreachable!()
        };
        assert!(argv0.len() <= MAX_REASON + '…'.len_utf8() && argv0.ends_with('…'));
    }
}

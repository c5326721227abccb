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

use crate::{Prepared, Step, confine, sys};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs in the workload's process, started by [`sys::spawn_vfork`]: either `execve`
/// succeeds, or the reason is written to `exec_w` and 127 is returned as the exit code.
/// Nothing here may free what the init process owns (the memory is shared until `execve`).
pub fn exec(p: &Prepared, exec_w: BorrowedFd<'_>) -> i32 {
    let refusal = match prepare(p) {
        Ok(()) => exec_search(p),
        Err(r) => r,
    };
    if let Ok(bytes) = encode(&refusal) {
        // One small write to a pipe: atomic below PIPE_BUF.
        let _ = nix::unistd::write(exec_w, &bytes);
    }
    127
}

fn confine_err(step: &str, e: &confine::ConfineError) -> Refusal {
    Refusal::Setup {
        step: format!("{step}: {e}"),
        errno: 0,
    }
}

fn prepare(p: &Prepared) -> Result<(), Refusal> {
    sys::reset_signal_dispositions();
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| Step("sigprocmask", e))?;
    set_limits(p)?;
    nix::unistd::chdir(&p.cwd).map_err(|e| Step("chdir to working directory", e))?;

    let extra: Vec<_> = p
        .binds
        .iter()
        .filter(|b| !b.readonly)
        .chain(p.devices.iter())
        .map(|b| b.dst.clone())
        .collect();
    confine::landlock_workload(&confine::workload_writable(&extra))
        .map_err(|e| confine_err("landlock", &e))?;
    let keep: &[caps::Capability] = match p.capabilities {
        karapace_protocol::Capabilities::None => &[],
        karapace_protocol::Capabilities::PackageManager => &confine::PACKAGE_MANAGER_CAPS,
    };
    confine::drop_capabilities(keep).map_err(|e| confine_err("capabilities", &e))?;
    confine::set_no_new_privs().map_err(|e| confine_err("no_new_privs", &e))?;
    confine::apply_seccomp(false).map_err(|e| confine_err("seccomp", &e))?;
    sys::cloexec_from_3().map_err(|e| Step("close_range", e))?;
    Ok(())
}

fn set_limits(p: &Prepared) -> Result<(), Refusal> {
    use nix::sys::resource::{Resource, setrlimit};
    if let Some(n) = p.limits.nofile {
        setrlimit(Resource::RLIMIT_NOFILE, n, n).map_err(|e| Step("RLIMIT_NOFILE", e))?;
    }
    if let Some(n) = p.limits.nproc {
        setrlimit(Resource::RLIMIT_NPROC, n, n).map_err(|e| Step("RLIMIT_NPROC", e))?;
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

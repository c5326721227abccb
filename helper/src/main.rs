//! `karapace-helper`: the confined runtime helper.
//!
//! Started by the core for one operation with `--socket <path>`. It connects
//! to the core's private socket, checks the peer's credentials, exchanges
//! protocol versions, validates the single `Run` request, starts the
//! environment through the namespace backend and, once the workload has
//! started, confines itself (Landlock + seccomp); from then on it only relays
//! signals and the workload's exit status.

mod owned_tree;
mod relay;
mod tree;
mod validate;

use std::ffi::OsString;
use std::process::ExitCode;

use interprocess::local_socket::traits::StreamCommon;
use interprocess::local_socket::{GenericFilePath, Stream, ToFsName, prelude::*};
use interprocess::os::unix::uds_local_socket::Stream as UdStream;
use karapace_backend_namespace::{self as backend, Mode};
use karapace_protocol::{
    FrameError, Hello, ID_MAPS_FULL, ID_MAPS_SINGLE, MODE_PRIVILEGED, MODE_ROOTLESS,
    PROTOCOL_VERSION, Refusal, Reply, Request, monotonic_ns, read_frame, write_frame,
};
use nix::sys::signal::SigmaskHow;

fn fail(stream: &mut UdStream, r: Refusal) -> ExitCode {
    let _ = write_frame(stream, &Reply::Failed(r));
    ExitCode::from(1)
}

fn protocol(e: &FrameError) -> Refusal {
    Refusal::Protocol(e.to_string())
}

/// Test seam: `karapace-helper --pretend-no-landlock --socket <path>` behaves as on a kernel
/// without Landlock (its probe answers "none"). It can only make the helper refuse a request,
/// or run it without Landlock when the request allows that anyway (the user's opt-out). The
/// core never passes it, so neither a manifest nor an image can reach it; only someone who
/// starts the helper by hand can, who could as well opt out in their own config.
const PRETEND_NO_LANDLOCK: &str = "--pretend-no-landlock";

/// What the command line asks for.
enum Invocation {
    /// `--version`.
    Version,
    /// `--landlock-abi`: the kernel's Landlock ABI as this helper sees it (`karapace doctor`).
    LandlockAbi,
    /// `--id-maps`: which id maps environments of this user get ([`ID_MAPS_FULL`] or
    /// [`ID_MAPS_SINGLE`], or [`MODE_PRIVILEGED`] for a privileged helper, then a description),
    /// so the core knows whether owners are kept.
    IdMaps,
    /// `--mode`: `rootless`, or `privileged` and the capabilities kept (`karapace doctor`, and
    /// the core's choice of id maps).
    Mode,
    /// `--file-capabilities`: the file capabilities of a privileged install, for `setcap`
    /// (`scripts/install-privileged-helper`).
    FileCapabilities,
    /// `--socket <path>`: serve one request of the core, on a kernel with `landlock_abi`.
    Serve {
        socket: OsString,
        landlock_abi: Option<i32>,
    },
}

fn invocation(args: &[OsString]) -> Option<Invocation> {
    let args: Vec<&std::ffi::OsStr> = args.iter().skip(1).map(OsString::as_os_str).collect();
    let text: Vec<Option<&str>> = args.iter().map(|a| a.to_str()).collect();
    match text.as_slice() {
        [Some("--version")] => Some(Invocation::Version),
        [Some("--landlock-abi")] => Some(Invocation::LandlockAbi),
        [Some("--id-maps")] => Some(Invocation::IdMaps),
        [Some("--mode")] => Some(Invocation::Mode),
        [Some("--file-capabilities")] => Some(Invocation::FileCapabilities),
        [Some("--socket"), _] => Some(Invocation::Serve {
            socket: args[1].to_os_string(),
            landlock_abi: backend::landlock_abi(),
        }),
        [Some(PRETEND_NO_LANDLOCK), Some("--socket"), _] => Some(Invocation::Serve {
            socket: args[2].to_os_string(),
            landlock_abi: None,
        }),
        _ => None,
    }
}

/// The socket and Landlock ABI to serve a request with; `Err` once a question of the command
/// line is answered (or the command line is wrong), with the exit code.
fn serve_or_answer(args: &[OsString], mode: Mode) -> Result<(OsString, Option<i32>), ExitCode> {
    let answer = match invocation(args) {
        Some(Invocation::Serve {
            socket,
            landlock_abi,
        }) => return Ok((socket, landlock_abi)),
        None => {
            eprintln!(
                "usage: karapace-helper --socket <path>   (started by karapace, not by hand)"
            );
            return Err(ExitCode::from(2));
        }
        Some(Invocation::Mode) => match mode {
            Mode::Rootless => MODE_ROOTLESS.to_owned(),
            Mode::Privileged => format!(
                "{MODE_PRIVILEGED} {}",
                backend::privilege::FILE_CAPABILITIES
            ),
        },
        Some(Invocation::FileCapabilities) => backend::privilege::FILE_CAPABILITIES.to_owned(),
        Some(Invocation::IdMaps) if mode == Mode::Privileged => format!(
            "{MODE_PRIVILEGED} the privileged karapace-helper creates no user namespace (this \
             host allows no unprivileged ones), so every file of an environment is yours"
        ),
        Some(Invocation::Version) => format!(
            "karapace-helper {} (protocol {PROTOCOL_VERSION})",
            env!("CARGO_PKG_VERSION")
        ),
        Some(Invocation::LandlockAbi) => {
            backend::landlock_abi().map_or_else(|| "none".to_owned(), |v| v.to_string())
        }
        Some(Invocation::IdMaps) => {
            let uid = nix::unistd::getuid().as_raw();
            let gid = nix::unistd::getgid().as_raw();
            match backend::IdMap::full(uid, gid) {
                Ok(backend::IdMap::Subordinate { uid: u, gid: g }) => format!(
                    "{ID_MAPS_FULL} subordinate uids {}+{} gids {}+{}",
                    u.start, u.count, g.start, g.count
                ),
                Ok(map) => format!("{ID_MAPS_FULL} {map:?}"),
                Err(r) => format!("{ID_MAPS_SINGLE} {r}"),
            }
        }
    };
    println!("{answer}");
    Err(ExitCode::SUCCESS)
}

/// Installed with file capabilities, this process runs with privilege its caller lacks:
/// decide the mode before anything else, and in the privileged one take nothing of the
/// caller's but the command line (backends/namespace/src/privilege.rs).
fn mode() -> Result<Mode, ExitCode> {
    let mode = backend::privilege::enter_mode().map_err(|e| {
        eprintln!("karapace-helper: {e}");
        ExitCode::from(1)
    })?;
    if mode == Mode::Privileged {
        // SAFETY: single-threaded, first thing: no object owns a descriptor above 2 yet.
        unsafe { backend::privilege::sanitize_process() }.map_err(|e| {
            eprintln!("karapace-helper: cannot sanitise the process: {e}");
            ExitCode::from(1)
        })?;
    }
    Ok(mode)
}

/// A tree job (`helper/src/tree.rs`): only in the rootless mode, whose user namespaces map the
/// other owners such jobs exist for.
fn serve_tree(
    stream: &mut UdStream,
    job: karapace_protocol::TreeJob,
    mode: Mode,
    landlock_abi: Option<i32>,
) -> ExitCode {
    if mode == Mode::Privileged {
        return fail(
            stream,
            Refusal::PrivilegedMode("work on trees of other owners".into()),
        );
    }
    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    match tree::serve(job, uid, gid, landlock_abi) {
        Ok(stats) => match write_frame(stream, &Reply::TreeDone(stats)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(1),
        },
        Err(r) => fail(stream, r),
    }
}

fn main() -> ExitCode {
    // No other process of the user's may read this process's descriptors (the core's socket,
    // the validated paths), memory or environment through /proc or ptrace: only processes
    // with CAP_SYS_PTRACE over the host may. The environment's init process re-enables it for
    // itself where it needs to (backends/namespace/src/init.rs).
    if nix::sys::prctl::set_dumpable(false).is_err() {
        return ExitCode::from(1);
    }
    let mode = match mode() {
        Ok(mode) => mode,
        Err(code) => return code,
    };
    let args: Vec<OsString> = std::env::args_os().collect();
    let (path, landlock_abi) = match serve_or_answer(&args, mode) {
        Ok(serve) => serve,
        Err(code) => return code,
    };
    // Block the relayed signals before anything else: they are read from a
    // signalfd later, and a stop request arriving during setup is queued
    // rather than killing us half-way.
    let _ =
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&backend::blocked_set()), None);

    let Ok(name) = path.as_os_str().to_fs_name::<GenericFilePath>() else {
        return ExitCode::from(2);
    };
    let mut stream = match Stream::connect(name) {
        Ok(Stream::UdSocket(s)) => s,
        Err(e) => {
            eprintln!("karapace-helper: cannot connect to {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();

    // Only our parent, running as our own user, may talk to us.
    let creds = match stream.peer_creds() {
        Ok(c) => c,
        Err(e) => return fail(&mut stream, Refusal::PeerRejected(e.to_string())),
    };
    let parent = nix::unistd::getppid().as_raw();
    if creds.euid() != Some(uid) || creds.pid() != Some(parent) {
        return fail(
            &mut stream,
            Refusal::PeerRejected(format!(
                "peer {:?}/{:?} is not our parent {parent} as uid {uid}",
                creds.pid(),
                creds.euid()
            )),
        );
    }

    let me = Hello {
        version: PROTOCOL_VERSION,
        pid: std::process::id(),
    };
    if write_frame(&mut stream, &Reply::Hello(me)).is_err() {
        return ExitCode::from(1);
    }
    match read_frame::<Request>(&mut stream) {
        Ok(Request::Hello(h)) if h.version == PROTOCOL_VERSION => {}
        Ok(Request::Hello(h)) => {
            return fail(
                &mut stream,
                Refusal::VersionMismatch {
                    helper: PROTOCOL_VERSION,
                    core: h.version,
                },
            );
        }
        Ok(_) => return fail(&mut stream, Refusal::Protocol("expected Hello".into())),
        Err(e) => return fail(&mut stream, protocol(&e)),
    }

    let spec = match read_frame::<Request>(&mut stream) {
        Ok(Request::Run(spec)) => *spec,
        Ok(Request::Tree(job)) => return serve_tree(&mut stream, job, mode, landlock_abi),
        Ok(_) => {
            return fail(
                &mut stream,
                Refusal::Protocol("expected Run or Tree".into()),
            );
        }
        Err(e) => return fail(&mut stream, protocol(&e)),
    };
    let t_request = monotonic_ns();
    let prepared = match validate::prepare(spec, uid, gid, landlock_abi, mode) {
        Ok(p) => p,
        Err(r) => return fail(&mut stream, r),
    };
    let t_validated = monotonic_ns();
    let mut launched = match backend::launch(&prepared) {
        Ok(l) => l,
        Err(r) => return fail(&mut stream, r),
    };
    let landlock = prepared.landlock;
    // Everything the control process still holds that it must not keep.
    drop(prepared);
    // Confine this process once the workload has started, not now: the new init process
    // sets the environment up meanwhile, and on a small machine confining first would keep
    // it waiting for a CPU (≈ 0.25 ms). Until then only the init process's report is read;
    // the core hears of the start only once this process is confined.
    let confine = || backend::confine_control(landlock, None).map_err(|e| e.to_string());
    if let Some(code) =
        relay::await_start(&mut stream, &mut launched, t_request, t_validated, confine)
    {
        return code;
    }
    relay::run(stream, launched, t_request, t_validated)
}

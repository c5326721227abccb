//! `karapace-helper`: the confined runtime helper.
//!
//! Started by the core for one operation with `--socket <path>`. It connects
//! to the core's private socket, checks the peer's credentials, exchanges
//! protocol versions, validates the single `Run` request, starts the
//! environment through the namespace backend and, once the workload has
//! started, confines itself (Landlock + seccomp); from then on it only relays
//! signals and the workload's exit status.

mod relay;
mod validate;

use std::ffi::OsString;
use std::process::ExitCode;

use interprocess::local_socket::traits::StreamCommon;
use interprocess::local_socket::{GenericFilePath, Stream, ToFsName, prelude::*};
use interprocess::os::unix::uds_local_socket::Stream as UdStream;
use karapace_backend_namespace as backend;
use karapace_protocol::{
    FrameError, Hello, PROTOCOL_VERSION, Refusal, Reply, Request, read_frame, write_frame,
};
use nix::sys::signal::SigmaskHow;

fn fail(stream: &mut UdStream, r: Refusal) -> ExitCode {
    let _ = write_frame(stream, &Reply::Failed(r));
    ExitCode::from(1)
}

fn protocol(e: &FrameError) -> Refusal {
    Refusal::Protocol(e.to_string())
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "--version") {
        println!(
            "karapace-helper {} (protocol {PROTOCOL_VERSION})",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    let [_, flag, path] = args.as_slice() else {
        eprintln!("usage: karapace-helper --socket <path>   (started by karapace, not by hand)");
        return ExitCode::from(2);
    };
    if flag != "--socket" {
        eprintln!("usage: karapace-helper --socket <path>");
        return ExitCode::from(2);
    }
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
    // The seccomp filters do not depend on the request: build them while the
    // core is still preparing it (a failure is reported by `launch`).
    let _ = backend::precompile();
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
        Ok(_) => return fail(&mut stream, Refusal::Protocol("expected Run".into())),
        Err(e) => return fail(&mut stream, protocol(&e)),
    };
    let t_request = backend::now_ns();
    let prepared = match validate::prepare(spec, uid, gid) {
        Ok(p) => p,
        Err(r) => return fail(&mut stream, r),
    };
    let t_validated = backend::now_ns();
    let mut launched = match backend::launch(&prepared) {
        Ok(l) => l,
        Err(r) => return fail(&mut stream, r),
    };
    // Everything the control process still holds that it must not keep.
    drop(prepared);
    // Confine this process once the workload has started, not now: the new init process
    // sets the environment up meanwhile, and on a small machine confining first would keep
    // it waiting for a CPU (≈ 0.25 ms). Until then only the init process's report is read;
    // the core hears of the start only once this process is confined.
    let confine = || backend::confine_control().map_err(|e| e.to_string());
    if let Some(code) =
        relay::await_start(&mut stream, &mut launched, t_request, t_validated, confine)
    {
        return code;
    }
    relay::run(stream, launched, t_request, t_validated)
}

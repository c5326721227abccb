//! Core-side client of `karapace-helper`.
//!
//! The core never mounts or unshares anything itself: for every operation it
//! spawns the helper ([`spawn`], [`run`], [`capture`]), hands it a declarative
//! [`RunSpec`] over a private socket, and gets the workload's exit status
//! back. The workload inherits the caller's stdin/stdout/stderr directly, so
//! output streams for real; an interactive session (`RunSpec::tty`) instead
//! gets a pty of the environment's own, which the session relays to the
//! caller's terminal (see [`terminal::caller_size`]). [`stop_session`]
//! ends a session from another invocation. What a `RunSpec` shares of the host is the engine's
//! decision (its `host_sharing` module); this crate only carries it.

mod client;
mod pty;
mod stop;
pub mod terminal;

pub use client::{
    ClientTimings, DEFAULT_CAPTURE_CAP, Pending, RunOutcome, Session, StdioMode, TreeSession,
    capture, capture_bounded, helper_path, prespawn, run, spawn, spawn_with, tree,
};
pub use karapace_protocol::{
    BindMount, Capabilities, DiffEntry, FrameError, ID_MAPS_FULL, IdMapMode, Identity, JoinTarget,
    Limits, MODE_PRIVILEGED, MODE_ROOTLESS, Network, OciFlavour, OciRuntime,
    PRIVILEGED_FILE_CAPABILITIES, Refusal, RunSpec, SetupStep, TerminalSize, Timings, TreeFailure,
    TreeJob, TreeOp, TreeStats, UnpackSpec, Upper, WaitStatus, Whiteouts, oci_runtime_fault,
    read_frame,
};
pub use stop::{StopError, StopOutcome, process_start_time, stop_session, wait_process_exit};

/// Errors of the helper client. [`HelperError::exit_code`] classifies them.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("karapace-helper not found (looked at {0:?}; set KARAPACE_HELPER)")]
    NotFound(std::path::PathBuf),
    #[error("cannot start karapace-helper: {0}")]
    Spawn(std::io::Error),
    #[error("helper socket: {0}")]
    Socket(std::io::Error),
    #[error("helper protocol: {0}")]
    Protocol(#[from] karapace_protocol::FrameError),
    #[error("helper connection rejected: {0}")]
    Peer(String),
    #[error("helper did not connect within {0:?}")]
    Timeout(std::time::Duration),
    #[error("helper refused: {0}")]
    Refused(#[from] Refusal),
    #[error("karapace-helper exited unexpectedly ({0})")]
    HelperDied(String),
    #[error("the command wrote more than {0} bytes to its output; it was stopped")]
    OutputTooLarge(usize),
}

impl HelperError {
    /// Exit code for the CLI: 127/126 when the command could not be executed
    /// (like shells and `podman exec`), 1 for every failure of karapace itself.
    pub fn exit_code(&self) -> i32 {
        match self {
            HelperError::Refused(Refusal::Exec { errno, .. })
                if *errno == nix::errno::Errno::ENOENT as i32 =>
            {
                127
            }
            HelperError::Refused(Refusal::Exec { .. }) => 126,
            _ => 1,
        }
    }
}

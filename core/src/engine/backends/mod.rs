//! The runtime seam: what the engine needs from a runtime backend, and the one place that picks
//! a backend for an environment.
//!
//! An environment's backend is a fact of its lock (`[runtime] backend`, part of the `env_id`), so
//! it is chosen once, by [`of`], from `karapace_schema::Backend`; nothing else in the core
//! matches on backend names. A backend does two things for the engine:
//! - [`RuntimeBackend::build`]: the build steps that turn a manifest into a Base layer,
//!   Dependency layers and a lock;
//! - [`RuntimeBackend::run`]: a session of a built environment — a fresh one, or one joining
//!   the sessions already running.
//!
//! Stopping and status are not backend methods: every backend that runs anything records its
//! sessions in the store (the process to signal, the process to join), and `stop` and the
//! Running state read those records alone, whatever backend wrote them. A backend that runs
//! nothing (the mock) records none, so its environments are never Running.
//!
//! The OCI backend ([`oci`]) shares the namespace backend's build steps and its session
//! plumbing (helper, session records), and hands the session itself to an OCI runtime.

mod mock;
mod namespace;
mod oci;
mod oci_version;

use std::path::Path;

use karapace_helper_client as hc;
use karapace_schema::{Backend, LockFile, NormalizedManifest};
use karapace_store::{EnvMetadata, Store};

use super::pipeline::Built;
use super::{BuildRequest, Engine, RunMode, SessionOptions, policy_layer};
use crate::error::Result;

/// What a backend needs to build an environment.
pub struct BuildJob<'a> {
    pub store: &'a Store,
    pub manifest: &'a NormalizedManifest,
    pub request: &'a BuildRequest,
    /// The lock to install exactly (`--locked`), if any.
    pub locked: Option<&'a LockFile>,
    /// `--allow-without-landlock` as given on the command line (the user's config may add it).
    pub allow_without_landlock: bool,
}

/// A session to run in a built environment (its state already checked by the engine).
pub struct Session<'a> {
    pub store: &'a Store,
    pub env: &'a EnvMetadata,
    pub lock: &'a LockFile,
    /// The environment's policy layer, unpacked (its lock, source directory, policy files).
    pub policy_tree: &'a Path,
    /// The command, never empty: the engine has put the login shell in for a bare `enter`.
    pub argv: Vec<String>,
    pub mode: RunMode,
    /// `--workdir` and `--root` (checked by the engine: an absolute workdir).
    pub options: &'a SessionOptions,
    /// A helper started before the store was read, so its start-up overlaps the engine's work.
    /// Backends that do not drive the helper drop it (which ends it).
    pub prespawned: Option<hc::Pending>,
    /// `--allow-without-landlock` as given on the command line (the user's config may add it).
    pub allow_without_landlock: bool,
}

/// What the engine asks of a runtime backend.
pub trait RuntimeBackend {
    /// The build steps: image, packages, exact versions; the layers they made and the lock.
    fn build(&self, job: &BuildJob<'_>) -> Result<Built>;

    /// Runs a session and returns the command's exit status (128+N when it died of signal N).
    fn run(&self, session: Session<'_>) -> Result<i32>;

    /// What a user must be told about environments of this backend (by `build` and `doctor`),
    /// as the end of "this environment uses …"; `None` for a backend that isolates what it runs.
    fn caveat(&self) -> Option<&'static str> {
        None
    }
}

/// The backend of environments whose lock names `backend`: the only backend `match` of the core.
pub fn of(backend: Backend) -> &'static dyn RuntimeBackend {
    match backend {
        Backend::Namespace => &namespace::Namespace,
        Backend::Oci => &oci::Oci,
        Backend::Mock => &mock::Mock,
    }
}

impl Engine {
    /// The environments of this store whose backend comes with a caveat, with it (`doctor`).
    /// An environment whose lock cannot be read is left out: `verify-store` reports it.
    pub fn backend_caveats(&self) -> Result<Vec<(EnvMetadata, &'static str)>> {
        let Some(store) = self.open_read()? else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for env in store.list_envs_recorded()? {
            let backend = policy_layer::layer_tree(&store, &env)
                .and_then(|tree| policy_layer::read_lock(&tree))
                .map(|lock| lock.runtime_backend);
            if let Some(caveat) = backend.ok().and_then(|b| of(b).caveat()) {
                found.push((env, caveat));
            }
        }
        Ok(found)
    }
}

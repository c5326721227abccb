//! `karapace-dbus`: the `org.karapace.Manager1` service on the session bus, a thin front-end over
//! [`karapace::engine::Engine`] for desktop clients (docs/dbus.md is the API reference).
//!
//! ```no_run
//! // What `main` does: read the environment, serve until idle.
//! let config = karapace_dbus::Config::from_env(std::env::args_os().skip(1))?;
//! karapace_dbus::serve(&config)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! How it is put together, one module per job:
//! - [`manager`] is the D-Bus interface: every call checks the caller's uid ([`access`]), checks its
//!   arguments ([`input`]), runs the engine on a worker thread ([`jobs`]) and answers with the JSON of
//!   [`views`] or a typed error name ([`error`]).
//! - [`changes`] turns two `Engine::list()` snapshots into the `Environment*` signals; [`watch`]
//!   takes a snapshot whenever the engine's `StoreWatcher` says the store changed (also when the CLI
//!   changed it), without polling.
//! - [`idle`] ends the service after a quiet period with no call and no job; [`terminal`] opens
//!   `RunEnvironment`'s shell in the desktop's terminal emulator; [`progress`] forwards a build's
//!   log lines as `BuildProgress`.
//!
//! What it must never do: serve a store other than the configured one, run anything for a caller
//! of another uid, run a shell inside the service process, or touch the store's files other than
//! through the engine.

pub mod access;
pub mod changes;
pub mod config;
pub mod error;
pub mod idle;
pub mod input;
pub mod jobs;
pub mod manager;
pub mod progress;
mod service;
pub mod terminal;
pub mod views;
pub mod watch;

pub use config::Config;
pub use service::{ServiceError, serve};

/// The well-known bus name, object path and interface: the standard tool's, so its desktop
/// clients keep working.
pub const BUS_NAME: &str = "org.karapace.Manager1";
pub const OBJECT_PATH: &str = "/org/karapace/Manager1";
pub const INTERFACE: &str = "org.karapace.Manager1";
/// The `ApiVersion` property: bumped only when a method's arguments or JSON change incompatibly.
pub const API_VERSION: u32 = 1;

//! Karapace core: CLI, engine, and the glue between schema, store, images, plugins and helper.
//!
//! Front-ends (CLI today; TUI and D-Bus later) sit on [`engine::Engine`] and never reach into the
//! store directly.

pub mod cli;
pub mod engine;
pub mod error;
pub mod files;
pub mod output;
pub mod prereqs;

//! Karapace core: CLI, engine, and the glue between schema, store, images, plugins and helper.
//!
//! Front-ends (the CLI, the terminal UI in [`tui`]; D-Bus later) sit on [`engine::Engine`] for everything that touches
//! environments; only commands that do not (`new`, `pin`, `doctor`, `migrate`) use the lower crates
//! directly.

pub mod cli;
pub mod engine;
pub mod error;
pub mod files;
pub mod output;
pub mod prereqs;
pub mod tui;

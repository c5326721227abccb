//! The one wasmtime `Config` for resolver plugins.
//!
//! Shared verbatim by `build.rs` (which precompiles the built-in plugins) and
//! the runtime (which deserializes them): settings that change generated code
//! (fuel metering, stack limit) must match on both sides, otherwise
//! `Component::deserialize` refuses the artifact. Keep this file free of
//! crate-internal imports so `build.rs` can `#[path]`-include it.

/// Maximum guest stack: deep recursion traps with `StackOverflow` long before
/// it could exhaust the host thread's stack.
pub const MAX_WASM_STACK_BYTES: usize = 256 * 1024;

/// Engine settings for resolver plugins.
pub fn plugin_engine_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    // Deterministic CPU bound: every call gets a fuel budget.
    config.consume_fuel(true);
    config.max_wasm_stack(MAX_WASM_STACK_BYTES);
    // Plugins are components; nothing else is needed.
    config.wasm_component_model(true);
    config
}

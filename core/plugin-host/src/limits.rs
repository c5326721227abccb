//! Per-call resource limits: a fuel budget (CPU) and a memory cap enforced by
//! a `ResourceLimiter`, applied to a fresh `Store` for every call.

use wasmtime::ResourceLimiter;

/// Limits applied to every plugin call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel per call (≈ wasm instructions). Parsing 20 000 lines of dpkg
    /// output costs ≈ 35 M; an infinite loop burns this in well under a second.
    pub fuel: u64,
    /// Cap on each linear memory, in bytes.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 500_000_000,
            memory_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Raised by the limiter so the host can tell "memory limit" apart from any
/// other trap (a refused `memory.grow` alone surfaces as `unreachable`).
#[derive(Debug)]
pub(crate) struct MemoryLimitExceeded {
    pub requested: usize,
}

impl std::fmt::Display for MemoryLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "memory limit exceeded ({} bytes requested)",
            self.requested
        )
    }
}

impl std::error::Error for MemoryLimitExceeded {}

/// The `Store` data of one call.
pub(crate) struct CallState {
    limiter: Limiter,
}

impl CallState {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limiter: Limiter {
                memory_bytes: limits.memory_bytes,
            },
        }
    }

    pub(crate) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limiter
    }
}

struct Limiter {
    memory_bytes: usize,
}

/// A resolver component needs a handful of core instances, one memory and
/// one table; anything beyond that is refused.
const MAX_INSTANCES: usize = 32;
const MAX_TABLES: usize = 8;
const MAX_MEMORIES: usize = 4;
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                requested: desired,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}
